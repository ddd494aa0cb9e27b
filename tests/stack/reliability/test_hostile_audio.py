"""The hostile corpus (tests/hostile.py: 41 malformed or odd recordings) through the service,
uploaded and by file name: each file gets its own code or a result, no worker dies, and the
files after a bad one are still scored."""

from __future__ import annotations

import time

import pytest

from tests import hostile
from tests.stack.reliability.conftest import MAX_UPLOAD_MB, error_of

# Where the service's answer differs from the decoder's, on purpose: the API looks at the
# upload before queueing, and an empty body is reported as empty rather than unreadable.
API_OVERRIDES = {"zero_bytes.wav": "AUDIO_EMPTY"}


@pytest.fixture(scope="module")
def corpus(stack) -> dict[str, str]:
    expected = hostile.write_corpus(stack.data_dir / "hostile")
    big = stack.data_dir / "hostile_big" / "over_the_limit.wav"
    big.parent.mkdir(exist_ok=True)
    big.write_bytes(b"RIFF" + b"\0" * (MAX_UPLOAD_MB * 1024 * 1024 + 100))
    return expected


def outcome(body: dict) -> str:
    if body["JOB_STATUS"] == "SUCCEEDED":
        assert body["EMOTION"] and 0 <= body["PROBABILITY"] <= 1, body
        return "ok"
    assert body["JOB_STATUS"] == "FAILED", body
    return body["ERROR"]["CODE"]


def run_corpus(stack, corpus: dict[str, str], send) -> dict[str, str]:
    """Send every file with ``send(name)`` (no wait), then collect each outcome."""
    got: dict[str, str] = {}
    jobs: dict[str, str] = {}
    for name in sorted(corpus):
        resp = send(name)
        if resp.status_code == 202:
            jobs[name] = resp.json()["JOB_ID"]
        else:  # refused by the API before queueing: a JSON error with its code
            assert resp.status_code in (400, 413, 415), (name, resp.status_code, resp.text)
            got[name] = error_of(resp, resp.status_code)
    deadline = time.monotonic() + 150
    for name, job_id in jobs.items():
        while True:
            body = stack.api.get(f"/jobs/{job_id}?wait=10").json()
            if body["JOB_STATUS"] not in ("QUEUED", "RUNNING"):
                break
            assert time.monotonic() < deadline, f"{name} never finished: {body}"
        got[name] = outcome(body)
    return got


def log_sizes(stack) -> dict[str, int]:
    return {name: len(node.logs()) for name, node in stack.nodes.items()}


def check(stack, corpus, got, pids, sizes) -> None:
    expected = {name: API_OVERRIDES.get(name, code) for name, code in corpus.items()}
    wrong = {n: (got[n], expected[n]) for n in expected if got[n] != expected[n]}
    assert not wrong, f"(got, expected): {wrong}"
    for name, node in stack.nodes.items():
        assert node.alive() and node.proc.pid == pids[name], f"node {name} died"
    logs = "".join(n.logs()[sizes[name] :] for name, n in stack.nodes.items())
    assert "WorkerLostError" not in logs and "exited prematurely" not in logs


def test_hostile_corpus_uploaded(healthy, corpus):
    stack = healthy
    pids = {name: node.proc.pid for name, node in stack.nodes.items()}
    sizes = log_sizes(stack)
    root = stack.data_dir / "hostile"

    def send(name):
        return stack.api.post("/predict", files={"file": (name, (root / name).read_bytes())})

    got = run_corpus(stack, corpus, send)
    check(stack, corpus, got, pids, sizes)
    big = stack.data_dir / "hostile_big" / "over_the_limit.wav"
    resp = stack.api.post("/predict", files={"file": (big.name, big.read_bytes())})
    assert error_of(resp, 413) == "UPLOAD_TOO_LARGE"


def test_hostile_corpus_by_filename(healthy, corpus):
    stack = healthy
    pids = {name: node.proc.pid for name, node in stack.nodes.items()}
    sizes = log_sizes(stack)

    def send(name):
        return stack.api.post("/predict", json={"filename": f"hostile/{name}"})

    got = run_corpus(stack, corpus, send)
    check(stack, corpus, got, pids, sizes)
    # a file on disk above the upload limit is not an upload: the worker reads and judges it
    resp = stack.api.post("/predict?wait=20", json={"filename": "hostile_big/over_the_limit.wav"})
    assert resp.status_code == 415 and resp.json()["ERROR"]["CODE"] == "AUDIO_UNREADABLE"


def test_a_batch_goes_on_after_bad_files(healthy, corpus):
    """Interleave the worst files with good ones: every good one still gets its result."""
    stack = healthy
    bad = [n for n, code in corpus.items() if code != "ok"]
    names = []
    for n in bad:
        names += [f"hostile/{n}", "clips/calm.wav"]
    ids = []
    for name in names:
        resp = stack.api.post("/predict", json={"filename": name})
        ids.append((name, resp.json()["JOB_ID"] if resp.status_code == 202 else None))
    for name, job_id in ids:
        if job_id is None:
            continue
        body = stack.api.wait_job(job_id, 120)
        if name == "clips/calm.wav":
            assert body["JOB_STATUS"] == "SUCCEEDED" and body["EMOTION"] == "calm", body
        else:
            assert body["JOB_STATUS"] == "FAILED", body


def test_bulk_scoring_of_the_hostile_folder_scores_every_file(healthy, corpus):
    """POST /score over the whole corpus: one job, a row per file, bad files do not stop it."""
    import json

    stack = healthy
    resp = stack.api.post("/score", json={"folder": "hostile"})
    assert resp.status_code == 202, resp.text  # a 404 (no POST /score) is a failure
    body = stack.api.wait_job(resp.json()["JOB_ID"], 150)
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    raw = stack.api.get(f"/jobs/{body['JOB_ID']}/results?format=jsonl")
    assert raw.status_code == 200, raw.text
    rows = [json.loads(line) for line in raw.text.splitlines() if line.strip()]
    got = {
        row["FILENAME"].rsplit("/", 1)[-1]: row["ERROR"]["CODE"] if "ERROR" in row else "ok"
        for row in rows
    }
    assert len(rows) == len(got) == len(corpus), (len(rows), len(corpus))
    wrong = {n: (got.get(n), code) for n, code in corpus.items() if got.get(n) != code}
    assert not wrong, f"(got, expected): {wrong}"
