"""Bulk scoring of folders and distributed featurization, against real Redis and workers.

The shared API and worker score a generated folder with corrupt files, page and export the
rows, refuse unusable folders and cancel. A separate small cluster (its own Redis database,
a visibility timeout of seconds, two worker nodes) is where worker processes and a whole
node are killed mid-job (a folder's chunks, and the time ranges of one long recording), and
where training fans featurization out over another node.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from ser.service.registry import Registry
from tests import audiogen, hostile
from tests.harness import Worker, make_client, ser, wait_until

CORRUPT = ("text.wav", "zero_bytes.wav", "truncated_header.wav", "silence.wav", "very_short.wav")


def make_clips(folder: Path, n: int, seconds: float, seed: int) -> list[Path]:
    """``n`` voice-like clips with unique content (seeds from ``seed``)."""
    labels = list(audiogen.CLASSES)
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        path = folder / label / f"{label}_{seed + i:05d}.wav"
        out.append(audiogen.write(path, audiogen.voice_like(label, seconds, seed=seed + i)))
    return out


def rows_of(api, job_id: str) -> list[dict]:
    resp = api.get(f"/jobs/{job_id}/results?format=jsonl")
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines()]


@pytest.fixture(scope="module")
def mixed(data_dir, tmp_path_factory) -> dict:
    """bulk_mix/: good clips (one level down), corrupt files, an escaping symlink, a text file."""
    root = data_dir / "bulk_mix"
    good = make_clips(root, 24, 1.0, seed=50_000)
    expected = hostile.corpus()
    for name in CORRUPT:
        (root / "bad" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "bad" / name).write_bytes(expected[name][0])
    outside = tmp_path_factory.mktemp("bulk_outside")
    audiogen.write(outside / "secret.wav", audiogen.voice_like("calm", 1.0, seed=9))
    (root / "escape.wav").symlink_to(outside / "secret.wav")
    (root / "escape_dir").symlink_to(outside)  # not followed by the listing
    (root / "readme.txt").write_text("not matched by the patterns\n")
    top = audiogen.write(root / "top.WAV", audiogen.voice_like("tense", 1.0, seed=51_000))
    names = {p.relative_to(data_dir).as_posix() for p in good + [top]}
    bad = {f"bulk_mix/bad/{n}": expected[n][1] for n in CORRUPT}
    bad["bulk_mix/escape.wav"] = "INVALID_PATH"
    return {"good": names, "bad": bad}


@pytest.fixture(scope="module")
def scored(api, trained, mixed) -> dict:
    resp = api.post("/score", json={"folder": "bulk_mix"})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["KIND"] == "score" and resp.headers["Location"] == f"/jobs/{body['JOB_ID']}"
    return api.wait_job(body["JOB_ID"], timeout=120)


def test_folder_scores_fully_with_per_file_errors(api, mixed, scored):
    body = scored
    n_good, n_bad = len(mixed["good"]), len(mixed["bad"])
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    assert body["STATUS"] == "SCORED" and body["FOLDER"] == "bulk_mix"
    assert body["COUNT"] == n_good + n_bad
    assert (body["SUCCEEDED"], body["FAILED"]) == (n_good, n_bad)
    assert body["MODEL_VERSION"] == api.get("/models").json()["CURRENT"]
    assert sum(body["SUMMARY"].values()) == n_good
    assert set(body["SUMMARY"]) == set(audiogen.CLASSES)
    rows = rows_of(api, body["JOB_ID"])
    by_name = {r["FILENAME"]: r for r in rows}
    assert len(rows) == len(by_name) == n_good + n_bad  # every file exactly once
    assert {n for n, r in by_name.items() if "EMOTION" in r} == mixed["good"]
    for name, code in mixed["bad"].items():
        assert by_name[name]["ERROR"]["CODE"] == code, by_name[name]
    for name in mixed["good"]:
        assert 0 < by_name[name]["PROBABILITY"] <= 1


def test_results_paging_csv_and_jsonl(api, scored):
    job = scored["JOB_ID"]
    rows = rows_of(api, job)
    paged, url = [], f"/jobs/{job}/results?limit=7"
    while url:
        page = api.get(url).json()
        assert page["COUNT"] == len(rows) and len(page["ROWS"]) <= 7
        paged += page["ROWS"]
        url = page["NEXT"]
    assert paged == rows  # file order, the same rows
    assert api.get(f"/jobs/{job}/results?offset=3&limit=2").json()["ROWS"] == rows[3:5]
    resp = api.get(f"/jobs/{job}/results?format=csv")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["FILENAME"] for r in table] == [r["FILENAME"] for r in rows]
    for line, row in zip(table, rows):
        if "ERROR" in row:
            assert line["ERROR_CODE"] == row["ERROR"]["CODE"] and not line["EMOTION"]
        else:
            assert line["EMOTION"] == row["EMOTION"] and float(line["PROBABILITY"]) > 0
    for query, code in (("format=xml", "INVALID_FORMAT"), ("limit=0", "INVALID_LIMIT")):
        resp = api.get(f"/jobs/{job}/results?{query}")
        assert resp.status_code == 400 and resp.json()["ERROR"]["CODE"] == code
    train_job = api.get("/jobs?kind=train&limit=1").json()["JOBS"][0]["JOB_ID"]
    assert api.get(f"/jobs/{train_job}/results").status_code == 409


def test_cli_score_writes_results(client_env, scored, mixed, tmp_path):
    out_csv = tmp_path / "rows.csv"
    done = ser(client_env, "score", "bulk_mix", "-o", str(out_csv), "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["STATUS"] == "SCORED" and job["OUTPUT"] == str(out_csv)
    with open(out_csv, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == job["COUNT"] == len(mixed["good"]) + len(mixed["bad"])


def test_non_recursive_and_patterns(api, trained, mixed):
    resp = api.post(
        "/score", json={"folder": "bulk_mix", "recursive": False, "patterns": ["*.wav"]}
    )
    body = api.wait_job(resp.json()["JOB_ID"])
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    names = {r["FILENAME"] for r in rows_of(api, body["JOB_ID"])}
    assert names == {"bulk_mix/top.WAV", "bulk_mix/escape.wav"}  # case-insensitive match


def test_unusable_folders(api, trained, data_dir):
    for folder, code in (
        ("../", "INVALID_PATH"),
        ("escape_dir", "INVALID_PATH"),
        ("clips/calm.wav", "PATH_NOT_FOUND"),
        ("no/such/dir", "PATH_NOT_FOUND"),
    ):
        resp = api.post("/score", json={"folder": folder})
        assert resp.status_code == 400 and resp.json()["ERROR"]["CODE"] == code, resp.text
    for bad in ({}, {"folder": "clips", "patterns": []}, {"folder": "clips", "recursive": "y"}):
        assert api.post("/score", json=bad).status_code == 400
    (data_dir / "bulk_empty").mkdir(exist_ok=True)
    (data_dir / "bulk_empty" / "notes.txt").write_text("no audio here")
    job = api.post("/score", json={"folder": "bulk_empty"}).json()
    body = api.wait_job(job["JOB_ID"])
    assert body["JOB_STATUS"] == "FAILED" and body["ERROR"]["CODE"] == "NO_AUDIO_FILES", body


def test_cancel_stops_remaining_chunks(api, trained, data_dir, redis_client, settings):
    make_clips(data_dir / "bulk_cancel", 160, 2.0, seed=60_000)
    job = api.post("/score", json={"folder": "bulk_cancel"}).json()["JOB_ID"]
    wait_until(
        lambda: api.get(f"/jobs/{job}").json().get("PROGRESS", {}).get("DONE", 0) > 0,
        60,
        "first chunk",
    )
    resp = api.delete(f"/jobs/{job}")
    assert resp.status_code == 200 and resp.json()["JOB_STATUS"] == "CANCELLED"
    key = f"{settings.key_prefix}job:{job}:rows"
    stored = redis_client.hlen(key)
    time.sleep(3)  # later chunks check the job first and skip
    assert redis_client.hlen(key) == stored < 160
    assert api.get(f"/jobs/{job}").json()["JOB_STATUS"] == "CANCELLED"


# -- a small cluster of its own: kill workers, fan out featurization ----------------------------
class Cluster:
    def __init__(self, env: dict, client, nodes: dict[str, Worker]) -> None:
        self.env = env
        self.redis = client
        self.prefix = env["SER_KEY_PREFIX"]
        self.nodes = nodes
        self.http = make_client(env)
        self.auth = {"Authorization": f"Bearer {env['SER_API_KEY']}"}

    def post(self, path: str, body: dict) -> dict:
        resp = self.http.post(path, json=body, headers=self.auth)
        assert resp.status_code == 202, resp.get_data(as_text=True)
        return resp.get_json()

    def wait(self, job_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.http.get(f"/jobs/{job_id}?wait=5", headers=self.auth).get_json()
            if body["JOB_STATUS"] not in ("QUEUED", "RUNNING") or time.monotonic() > deadline:
                return body

    def rows(self, job_id: str) -> list[dict]:
        resp = self.http.get(f"/jobs/{job_id}/results?format=jsonl", headers=self.auth)
        return [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]

    def stored(self, job_id: str) -> int:
        return int(self.redis.hlen(f"{self.prefix}job:{job_id}:rows"))


@pytest.fixture(scope="module")
def cluster(service_env, redis_url, redis_client, settings, trained, logdir):
    """Nodes ka (2 predict processes) and kb (train + predict, 1 process) on Redis db 1, with
    a visibility timeout of 12 s; the current model copied over from the shared registry."""
    import redis

    env = dict(service_env)
    env.update(
        SER_REDIS_URL=redis_url.rsplit("/", 1)[0] + "/1",
        SER_KEY_PREFIX=f"serbulk{uuid.uuid4().hex[:6]}:",
        SER_VISIBILITY_TIMEOUT="12",
        SER_PREDICT_TIME_LIMIT="10",
        SER_TRAIN_TIME_LIMIT="11",
        SER_SEGMENT_CHUNK_SECONDS="10",  # a recording over 10 s is spread over chunks
    )
    client = redis.Redis.from_url(env["SER_REDIS_URL"])
    src = Registry(redis_client, settings.key_prefix)
    version = src.current()
    data = redis_client.hget(f"{settings.key_prefix}model:{version}", "bundle")
    Registry(client, env["SER_KEY_PREFIX"]).publish(
        data, src.meta(version), settings.require_secret_key()
    )
    ka = Worker(env, "ka", logdir, "ser.predict", concurrency=2)
    kb = Worker(env, "kb", logdir, "ser.train,ser.predict", concurrency=1)
    try:
        ka.wait_ready(client, env["SER_KEY_PREFIX"])
        kb.wait_ready(client, env["SER_KEY_PREFIX"])
        yield Cluster(env, client, {"ka": ka, "kb": kb})
    finally:
        for w in (ka, kb):
            w.stop()
        client.flushdb()


def test_retrain_decodes_only_new_files_across_nodes(cluster, data_dir):
    ds = data_dir / "bulk_retrain"
    make_clips(ds, 18, 1.1, seed=70_000)
    first = cluster.wait(cluster.post("/train", {"dataset": "bulk_retrain"})["JOB_ID"])
    assert first["JOB_STATUS"] == "SUCCEEDED", first
    assert (first["FEATURES_COMPUTED"], first["FEATURES_CACHED"]) == (18, 0)
    make_clips(ds, 10, 1.1, seed=71_000)
    again = cluster.wait(cluster.post("/train", {"dataset": "bulk_retrain"})["JOB_ID"])
    assert again["JOB_STATUS"] == "SUCCEEDED", again
    assert again["N_SAMPLES"] == 28
    assert (again["FEATURES_COMPUTED"], again["FEATURES_CACHED"]) == (10, 18)
    # bulk scoring reads the same cache: scoring the training set decodes nothing new
    feats = set(cluster.redis.scan_iter(match=f"{cluster.prefix}feat:*", count=1000))
    job = cluster.wait(cluster.post("/score", {"folder": "bulk_retrain"})["JOB_ID"])
    assert job["JOB_STATUS"] == "SUCCEEDED" and job["COUNT"] == 28 and job["FAILED"] == 0
    assert set(cluster.redis.scan_iter(match=f"{cluster.prefix}feat:*", count=1000)) == feats


def _score_while(cluster, folder: str, n: int, action) -> dict:
    job = cluster.post("/score", {"folder": folder})["JOB_ID"]
    wait_until(lambda: cluster.stored(job) >= 16, 60, "first chunks")
    assert cluster.stored(job) < n, "the job finished before the kill; use more files"
    action()
    body = cluster.wait(job, timeout=90)
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    rows = cluster.rows(job)
    names = [r["FILENAME"] for r in rows]
    assert body["COUNT"] == len(rows) == len(set(names)) == n == cluster.stored(job)
    assert body["FAILED"] == 0, [r for r in rows if "ERROR" in r][:3]
    return body


def test_worker_process_killed_mid_job_finishes_exactly_once(cluster, data_dir):
    make_clips(data_dir / "bulk_kill1", 240, 2.0, seed=80_000)
    ka = cluster.nodes["ka"]

    def kill_a_child():
        pids = ka.pids()[1:]
        assert pids, "ka has no pool processes"
        os.kill(pids[0], signal.SIGKILL)

    _score_while(cluster, "bulk_kill1", 240, kill_a_child)
    assert ka.proc.poll() is None  # the node replaced its process


def test_worker_process_killed_mid_recording_loses_no_segment_and_duplicates_none(
    cluster, data_dir
):
    """A 5-minute recording spread over 10-s ranges on both nodes; a pool process is killed
    while its chunks run: the segments equal those of one in-process pass."""
    from ser.ml import segments
    from ser.ml.bundle import Bundle

    unit = audiogen.recording([("calm", 4.0), (None, 1.0), ("tense", 3.0), (None, 2.0)], seed=7)
    path = audiogen.write_repeated(data_dir / "bulk_long" / "five.flac", unit, 30)
    job = cluster.post("/predict", {"filename": "bulk_long/five.flac", "segments": True})
    job_id = job["JOB_ID"]
    entries = [f"{cluster.prefix}job:{job_id}:seg:0:p{n}" for n in (1, 2)]

    def started() -> bool:
        return int(cluster.redis.hlen(entries[0])) >= 4 or cluster.redis.exists(entries[1])

    wait_until(started, 60, "first ranges stored")
    assert cluster.redis.exists(entries[0]), "the recording finished before the kill"
    node = next(n for n in cluster.nodes.values() if n.alive() and n.pids()[1:])
    os.kill(node.pids()[1], signal.SIGKILL)  # a pool process (ka, unless a test killed it)
    body = cluster.wait(job_id, timeout=90)
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    registry = Registry(cluster.redis, cluster.prefix)
    key = cluster.env["SER_SECRET_KEY"].encode()
    bundle = registry.load(body["MODEL_VERSION"], key, Bundle.from_bytes)
    want = segments.segment(bundle, path, filename="bulk_long/five.flac")
    got = body["SEGMENTS"]
    assert [(s["START"], s["END"], s["EMOTION"]) for s in got] == [
        (s["START"], s["END"], s["EMOTION"]) for s in want["SEGMENTS"]
    ]
    assert body["SPEECH_SECONDS"] == want["SPEECH_SECONDS"] and body["DURATION"] == 300.0
    assert node.proc.poll() is None  # the node replaced its process


def test_whole_node_killed_mid_job_another_finishes(cluster, data_dir):
    make_clips(data_dir / "bulk_kill2", 240, 2.0, seed=90_000)
    t0 = time.monotonic()
    _score_while(cluster, "bulk_kill2", 240, cluster.nodes["ka"].kill)
    # ka's reserved chunks came back after the 12 s visibility timeout, on kb
    assert time.monotonic() - t0 < 80
