"""Bulk scoring evaluated against the folder's labels (POST /score with "evaluate": true):
EVALUATION in the finished job, its confusion PNG, labels the model does not know, labels
gone by the end of the job.

The worker functions run against the real Redis of the session (run_score, run_score_chunk,
no broker) with a model trained in-process; then end to end through the API (the ``evaluate``
field, the submission check, GET /jobs/<id>/confusion.png) and the ``ser`` command.
"""

from __future__ import annotations

import json

import pytest

from ser.service import jobs as J
from tests import audiogen
from tests.stack.conftest import isolated_runner

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def eval_mix(data_dir) -> dict:
    """eval_mix/: labels.csv naming 6 clips of the model's classes, 2 with a label it does
    not know (bored), a corrupt file with a label; one clip without a label."""
    root = data_dir / "eval_mix"
    table = []
    for i, label in enumerate(("calm", "excited", "tense") * 2):
        rel = f"clips/{label}_{i}.wav"
        audiogen.write(root / rel, audiogen.voice_like(label, 1.0, seed=500 + i))
        table.append(f"{rel},{label}")
    for i in range(2):
        audiogen.write(root / f"b{i}.wav", audiogen.voice_like("calm", 1.0, seed=600 + i))
        table.append(f"./b{i}.wav,bored")
    (root / "broken.wav").write_text("not audio\n")
    table.append("broken.wav,calm")
    audiogen.write(root / "nolabel.wav", audiogen.voice_like("tense", 1.0, seed=700))
    (root / "labels.csv").write_text("path,label\n" + "\n".join(table) + "\n")
    return {"root": root, "folder": "eval_mix", "count": 10}


@pytest.fixture(scope="module")
def model_bytes(data_dir) -> bytes:
    """A model of classes calm, excited, tense trained in-process on ds/."""
    from ser.ml import training

    return training.train(data_dir / "ds", adapt="off", repeats=1).to_bytes()


@pytest.fixture
def runner(settings, redis_client, model_bytes):
    """A Context on a fresh key prefix of the shared Redis with the model current; messages
    go to ``sent`` (no worker sees them)."""
    with isolated_runner(settings, redis_client, model_bytes, "eval") as runner:
        yield runner


def _start(ctx, sent, send, folder: str, evaluate: bool = True) -> tuple[str, list]:
    from worker.score import run_score

    params = {
        "folder": folder,
        "recursive": True,
        "patterns": ["*.wav", "*.flac"],
        "model_version": ctx.registry.current(),
        "chunk_size": 4,
    }
    if evaluate:
        params["evaluate"] = True
    rec = ctx.jobs.create("score", params)
    del sent[:]
    out = run_score(ctx, rec["id"], params, send)
    assert out.get("chunks"), out
    return rec["id"], [args[1] for _, args in sent]


def _finish(ctx, job_id: str, msgs: list) -> dict:
    from worker.score import run_score_chunk

    for msg in msgs:
        run_score_chunk(ctx, job_id, msg)
    rec = ctx.jobs.get(job_id)
    assert rec["status"] == J.SUCCEEDED, rec
    return rec["result"]


def test_evaluation_counts_every_row_once_and_stores_the_png(runner, eval_mix):
    from ser.ml.scoring import evaluate_rows

    ctx, sent, send = runner
    job_id, msgs = _start(ctx, sent, send, eval_mix["folder"])
    result = _finish(ctx, job_id, msgs)
    ev = result["EVALUATION"]
    assert result["COUNT"] == eval_mix["count"] and result["FAILED"] == 1
    assert ev["LABELS"] == "labels_csv" and ev["CLASSES"] == ["calm", "excited", "tense"]
    assert (ev["EVALUATED"], ev["FAILED"], ev["UNLABELLED"]) == (6, 1, 1)
    assert ev["UNKNOWN_LABELS"] == {"bored": 2}
    assert sum(map(sum, ev["CONFUSION_MATRIX"])) == 6
    assert [ev["PER_CLASS"][c]["SUPPORT"] for c in ev["CLASSES"]] == [2, 2, 2]
    assert 0.0 <= ev["F1_MACRO"] <= 1.0 and 0.0 <= ev["UAR"] <= 1.0
    # the same figures as the library's over the stored rows and the labels keyed by FILENAME
    rows = ctx.results.all_rows(job_id, result["COUNT"])
    labels = {
        f"eval_mix/{line.split(',')[0].removeprefix('./')}": line.split(",")[1]
        for line in (eval_mix["root"] / "labels.csv").read_text().splitlines()[1:]
    }
    assert {k: v for k, v in ev.items() if k not in ("LABELS", "CONFUSION_PNG")} == (
        evaluate_rows(rows, labels, ev["CLASSES"])
    )
    assert ev["CONFUSION_PNG"] == f"/jobs/{job_id}/confusion.png"
    assert ctx.results.png(job_id).startswith(PNG_MAGIC)
    assert 0 < ctx.redis.ttl(ctx.results.png_key(job_id)) <= ctx.settings.job_ttl


