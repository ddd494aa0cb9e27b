"""Emotion over time through the service: POST /predict and POST /score with segments, `ser
predict --segments` and `ser score --segments`; and a long recording spread over chunks by
time ranges, run as plain functions (redelivered chunks change nothing). The kill of a worker
process mid-recording: tests/stack/test_bulk.py."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from tests import audiogen
from tests.harness import ser

PARTS = [(None, 1.0), ("calm", 4.0), (None, 1.0), ("tense", 5.0), (None, 1.0)]


_recording = audiogen.recording


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
    """A 10-minute recording (over SER_SEGMENT_CHUNK_SECONDS: spread over chunks) reports the
    seconds of audio done while it runs."""
    path = data_dir / "long" / "ten_minutes.flac"
    unit = _recording([("calm", 4.0), (None, 1.0), ("excited", 3.0), (None, 2.0)], seed=5)
    audiogen.write_repeated(path, unit, 60)
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
    # (spread over chunks: 0 until the first range is done, then half of each pass's seconds)
    assert all(t == 600 and 0 <= d <= 600 for d, t in running), running
    assert any(d > 0 for d, _ in running), running
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
    audiogen.write_repeated(path, unit, 360)
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


# -- a long recording spread over chunks, as plain functions: redelivery changes nothing --------
@pytest.fixture(scope="module")
def adapting(data_dir):
    """A model that adapts to speakers, trained in-process on the session's small dataset."""
    from ser.ml import training

    bundle = training.train(data_dir / "ds", features="default", repeats=1, adapt="speaker")
    assert bundle.adapt == "speaker"
    return bundle


@pytest.fixture
def runner(settings, redis_client, adapting):
    """(Context, sent, send) on a fresh key prefix with the adapting model current and
    recordings over 10 s spread over chunks of 10 s; messages go to ``sent``."""
    from tests.stack.conftest import isolated_runner

    with isolated_runner(settings, redis_client, adapting.to_bytes(), "seg") as (ctx, sent, send):
        ctx.settings = ctx.settings.model_copy(update={"segment_chunk_seconds": 10.0})
        yield ctx, sent, send


def _drain(ctx, sent, send, job_id: str, seg_pass: int, repeat: int = 0) -> list[dict]:
    """Run the sent chunks of pass ``seg_pass`` last first, chunk ``repeat`` twice (a
    redelivery), then the completing one again once the pass is complete; returns them."""
    from worker.score import run_score_chunk

    msgs = [args[1] for _, args in sent if args[1].get("seg_pass") == seg_pass]
    assert msgs, sent
    del sent[:]
    order = list(reversed(msgs))
    order.insert(1, msgs[repeat])
    for msg in order:
        run_score_chunk(ctx, job_id, msg, send=send)
    before = list(sent)
    run_score_chunk(ctx, job_id, order[-1], send=send)  # redelivered after completing the pass
    assert sent == before, "a pass is sent once"
    return msgs


def _same_segments(got: dict, want: dict, abs_probability: float = 2e-4) -> None:
    assert [(s["START"], s["END"], s["EMOTION"]) for s in got["SEGMENTS"]] == [
        (s["START"], s["END"], s["EMOTION"]) for s in want["SEGMENTS"]
    ]
    for a, b in zip(got["SEGMENTS"], want["SEGMENTS"]):
        assert a["PROBABILITY"] == pytest.approx(b["PROBABILITY"], abs=abs_probability)
    for key in ("DURATION", "SPEECH_SECONDS", "EMOTION", "ADAPTED"):
        assert got[key] == want[key], key


