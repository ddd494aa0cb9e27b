"""Bulk scoring normalised by speakers (POST /score with "speakers"), against real Redis and
workers: speakers from labels.csv, from folders and from a regular expression; two passes
whose chunks can run twice without changing a row; the lost pass-2 message republished.

The models are trained in-process (one adapting to speakers, one not) and published to the
shared registry for this module; the version current before is activated again at the end.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid

import pytest

from ser.ml.adapt import MIN_CLIPS
from ser.service import jobs as J
from ser.service.registry import Registry
from tests import audiogen
from tests.stack.conftest import isolated_runner
from tests.stack.test_bulk import rows_of

FOLDER = "spk_mix"
SPEAKERS = ("s1", "s2", "s3")
REGEX = r"^(?P<speaker>s\d)/"


def _voice(label: str, seed: int, gain: float) -> object:
    return audiogen.voice_like(label, 1.0, seed=seed) * gain


@pytest.fixture(scope="module")
def spk_mix(data_dir) -> dict:
    """spk_mix/: speakers s1..s3 (5 clips each, at their own gain; s1 also a corrupt file),
    solo/ (one clip), stray.wav at the top; labels.csv names every speaker file (labels that
    mean nothing to the model) but not stray.wav, and a file that does not exist."""
    root = data_dir / FOLDER
    labels = list(audiogen.CLASSES)
    table = []
    seed = 120_000
    for k, spk in enumerate(SPEAKERS):
        for i in range(5):  # MIN_CLIPS: enough for the statistics to be used
            rel = f"{spk}/{labels[i % 3]}_{i}.wav"
            audiogen.write(root / rel, _voice(labels[i % 3], seed, 0.6 + 0.3 * k))
            table.append((rel, "whatever", spk))
            seed += 1
    (root / "s1" / "broken.wav").write_text("not audio at all\n")
    table.append(("s1/broken.wav", "?", "s1"))
    audiogen.write(root / "solo" / "one.wav", _voice("tense", seed, 1.0))
    table.append(("./solo/one.wav", "", "solo"))
    audiogen.write(root / "stray.wav", _voice("calm", seed + 1, 1.0))
    table.append(("gone.wav", "calm", "s9"))
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "speaker"])
        writer.writerows(table)
    spk = {f"{FOLDER}/{rel.removeprefix('./')}": s for rel, _, s in table if rel != "gone.wav"}
    files = sorted([*spk, f"{FOLDER}/stray.wav"])
    folder = {f: f.split("/")[-2] for f in files}
    regex = {f: (f.split("/")[1] if f.split("/")[1] in SPEAKERS else None) for f in files}
    labels_map = {f: spk.get(f) for f in files}
    return {"files": files, "labels": labels_map, "folder": folder, "regex": regex}


def _train(data_dir, adapt: str) -> bytes:
    from ser.ml import training

    return training.train(data_dir / "ds", adapt=adapt, repeats=1).to_bytes()


@pytest.fixture(scope="module")
def models(data_dir, redis_client, settings, trained) -> dict:
    """{"speaker": version, "off": version} in the shared registry; the adapting one current
    while the module runs."""
    reg = Registry(redis_client, settings.key_prefix)
    before = reg.current()
    key = settings.require_secret_key()
    out = {}
    for adapt in ("off", "speaker"):  # the adapting one last: it stays current
        data = _train(data_dir, adapt)
        out[adapt] = reg.publish(data, {"dataset": "ds", "metrics": {}, "adapt": adapt}, key)
        out[adapt + "_bytes"] = data
    yield out
    reg.activate(before)


def _activate(api, version: str) -> None:
    assert api.post(f"/models/{version}/activate").status_code == 200


def _score(api, body: dict, timeout: float = 120) -> dict:
    resp = api.post("/score", json=body)
    assert resp.status_code == 202, resp.text
    done = api.wait_job(resp.json()["JOB_ID"], timeout=timeout)
    assert done["JOB_STATUS"] == "SUCCEEDED", done
    return done


def _in_process(bundle_bytes: bytes, data_dir, files: list[str], speakers: list) -> list:
    from ser.ml.bundle import Bundle

    bundle = Bundle.from_bytes(bundle_bytes)
    return bundle.predict_many([data_dir / f for f in files], speakers=speakers, stats=None)


@pytest.mark.parametrize(
    ("mode", "value"), [("labels", "labels"), ("folder", "folder"), ("regex", REGEX)]
)
def test_each_mode_scores_like_the_library_over_the_whole_folder(
    api, data_dir, spk_mix, models, mode, value
):
    _activate(api, models["speaker"])
    body = _score(api, {"folder": FOLDER, "speakers": value, "chunk_size": 3})
    expected = spk_mix[mode]
    files = spk_mix["files"]
    assert body["SPEAKERS"] == mode and body["PASSES"] == 2 and body["ADAPTATION"] == "speaker"
    assert body.get("SPEAKER_PATTERN") == (REGEX if mode == "regex" else None)
    assert body["MODEL_VERSION"] == models["speaker"]
    assert body["SPEAKER_COUNT"] == len({s for s in expected.values() if s})
    assert (body["COUNT"], body["FAILED"]) == (len(files), 1)
    rows = rows_of(api, body["JOB_ID"])
    assert [r["FILENAME"] for r in rows] == files  # every file once, in file order
    assert {r["FILENAME"]: r["SPEAKER"] for r in rows} == expected
    # the library over the whole folder, statistics from the same files: the same answers
    ref = _in_process(models["speaker_bytes"], data_dir, files, [expected[f] for f in files])
    clips = {s: sum(1 for f in files if expected[f] == s and "broken" not in f) for s in SPEAKERS}
    for row, want in zip(rows, ref):
        if "broken" in row["FILENAME"]:  # failed in pass 1: its own error, no statistics
            assert row["ERROR"]["CODE"] == "AUDIO_UNREADABLE" and "ADAPTED" not in row
            assert not hasattr(want, "keys")
            continue
        assert row["EMOTION"] == want["emotion"], row
        assert row["PROBABILITY"] == pytest.approx(want["probability"], abs=2e-6)
        assert row["ADAPTED"] is want["adapted"]
        assert row["ADAPTED"] is (clips.get(row["SPEAKER"], 0) >= MIN_CLIPS), row
    assert body["ADAPTED_COUNT"] == sum(1 for r in rows if r.get("ADAPTED")) == 15


def test_rows_export_speaker_columns(api, spk_mix, models):
    _activate(api, models["speaker"])
    body = _score(api, {"folder": FOLDER, "speakers": "folder"})
    resp = api.get(f"/jobs/{body['JOB_ID']}/results?format=csv")
    table = list(csv.DictReader(io.StringIO(resp.text)))
    assert list(table[0]) == [
        "FILENAME",
        "EMOTION",
        "PROBABILITY",
        "ERROR_CODE",
        "ERROR_MESSAGE",
        "SPEAKER",
        "ADAPTED",
    ]
    by_name = {r["FILENAME"]: r for r in table}
    assert by_name[f"{FOLDER}/s2/calm_0.wav"]["SPEAKER"] == "s2"
    assert by_name[f"{FOLDER}/s2/calm_0.wav"]["ADAPTED"] == "true"
    assert by_name[f"{FOLDER}/solo/one.wav"]["ADAPTED"] == "false"
    assert by_name[f"{FOLDER}/s1/broken.wav"]["ADAPTED"] == ""
    assert by_name[f"{FOLDER}/s1/broken.wav"]["ERROR_CODE"] == "AUDIO_UNREADABLE"
    lines = [
        json.loads(x)
        for x in api.get(f"/jobs/{body['JOB_ID']}/results?format=jsonl").text.splitlines()
    ]
    assert lines == rows_of(api, body["JOB_ID"]) and all("SPEAKER" in r for r in lines)


def test_a_model_that_does_not_adapt_scores_in_one_pass(api, spk_mix, models):
    _activate(api, models["off"])
    try:
        body = _score(api, {"folder": FOLDER, "speakers": "folder", "chunk_size": 4})
    finally:
        _activate(api, models["speaker"])
    assert (body["ADAPTATION"], body["PASSES"], body["ADAPTED_COUNT"]) == ("off", 1, 0)
    assert "does not adapt" in body["NOTE"]
    rows = rows_of(api, body["JOB_ID"])
    assert {r["FILENAME"]: r["SPEAKER"] for r in rows} == spk_mix["folder"]
    assert all(r["ADAPTED"] is False for r in rows if "ERROR" not in r)


def test_without_speakers_rows_are_as_before(api, spk_mix, models):
    _activate(api, models["speaker"])
    body = _score(api, {"folder": FOLDER})
    assert "SPEAKERS" not in body and "PASSES" not in body
    rows = rows_of(api, body["JOB_ID"])
    assert all("SPEAKER" not in r and "ADAPTED" not in r for r in rows)


def test_bad_speakers_are_refused(api, data_dir, spk_mix, models):
    for value in (
        "(",
        r"(\d+)",
        r"(?P<spk>\w+)",
        "(?P<speaker>a)" + "b" * 200,
        5,
        "",
        ["folder"],
        "Folder",
    ):
        resp = api.post("/score", json={"folder": FOLDER, "speakers": value})
        assert resp.status_code == 400, (value, resp.text)
        assert resp.json()["ERROR"]["CODE"] == "INVALID_SPEAKERS", resp.text
    # "labels" is checked cheaply by the API: the file and its columns
    resp = api.post("/score", json={"folder": "clips", "speakers": "labels"})
    assert resp.status_code == 400 and resp.json()["ERROR"]["CODE"] == "LABELS_NOT_FOUND"
    nospk = data_dir / "spk_nocol"
    audiogen.write(nospk / "a.wav", audiogen.voice_like("calm", 1.0, seed=3))
    (nospk / "labels.csv").write_text("path,label\na.wav,calm\n")
    resp = api.post("/score", json={"folder": "spk_nocol", "speakers": "labels"})
    assert resp.status_code == 400 and resp.json()["ERROR"]["CODE"] == "DATASET_NO_SPEAKERS"
    assert str(data_dir) not in resp.text
    escape = data_dir / "spk_escape"
    audiogen.write(escape / "a.wav", audiogen.voice_like("calm", 1.0, seed=4))
    (escape / "labels.csv").symlink_to(data_dir / "spk_mix" / ".." / ".." / "outside.csv")
    resp = api.post("/score", json={"folder": "spk_escape", "speakers": "labels"})
    assert resp.status_code == 400 and resp.json()["ERROR"]["CODE"] == "INVALID_PATH"


# -- the passes as plain functions: redelivery, cancellation, a lost pass-2 message ------------
@pytest.fixture
def runner(settings, redis_client, models):
    """A Context on a fresh key prefix of the shared Redis with the adapting model current;
    messages go to ``sent`` (no worker sees them)."""
    with isolated_runner(settings, redis_client, models["speaker_bytes"], "spk") as runner:
        yield runner


def _start_job(ctx, sent, send, speakers: str = "folder", chunk: int = 3) -> tuple[str, list]:
    from worker.score import run_score

    params = {
        "folder": FOLDER,
        "recursive": True,
        "patterns": ["*.wav"],
        "model_version": ctx.registry.current(),
        "speakers": speakers,
        "chunk_size": chunk,
    }
    rec = ctx.jobs.create("score", params)
    del sent[:]
    out = run_score(ctx, rec["id"], params, send)
    assert out.get("two_pass"), out
    msgs = [args[1] for _, args in sent]
    assert all(m["pass"] == 1 for m in msgs)
    del sent[:]
    return rec["id"], msgs


def _run(ctx, job_id, msg, send):
    from worker.score import run_score_chunk

    return run_score_chunk(ctx, job_id, msg, send=send)


def test_redelivered_chunks_of_both_passes_change_nothing(runner, spk_mix):
    ctx, sent, send = runner
    # a reference job, every chunk once
    ref_id, first = _start_job(ctx, sent, send)
    for msg in first:
        _run(ctx, ref_id, msg, send)
    second = [args[1] for _, args in sent]
    assert len(second) == len(first) and all(m["pass"] == 2 for m in second)
    del sent[:]
    for msg in second:
        _run(ctx, ref_id, msg, send)
    ref = ctx.jobs.get(ref_id)
    assert ref["status"] == J.SUCCEEDED, ref
    ref_rows = ctx.results.all_rows(ref_id, len(spk_mix["files"]))

    # the same job with chunks delivered twice, before and after pass 1 completes
    job_id, first = _start_job(ctx, sent, send)
    _run(ctx, job_id, first[1], send)
    _run(ctx, job_id, first[1], send)  # redelivered at once: overwrites its entry
    for msg in first[2:]:
        _run(ctx, job_id, msg, send)
    assert sent == []  # chunk 0 missing: pass 1 is not complete
    assert ctx.jobs.get(job_id)["featurized"] == str(sum(len(m["files"]) for m in first[1:]))
    out = _run(ctx, job_id, first[0], send)
    assert out["sent"] == len(first)
    again = _run(ctx, job_id, first[0], send)  # redelivered after completing pass 1
    late = _run(ctx, job_id, first[-1], send)
    assert (again["sent"], late["sent"]) == (0, 0) and len(sent) == len(first)
    second = [args[1] for _, args in sent]
    _run(ctx, job_id, second[0], send)
    _run(ctx, job_id, second[0], send)  # a pass-2 chunk twice: rows overwritten
    assert ctx.results.count(job_id) == len(second[0]["files"])
    for msg in reversed(second[1:]):
        _run(ctx, job_id, msg, send)
    rec = ctx.jobs.get(job_id)
    assert rec["status"] == J.SUCCEEDED, rec
    total = len(spk_mix["files"])
    assert ctx.results.count(job_id) == total
    assert ctx.results.all_rows(job_id, total) == ref_rows
    keep = ("COUNT", "SUCCEEDED", "FAILED", "SUMMARY", "SPEAKER_COUNT", "ADAPTED_COUNT", "PASSES")
    assert {k: rec["result"][k] for k in keep} == {k: ref["result"][k] for k in keep}
    # a pass-2 chunk delivered once more after the end: the job and rows stay as they are
    assert _run(ctx, job_id, second[0], send)["skipped"]
    assert not ctx.redis.exists(ctx.results.stats_key(job_id))  # pass-1 entries dropped


def test_cancel_between_the_passes_stops_pass_two(runner, spk_mix):
    ctx, sent, send = runner
    job_id, first = _start_job(ctx, sent, send, speakers=REGEX, chunk=5)
    for msg in first:
        _run(ctx, job_id, msg, send)
    second = [args[1] for _, args in sent]
    assert second
    assert ctx.jobs.cancel(job_id)[0]
    for msg in second:
        assert _run(ctx, job_id, msg, send)["skipped"]
    assert ctx.results.count(job_id) == 0
    assert ctx.jobs.get(job_id)["status"] == J.CANCELLED


def test_cancelled_during_pass_one_sends_no_pass_two(runner):
    ctx, sent, send = runner
    job_id, first = _start_job(ctx, sent, send)
    for msg in first[:-1]:
        _run(ctx, job_id, msg, send)
    ctx.jobs.cancel(job_id)
    out = _run(ctx, job_id, first[-1], send)
    assert out["skipped"] and sent == []


def test_a_lost_pass_two_message_is_republished(redis_url, service_env, models):
    """Pass 2 goes through the outbox like pass 1: the sweeper sends a lost one again."""
    import redis

    from ser import config
    from ser.contract import PREDICT_QUEUE, TASK_SCORE_CHUNK
    from worker.celeryconfig import make_celery
    from worker.context import Context
    from worker.producer import TaskMessages, publish
    from worker.sweeper import Sweeper

    url = redis_url.rsplit("/", 1)[0] + "/6"  # no worker reads this database
    client = redis.Redis.from_url(url)
    client.flushdb()
    env = dict(service_env, SER_REDIS_URL=url, SER_KEY_PREFIX=f"spkrec{uuid.uuid4().hex[:6]}:")
    env["SER_RECOVERY_INTERVAL"] = "1"
    settings = config.load(env)
    ctx = Context(settings)
    ctx.registry.publish(models["speaker_bytes"], {"metrics": {}}, settings.require_secret_key())
    messages = TaskMessages(make_celery(settings))

    def send(name, args, pipe=None):
        publish(messages, ctx.outbox, name, args, pipe=pipe)

    try:
        collected: list = []
        job_id, first = _start_job(ctx, collected, lambda n, a, pipe=None: collected.append((n, a)))
        for msg in first:
            _run(ctx, job_id, msg, send)
        queued = [json.loads(raw) for raw in client.lrange(PREDICT_QUEUE, 0, -1)]
        ids = {m["headers"]["id"] for m in queued}
        assert len(ids) == len(first) and all(
            m["headers"]["task"] == TASK_SCORE_CHUNK for m in queued
        )
        assert ids <= {i.decode() for i in client.zrange(ctx.outbox.index_key, 0, -1)}
        client.delete(PREDICT_QUEUE)  # the broker lost every pass-2 message
        sweeper = Sweeper(messages, client, settings, "test")
        time.sleep(1.1)
        sweeper.sweep_once(force=True)
        time.sleep(1.1)
        report = sweeper.sweep_once(force=True)
        assert set(report.republished) == ids
        assert {json.loads(r)["headers"]["id"] for r in client.lrange(PREDICT_QUEUE, 0, -1)} == ids
    finally:
        client.flushdb()
        client.close()


def test_labels_gone_by_the_listing_fail_the_job(runner, data_dir):
    """The API checked labels.csv; the worker reads it again when it lists the folder."""
    from worker.score import run_score

    ctx, _, send = runner
    folder = data_dir / "spk_vanish"
    audiogen.write(folder / "a.wav", audiogen.voice_like("calm", 1.0, seed=5))
    params = {"folder": "spk_vanish", "model_version": ctx.registry.current()}
    for labels, code in ((None, "LABELS_NOT_FOUND"), ("path,label\n", "DATASET_NO_SPEAKERS")):
        if labels is not None:
            (folder / "labels.csv").write_text(labels)
        rec = ctx.jobs.create("score", dict(params, speakers="labels"))
        run_score(ctx, rec["id"], dict(params, speakers="labels"), send)
        failed = ctx.jobs.get(rec["id"])
        assert failed["status"] == J.FAILED and failed["error"]["CODE"] == code, failed
        assert failed["http_status"] == 400


def test_cli_score_with_speakers(client_env, spk_mix, models, tmp_path):
    from tests.harness import ser

    out_csv = tmp_path / "rows.csv"
    done = ser(client_env, "score", FOLDER, "--speakers", "folder", "-o", str(out_csv), "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["SPEAKERS"] == "folder" and job["PASSES"] == 2, job
    with open(out_csv, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert {r["FILENAME"]: r["SPEAKER"] for r in table} == spk_mix["folder"]
    bad = ser(client_env, "score", FOLDER, "--speakers", "(nope")
    assert bad.returncode != 0 and "INVALID_SPEAKERS" in bad.stdout + bad.stderr