def test_a_labels_csv_dataset_scores_as_trained(runner):
    """ds/ is the training set (labels.csv paths under audio/, FLAC): every row matched."""
    ctx, sent, send = runner
    job_id, msgs = _start(ctx, sent, send, "ds")
    ev = _finish(ctx, job_id, msgs)["EVALUATION"]
    assert (ev["EVALUATED"], ev["UNLABELLED"], ev["UNKNOWN_LABELS"]) == (24, 0, {})
    assert ev["ACCURACY"] > 0.8


def test_scoring_the_training_data_is_flagged(runner, model_bytes, settings, eval_mix):
    """A model whose metadata names its training dataset: scoring that folder (or one that
    holds it, or lies in it) flags TRAINING_DATA and counts the evaluated files trained on."""
    ctx, sent, send = runner
    key = settings.require_secret_key()
    ctx.registry.publish(model_bytes, {"metrics": {}, "dataset": "ds"}, key)
    job_id, msgs = _start(ctx, sent, send, "ds")
    ev = _finish(ctx, job_id, msgs)["EVALUATION"]
    assert (ev["TRAINING_DATA"], ev["TRAINING_DATASET"]) == (True, "ds"), ev
    assert ev["TRAINING_OVERLAP"] == ev["EVALUATED"] == 24
    # another folder: not flagged, no overlap to count
    job_id, msgs = _start(ctx, sent, send, eval_mix["folder"])
    ev = _finish(ctx, job_id, msgs)["EVALUATION"]
    assert (ev["TRAINING_DATA"], ev["TRAINING_DATASET"]) == (False, "ds"), ev
    assert "TRAINING_OVERLAP" not in ev
    # trained on a folder inside the scored one (that no longer loads as a dataset: every
    # file under it counts)
    ctx.registry.publish(model_bytes, {"metrics": {}, "dataset": "eval_mix/clips"}, key)
    job_id, msgs = _start(ctx, sent, send, eval_mix["folder"])
    ev = _finish(ctx, job_id, msgs)["EVALUATION"]
    assert ev["TRAINING_DATA"] is True and ev["TRAINING_OVERLAP"] == ev["EVALUATED"] == 6, ev


def test_a_failed_training_data_comparison_leaves_the_evaluation_standing(
    runner, model_bytes, settings, monkeypatch
):
    """Comparing with the model's training data is extra: whatever it raises (a bug, the soft
    time limit while loading the training set), the job finishes with its figures, unflagged,
    instead of failing the last chunk and staying RUNNING."""
    from worker import score as score_work

    def broken(*_args, **_kwargs):
        raise RuntimeError("symlink loop")

    ctx, sent, send = runner
    ctx.registry.publish(
        model_bytes, {"metrics": {}, "dataset": "ds"}, settings.require_secret_key()
    )
    monkeypatch.setattr(score_work, "training_data", broken)
    job_id, msgs = _start(ctx, sent, send, "ds")
    body = _finish(ctx, job_id, msgs)
    ev = body["EVALUATION"]
    assert ev["EVALUATED"] == 24 and "ERROR" not in ev, ev
    assert "TRAINING_DATA" not in ev and "TRAINING_OVERLAP" not in ev, ev


def test_labels_the_model_does_not_know_are_counted_not_crashed_on(runner):
    """ds_emodb/: EMO-DB names (anger, happiness, neutral), none of the model's classes."""
    ctx, sent, send = runner
    job_id, msgs = _start(ctx, sent, send, "ds_emodb")
    ev = _finish(ctx, job_id, msgs)["EVALUATION"]
    assert ev["LABELS"] == "emodb" and ev["EVALUATED"] == 0 and ev["F1_MACRO"] is None
    assert ev["UNKNOWN_LABELS"] == {"anger": 8, "happiness": 8, "neutral": 8}
    assert "CONFUSION_PNG" not in ev and ctx.results.png(job_id) is None