def test_a_long_recording_spread_over_chunks_delivers_each_segment_once(runner, data_dir, adapting):
    from ser.ml import segments
    from worker.predict import run_predict

    ctx, sent, send = runner
    unit = _recording([("calm", 4.0), (None, 1.0), ("tense", 5.0), (None, 2.3)], seed=31)
    path = audiogen.write_repeated(data_dir / "long" / "split.flac", unit, 6)  # 73.8 s
    params = {"filename": "long/split.flac", "segments": True}
    job_id = ctx.jobs.create("predict", params, total=1)["id"]
    out = run_predict(ctx, job_id, params, send=send)
    assert out.get("chunks") is True, out
    rec = ctx.jobs.get(job_id)
    assert rec["status"] == "RUNNING" and rec["progress_total"] == 74
    first = _drain(ctx, sent, send, job_id, 1, repeat=2)
    assert len(first) == 8 and [m["index"] for m in first] == list(range(8))
    assert ctx.jobs.get(job_id)["progress_done"] == 36  # half of 73.8 s: pass 1 done
    for what in ("p1", "p1n"):  # planned: pass 1's energies are dropped with pass 2 sent
        assert not ctx.redis.exists(ctx.results.segment_key(job_id, 0, what))
    second = _drain(ctx, sent, send, job_id, 2, repeat=0)
    assert len(second) >= 5
    body = ctx.jobs.get(job_id)
    assert body["status"] == "SUCCEEDED", body
    want = segments.segment(adapting, path, filename="long/split.flac")
    assert want["ADAPTED"] is True
    _same_segments(body["result"], want)
    assert body["result"]["FILENAME"] == "long/split.flac"
    for what in ("p1", "p1n", "p2", "p2n"):  # the entries go once delivered
        assert not ctx.redis.exists(ctx.results.segment_key(job_id, 0, what))
    # a chunk of either pass redelivered after the delivery records nothing again (it would
    # otherwise start its pass's entries afresh and count its seconds twice); called as a
    # score job's chunk is while its other files still run (a finished job skips it earlier)
    from worker import segments as work
    from worker.score import finish_score

    done = ctx.jobs.get(job_id)["progress_done"]
    for msg in (first[0], second[0]):
        out = work.run_chunk(ctx, job_id, msg, adapting, "v1", send, finish_score)
        assert out["delivered"] == "before", out
    for what in ("p1", "p1n", "p2", "p2n"):
        assert not ctx.redis.exists(ctx.results.segment_key(job_id, 0, what))
    assert ctx.jobs.get(job_id)["progress_done"] == done
    # a second chunk that saw pass 2 complete at the same moment finds the entries gone and
    # delivers nothing (rather than a recording without its windows)
    with pytest.raises(work.Delivered):
        work._deliver_windows(ctx, job_id, second[-1], adapting, "v1", finish_score)
    assert ctx.jobs.get(job_id)["result"] == body["result"]


@pytest.mark.parametrize("seg_pass", [1, 2])
def test_a_recording_spread_over_chunks_fails_with_its_errors_own_status(
    runner, data_dir, seg_pass
):
    """A prediction spread over chunks that fails with an error not about its audio (here its
    file is gone before pass 1 or 2: PATH_NOT_FOUND) records that error's code and HTTP
    status, as the same prediction in one task does (worker.context.fail), not a 500."""
    from ser.errors import PathError
    from worker.predict import run_predict

    ctx, sent, send = runner
    unit = _recording([("calm", 4.0), (None, 1.0), ("tense", 3.0), (None, 1.0)], seed=35)
    name = f"long/vanishing{seg_pass}.flac"
    path = audiogen.write_repeated(data_dir / name, unit, 3)  # 27 s: 3 ranges of 10 s
    params = {"filename": name, "segments": True}
    job_id = ctx.jobs.create("predict", params, total=1)["id"]
    assert run_predict(ctx, job_id, params, send=send).get("chunks") is True
    if seg_pass == 2:
        _drain(ctx, sent, send, job_id, 1)
    path.unlink()
    _drain(ctx, sent, send, job_id, seg_pass)
    rec = ctx.jobs.get(job_id)
    assert rec["status"] == "FAILED", rec
    assert rec["error"]["CODE"] == "PATH_NOT_FOUND", rec["error"]
    assert rec["http_status"] == PathError.http_status == 400
    # the same prediction in one task (the file is missing from the start)
    alone = ctx.jobs.create("predict", params, total=1)["id"]
    run_predict(ctx, alone, params, send=send)
    one = ctx.jobs.get(alone)
    assert (one["error"]["CODE"], one["http_status"]) == (rec["error"]["CODE"], rec["http_status"])


@pytest.mark.parametrize("seg_pass", [1, 2])
def test_a_chunk_past_its_time_limit_fails_its_prediction_as_one_task_does(
    runner, data_dir, seg_pass, monkeypatch
):
    """A range that hits the task's soft time limit fails the prediction spread over chunks
    with JOB_TIMEOUT (504), the code and status of a prediction in one task past its limit
    (worker.context.error_of), not a 500."""
    from celery.exceptions import SoftTimeLimitExceeded

    from ser.ml import segments
    from worker.predict import run_predict

    def too_slow(*_args, **_kwargs):
        raise SoftTimeLimitExceeded()

    ctx, sent, send = runner
    unit = _recording([("calm", 4.0), (None, 1.0), ("tense", 3.0), (None, 1.0)], seed=36)
    name = f"long/slow{seg_pass}.flac"
    audiogen.write_repeated(data_dir / name, unit, 3)  # 27 s: 3 ranges of 10 s
    params = {"filename": name, "segments": True}
    job_id = ctx.jobs.create("predict", params, total=1)["id"]
    assert run_predict(ctx, job_id, params, send=send).get("chunks") is True
    if seg_pass == 2:
        _drain(ctx, sent, send, job_id, 1)
    monkeypatch.setattr(segments, "energies" if seg_pass == 1 else "featurize", too_slow)
    _drain(ctx, sent, send, job_id, seg_pass)
    rec = ctx.jobs.get(job_id)
    assert rec["status"] == "FAILED", rec
    assert (rec["error"]["CODE"], rec["http_status"]) == ("JOB_TIMEOUT", 504), rec


