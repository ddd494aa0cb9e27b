"""POST /predict with segments: emotion over time through the service and `ser predict`."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import soundfile as sf

from tests import audiogen
from tests.harness import ser

PARTS = [(None, 1.0), ("calm", 4.0), (None, 1.0), ("tense", 5.0), (None, 1.0)]


def _recording(parts, seed: int = 0) -> np.ndarray:
    ys = [
        audiogen.noise(s, amp=1e-4, seed=i)
        if label is None
        else audiogen.voice_like(label, s, seed=seed + i)
        for i, (label, s) in enumerate(parts)
    ]
    return np.concatenate(ys)


@pytest.fixture(scope="module")
def long_file(data_dir):
    path = data_dir / "long" / "talk.flac"
    audiogen.write(path, _recording(PARTS, seed=40))
    return path


def _check(body: dict, name: str) -> None:
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    assert body["FILENAME"] == name
    assert body["DURATION"] == pytest.approx(12.0, abs=0.01)
    assert body["SPEECH_SECONDS"] == pytest.approx(9.0, abs=0.4)
    segs = body["SEGMENTS"]
    assert segs and [s["START"] for s in segs] == sorted(s["START"] for s in segs)
    assert segs[0]["START"] == pytest.approx(1.0, abs=0.1)
    assert segs[-1]["END"] == pytest.approx(11.0, abs=0.1)
    assert {"calm", "tense"} & set(body["SUMMARY"])
    assert body["EMOTION"] in body["SUMMARY"] and 0 < body["PROBABILITY"] <= 1
    assert body["MODEL_VERSION"].startswith("v")


def test_segments_by_filename_form_and_raw_body(api, trained, long_file):
    resp = api.post("/predict?wait=30", json={"filename": "long/talk.flac", "segments": True})
    assert resp.status_code == 200, resp.text
    _check(resp.json(), "long/talk.flac")

    with open(long_file, "rb") as fh:
        resp = api.post(
            "/predict?wait=30", files={"file": ("t.flac", fh)}, data={"segments": "true"}
        )
    assert resp.status_code == 200, resp.text
    _check(resp.json(), "t.flac")

    raw = long_file.read_bytes()
    resp = api.post(
        "/predict?wait=30&segments=1&name=r.flac",
        data=raw,
        headers={"Content-Type": "audio/flac"},
    )
    assert resp.status_code == 200, resp.text
    _check(resp.json(), "r.flac")

    plain = api.post("/predict?wait=30", json={"filename": "long/talk.flac"}).json()
    assert plain["JOB_STATUS"] == "SUCCEEDED" and "SEGMENTS" not in plain


def test_segments_refusals(api, trained, data_dir):
    bad = api.post("/predict", json={"filename": "long/talk.flac", "segments": "yes"})
    assert bad.status_code == 400 and bad.json()["ERROR"]["CODE"] == "MALFORMED_BODY"
    both = api.post(
        "/predict", json={"filename": "clips/calm.wav", "segments": True, "speaker": "a"}
    )
    assert both.status_code == 400 and both.json()["ERROR"]["CODE"] == "INVALID_SPEAKER"
    silent = api.post("/predict?wait=30", json={"filename": "clips/silent.wav", "segments": True})
    assert silent.status_code == 415 and silent.json()["ERROR"]["CODE"] == "AUDIO_SILENT"


def test_progress_in_seconds_of_audio(api, trained, data_dir):
    """A 10-minute recording reports the seconds of audio done while it runs."""
    path = data_dir / "long" / "ten_minutes.flac"
    unit = _recording([("calm", 4.0), (None, 1.0), ("excited", 3.0), (None, 2.0)], seed=5)
    with sf.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16") as f:
        for _ in range(60):
            f.write(unit)
    job = api.post("/predict", json={"filename": "long/ten_minutes.flac", "segments": True})
    assert job.status_code == 202, job.text
    job_id = job.json()["JOB_ID"]
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = api.get(f"/jobs/{job_id}").json()
        if body["JOB_STATUS"] not in ("QUEUED", "RUNNING"):
            break
        if body["JOB_STATUS"] == "RUNNING":
            seen.append((body["PROGRESS"]["DONE"], body["PROGRESS"]["TOTAL"]))
        time.sleep(0.05)
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    assert body["DURATION"] == 600.0 and body["SPEECH_SECONDS"] == pytest.approx(420, rel=0.02)
    running = [(d, t) for d, t in seen if (d, t) != (0, 1)]  # (0, 1): before the first report
    assert running, f"no progress seen: {seen[:5]}"
    assert all(t == 600 and 0 < d <= 600 for d, t in running), running
    assert [d for d, _ in running] == sorted(d for d, _ in running)


def test_cli_predict_segments(client_env, trained, long_file):
    out = ser(client_env, "predict", "--segments", str(long_file), "--wait", "--json")
    assert out.returncode == 0, out.stderr
    _check(json.loads(out.stdout), "talk.flac")
    out = ser(client_env, "predict", "--segments", str(long_file), "--wait")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("talk.flac\t") and len(lines) >= 3
    assert all(line.startswith("  ") and "\t" in line for line in lines[1:])


def test_cancel_stops_a_running_segments_job(api, trained, data_dir, long_file):
    path = data_dir / "long" / "hour.flac"
    unit = _recording([("tense", 4.0), (None, 1.0), ("calm", 3.0), (None, 2.0)], seed=8)
    with sf.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16") as f:
        for _ in range(360):
            f.write(unit)
    job_id = api.post("/predict", json={"filename": "long/hour.flac", "segments": True}).json()[
        "JOB_ID"
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = api.get(f"/jobs/{job_id}").json()
        if body["JOB_STATUS"] == "RUNNING" and body["PROGRESS"]["TOTAL"] == 3600:
            break
        assert body["JOB_STATUS"] in ("QUEUED", "RUNNING"), body
        time.sleep(0.05)
    assert api.delete(f"/jobs/{job_id}").status_code == 200
    time.sleep(1.0)  # past the worker's next progress report
    body = api.get(f"/jobs/{job_id}").json()
    assert body["JOB_STATUS"] == "CANCELLED" and "SEGMENTS" not in body
    # the service goes on: a short segments job still finishes (that the worker stopped at its
    # next progress report is not observed here)
    quick = api.post("/predict?wait=30", json={"filename": "long/talk.flac", "segments": True})
    assert quick.status_code == 200 and quick.json()["JOB_STATUS"] == "SUCCEEDED"