def test_labels_gone_by_the_end_make_an_error_entry(runner, data_dir):
    ctx, sent, send = runner
    folder = data_dir / "eval_vanish"
    audiogen.write(folder / "a.wav", audiogen.voice_like("calm", 1.0, seed=5))
    (folder / "labels.csv").write_text("path,label\na.wav,calm\n")
    job_id, msgs = _start(ctx, sent, send, "eval_vanish")
    (folder / "labels.csv").unlink()
    result = _finish(ctx, job_id, msgs)
    assert result["COUNT"] == 1 and result["SUCCEEDED"] == 1
    assert result["EVALUATION"]["ERROR"]["CODE"] == "DATASET_NO_LABELS", result
    assert ctx.results.png(job_id) is None


def test_without_evaluate_the_result_is_as_before(runner, eval_mix):
    ctx, sent, send = runner
    job_id, msgs = _start(ctx, sent, send, eval_mix["folder"], evaluate=False)
    result = _finish(ctx, job_id, msgs)
    assert "EVALUATION" not in result and ctx.results.png(job_id) is None


# -- through the API and the command line (need the API part) -----------------------------------
def test_api_score_evaluate(api, trained, eval_mix):
    resp = api.post("/score", json={"folder": eval_mix["folder"], "evaluate": True})
    assert resp.status_code == 202, resp.text
    body = api.wait_job(resp.json()["JOB_ID"], timeout=120)
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    ev = body["EVALUATION"]
    assert (ev["EVALUATED"], ev["FAILED"], ev["UNLABELLED"]) == (6, 1, 1)
    assert ev["UNKNOWN_LABELS"] == {"bored": 2}
    assert (ev["TRAINING_DATA"], ev["TRAINING_DATASET"]) == (False, trained["DATASET"])
    png = api.get(ev["CONFUSION_PNG"])
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert png.content.startswith(PNG_MAGIC)


def test_api_refuses_evaluate_without_labels_before_queueing(api, trained):
    before = api.get("/jobs?kind=score&limit=1").json()["JOBS"]
    resp = api.post("/score", json={"folder": "clips", "evaluate": True})
    assert resp.status_code == 400 and resp.json()["ERROR"]["CODE"] == "DATASET_NO_LABELS"
    assert api.get("/jobs?kind=score&limit=1").json()["JOBS"] == before  # nothing queued
    bad = api.post("/score", json={"folder": "clips", "evaluate": "yes"})
    assert bad.status_code == 400 and bad.json()["ERROR"]["CODE"] == "MALFORMED_BODY"


def test_api_confusion_png_is_404_without_evaluation(api, trained):
    resp = api.post("/score", json={"folder": "clips"})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["JOB_ID"]
    api.wait_job(job_id)
    png = api.get(f"/jobs/{job_id}/confusion.png")
    assert png.status_code == 404 and "CODE" in png.json()["ERROR"]
    assert api.get("/jobs/nosuchjob/confusion.png").status_code == 404


def test_cli_score_evaluate(client_env, trained, eval_mix):
    from tests.harness import ser

    done = ser(client_env, "score", eval_mix["folder"], "--evaluate", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["JOB_STATUS"] == "SUCCEEDED" and job["EVALUATION"]["EVALUATED"] == 6
    table = ser(client_env, "score", eval_mix["folder"], "--evaluate")
    assert table.returncode == 0, table.stderr
    for text in ("F1-macro", "UAR", "accuracy", "bored", "confusion.png"):
        assert text in table.stdout, table.stdout
    assert "warning" not in table.stdout
    # the very folder the current model was trained on: figures flagged, a warning printed
    own = ser(client_env, "score", trained["DATASET"], "--evaluate", "--json")
    assert own.returncode == 0, own.stderr
    ev = json.loads(own.stdout)["EVALUATION"]
    assert ev["TRAINING_DATA"] is True and ev["TRAINING_OVERLAP"] == ev["EVALUATED"] > 0
    own = ser(client_env, "score", trained["DATASET"], "--evaluate")
    assert own.returncode == 0, own.stderr
    warning = " ".join(own.stdout.split())  # (rich wraps long lines)
    assert f"warning: the model was trained on {trained['DATASET']}" in warning, own.stdout
    refused = ser(client_env, "score", "clips", "--evaluate")
    assert refused.returncode != 0 and "DATASET_NO_LABELS" in refused.stdout + refused.stderr