def test_a_resampled_recording_spread_over_chunks_gives_one_pass_segments(
    runner, data_dir, adapting
):
    """At 44.1 kHz every range is decoded from a little before it, through the resampler: the
    windows are those of one pass, the classes too, the probabilities within a hair."""
    from ser import audio
    from ser.ml import segments
    from worker.predict import run_predict

    ctx, sent, send = runner
    unit = _recording([(None, 1.7), ("excited", 5.0), (None, 1.2), ("calm", 3.5)], seed=41)
    path = audiogen.write_repeated(
        data_dir / "long" / "cd.wav", audio.resample(unit, 16000, 44100), 3, sr=44100
    )  # 34.2 s
    params = {"filename": "long/cd.wav", "segments": True}
    job_id = ctx.jobs.create("predict", params, total=1)["id"]
    assert run_predict(ctx, job_id, params, send=send).get("chunks") is True
    _drain(ctx, sent, send, job_id, 1)
    _drain(ctx, sent, send, job_id, 2)
    body = ctx.jobs.get(job_id)
    assert body["status"] == "SUCCEEDED", body
    _same_segments(body["result"], segments.segment(adapting, path), abs_probability=2e-3)


def test_a_folder_with_segments_scores_a_row_per_segment_and_one_per_failed_file(
    runner, data_dir, adapting, service_env
):
    from ser.ml import segments
    from tests.harness import make_client
    from worker.score import run_score, run_score_chunk

    ctx, sent, send = runner
    folder = data_dir / "segfold"
    unit = _recording([("tense", 4.0), (None, 1.0), ("calm", 4.0), (None, 1.5)], seed=61)
    long = audiogen.write_repeated(folder / "a_long.wav", unit, 3)  # 31.5 s: split
    parts = [(None, 0.5), ("calm", 4.0), (None, 1.0), ("tense", 3.5), (None, 0.5)]
    short = audiogen.write(folder / "b_short.flac", _recording(parts, seed=62))  # 9.5 s: inline
    (folder / "c_text.wav").write_text("not audio\n")
    audiogen.write(folder / "d_silent.wav", audiogen.tone(seconds=2.0, amp=0.0))
    audiogen.write(folder / "e_hum.wav", audiogen.tone(50.0, 3.0, amp=0.05))
    params = {
        "folder": "segfold",
        "recursive": True,
        "patterns": ["*.wav", "*.flac"],
        "model_version": ctx.registry.current(),
        "segments": True,
        "chunk_size": 2,
    }
    job_id = ctx.jobs.create("score", params)["id"]
    run_score(ctx, job_id, params, send)
    chunks = [args[1] for _, args in sent]
    del sent[:]
    assert len(chunks) == 3 and all(m["segments"] for m in chunks)
    for msg in chunks:
        run_score_chunk(ctx, job_id, msg, send=send)
    assert ctx.results.count(job_id) == 4  # the long file is on its way, in chunks
    _drain(ctx, sent, send, job_id, 1)
    _drain(ctx, sent, send, job_id, 2)
    rec = ctx.jobs.get(job_id)
    assert rec["status"] == "SUCCEEDED", rec
    res = rec["result"]
    rows = [json.loads(r) for r in ctx.results.iter_raw(job_id, 5)]
    by_file: dict[str, list] = {}
    for row in rows:
        by_file.setdefault(row["FILENAME"], []).append(row)
    assert list(by_file) == [
        f"segfold/{n}"
        for n in ("a_long.wav", "b_short.flac", "c_text.wav", "d_silent.wav", "e_hum.wav")
    ]
    for name, source in (("a_long.wav", long), ("b_short.flac", short)):
        want = segments.segment(adapting, source)
        got = by_file[f"segfold/{name}"]
        assert [(r["START"], r["END"], r["EMOTION"]) for r in got] == [
            (s["START"], s["END"], s["EMOTION"]) for s in want["SEGMENTS"]
        ]
        assert all(r["ADAPTED"] is want["ADAPTED"] for r in got)
        assert set(got[0]["PROBABILITIES"]) == set(adapting.classes)
    assert [r["ERROR"]["CODE"] for r in by_file["segfold/c_text.wav"]] == ["AUDIO_UNREADABLE"]
    assert [r["ERROR"]["CODE"] for r in by_file["segfold/d_silent.wav"]] == ["AUDIO_SILENT"]
    assert by_file["segfold/e_hum.wav"] == [
        {"FILENAME": "segfold/e_hum.wav", "EMOTION": None, "PROBABILITY": None}
    ]
    assert (res["COUNT"], res["SUCCEEDED"], res["FAILED"]) == (5, 3, 2)
    speech = [r for r in rows if r.get("EMOTION")]
    assert res["SEGMENTS"] == len(speech)
    assert res["SPEECH_SECONDS"] == pytest.approx(
        sum(r["END"] - r["START"] for r in speech), abs=0.05
    )
    summary = res["SUMMARY"]
    assert sum(v["SECONDS"] for v in summary.values()) == pytest.approx(
        res["SPEECH_SECONDS"], abs=0.05
    )
    assert sum(v["SEGMENTS"] for v in summary.values()) == len(speech)
    assert {"calm", "tense"} <= {c for c, v in summary.items() if v["SECONDS"] > 0}
    # the API's exports: JSONL as the rows, CSV with START, END and a probability per class
    client = make_client(service_env, SER_KEY_PREFIX=ctx.settings.key_prefix, SER_API_KEY="")
    jsonl = client.get(f"/jobs/{job_id}/results?format=jsonl").get_data(as_text=True)
    assert [json.loads(line) for line in jsonl.splitlines()] == rows
    table = list(
        csv.reader(
            io.StringIO(client.get(f"/jobs/{job_id}/results?format=csv").get_data(as_text=True))
        )
    )
    assert table[0][:3] == ["FILENAME", "START", "END"]
    assert table[0][-3:] == [f"P_{c}" for c in res["CLASSES"]] and len(table) == len(rows) + 1
    # pages count rows (segment rows), not files: following NEXT gives every row once
    page = client.get(f"/jobs/{job_id}/results?offset=0&limit=1").get_json()
    assert page["ROWS"] == rows[:1] and page["COUNT"] == 5 and page["ROW_COUNT"] == len(rows)
    paged, url = [], f"/jobs/{job_id}/results?limit=4"
    while url:
        page = client.get(url).get_json()
        assert len(page["ROWS"]) <= 4
        paged, url = paged + page["ROWS"], page["NEXT"]
    assert paged == rows
    assert client.get(f"/jobs/{job_id}").status_code == 200  # the result fits its schema


# -- through the service and `ser score --segments` ------------------------------------------
def test_score_with_segments_through_the_api_and_cli(api, trained, data_dir, client_env, tmp_path):
    folder = data_dir / "segscore"
    audiogen.write(folder / "one.flac", _recording(PARTS, seed=71))
    audiogen.write(folder / "two.wav", _recording(list(reversed(PARTS)), seed=72))
    resp = api.post("/score", json={"folder": "segscore", "segments": True})
    assert resp.status_code == 202, resp.text
    body = api.wait_job(resp.json()["JOB_ID"], timeout=60)
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    assert body["COUNT"] == 2 and body["FAILED"] == 0 and body["SEGMENTS"] >= 4
    assert body["SPEECH_SECONDS"] == pytest.approx(18.0, abs=0.8)
    rows = [
        json.loads(x)
        for x in api.get(f"/jobs/{body['JOB_ID']}/results?format=jsonl").text.splitlines()
    ]
    assert len(rows) == body["SEGMENTS"] and {r["FILENAME"] for r in rows} == {
        "segscore/one.flac",
        "segscore/two.wav",
    }
    out = tmp_path / "seg.csv"
    done = ser(client_env, "score", "segscore", "--segments", "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    table = list(csv.reader(out.open()))
    assert table[0][:3] == ["FILENAME", "START", "END"] and len(table) == len(rows) + 1
    for bad, code in (
        ({"speakers": "folder"}, "INVALID_SPEAKERS"),
        ({"evaluate": True}, "MALFORMED_BODY"),
        ({"segments": "yes"}, "MALFORMED_BODY"),
    ):
        resp = api.post("/score", json={"folder": "segscore", "segments": True, **bad})
        assert resp.status_code == 400 and resp.json()["ERROR"]["CODE"] == code, resp.text
