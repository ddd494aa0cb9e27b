"""The client commands of `ser` (ser/cli/client.py) without a service: settings and an
unreachable API as processes, and what the commands print for given API answers in process,
through a requests transport adapter that answers from a table (no server, no socket)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import requests
from requests.adapters import BaseAdapter

from ser.cli import main
from tests.harness import ROOT

API = "http://api.test:5077"


def run_ser(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`ser` as a process with the environment plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "ser.cli", *args],
        cwd=ROOT,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket closes


class FakeApi(BaseAdapter):
    """Answers ``(method, path)`` from ``routes`` with ``(status, body)``; records requests."""

    def __init__(self, routes: dict) -> None:
        super().__init__()
        self.routes = routes
        self.sent: list[tuple[str, str]] = []

    def send(self, request, **kwargs):
        path = request.path_url.split("?")[0]
        self.sent.append((request.method, request.path_url))
        status, body = self.routes[(request.method, path)]
        resp = requests.Response()
        resp.status_code = status
        resp._content = json.dumps(body).encode()
        resp.headers["Content-Type"] = "application/json"
        resp.url = request.url
        resp.request = request
        return resp

    def close(self) -> None:
        pass


@pytest.fixture
def fake_api(monkeypatch):
    """``fake_api(routes)``: the client commands' requests go to a FakeApi at API."""
    monkeypatch.setenv("SER_API_URL", API)
    monkeypatch.delenv("SER_API_KEY", raising=False)

    def install(routes: dict) -> FakeApi:
        adapter = FakeApi(routes)
        monkeypatch.setattr(requests.Session, "get_adapter", lambda self, url: adapter)
        return adapter

    return install


def test_an_api_url_without_scheme_is_an_invalid_setting():
    out = run_ser("models", SER_API_URL="localhost:5077")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert "INVALID_SETTING" in out.stderr and "SER_API_URL='localhost:5077'" in out.stderr
    assert "http://localhost:5077" in out.stderr  # what to write instead


def test_an_unreachable_api_says_how_to_point_the_client_elsewhere():
    url = f"http://127.0.0.1:{_closed_port()}"
    out = run_ser("models", SER_API_URL=url)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"API_UNAVAILABLE: cannot reach the API at {url}" in out.stderr
    assert "SER_API_URL" in out.stderr and "ser up" in out.stderr


UNAUTHORIZED = (401, {"ERROR": {"CODE": "UNAUTHORIZED", "MESSAGE": "missing or wrong API key"}})


def test_a_401_names_ser_api_key(fake_api, capsys, monkeypatch):
    fake_api({("GET", "/jobs"): UNAUTHORIZED})
    assert main(["jobs"]) == 1
    err = capsys.readouterr().err
    assert "UNAUTHORIZED" in err and "set SER_API_KEY" in err
    monkeypatch.setenv("SER_API_KEY", "wrong-key-5b1e")
    assert main(["jobs"]) == 1
    err = capsys.readouterr().err
    assert "SER_API_KEY is sent" in err and "wrong-key-5b1e" not in err


JOB = "0123456789abcdef0123456789abcdef"


def _job(status: str, **extra) -> dict:
    return {"JOB_ID": JOB, "KIND": "predict", "JOB_STATUS": status, **extra}


@pytest.mark.parametrize(
    ("status", "code"), [("SUCCEEDED", 0), ("RUNNING", 0), ("FAILED", 1), ("CANCELLED", 1)]
)
def test_ser_jobs_id_exits_non_zero_for_a_failed_job(fake_api, capsys, status, code):
    failed = {"ERROR": {"CODE": "AUDIO_SILENT", "MESSAGE": "silent"}} if status == "FAILED" else {}
    fake_api({("GET", f"/jobs/{JOB}"): (200, _job(status, **failed))})
    assert main(["jobs", JOB]) == code
    assert f"JOB_STATUS: {status}" in capsys.readouterr().out


def test_a_cancellation_that_worked_exits_zero(fake_api, capsys):
    fake_api({("DELETE", f"/jobs/{JOB}"): (200, _job("CANCELLED"))})
    assert main(["jobs", JOB, "--cancel"]) == 0
    assert "JOB_STATUS: CANCELLED" in capsys.readouterr().out


def test_key_value_output_rounds_floats_and_writes_json_literals(fake_api, capsys):
    job = _job(
        "SUCCEEDED",
        KIND="train",
        F1_MACRO_MEAN=0.9188709252357188,
        SPEAKER_CONFOUNDED=False,
        ACTIVATED=True,
        SPEAKER_F1_MACRO_MEAN=None,
        COUNT=3,
        F1_FOLDS=[0.91234567, 1.0],
        SUMMARY={"calm": {"SECONDS": 12.345678, "SHARE": 0.33333333}},
    )
    fake_api({("GET", f"/jobs/{JOB}"): (200, job)})
    assert main(["jobs", JOB]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line in (
        "F1_MACRO_MEAN: 0.9189",
        "SPEAKER_CONFOUNDED: false",
        "ACTIVATED: true",
        "SPEAKER_F1_MACRO_MEAN: null",
        "COUNT: 3",
        "F1_FOLDS: [0.9123, 1.0]",
        'SUMMARY: {"calm": {"SECONDS": 12.3457, "SHARE": 0.3333}}',
        "JOB_STATUS: SUCCEEDED",
    ):
        assert line in lines, lines
    assert main(["jobs", JOB, "--json"]) == 0  # JSON keeps every digit
    assert json.loads(capsys.readouterr().out)["F1_MACRO_MEAN"] == 0.9188709252357188


def test_an_empty_registry_says_so(fake_api, capsys):
    fake_api({("GET", "/models"): (200, {"CURRENT": None, "MODELS": [], "COUNT": 0})})
    assert main(["models"]) == 0
    assert "no model yet: ser train <dataset>" in capsys.readouterr().out


def _evaluation(f1: float, per_class: dict) -> dict:
    return {
        "F1_MACRO_MEAN": f1,
        "F1_MACRO_STD": 0.0212345,
        "F1_FOLDS": [f1] * 12,
        "N_FOLDS": 4,
        "REPEATS": 3,
        "UAR": 0.91712,
        "ACCURACY": 0.92071,
        "LOG_LOSS": 0.3,
        "ECE": 0.04312,
        "CHANCE_F1": 0.3312,
        "CONFUSION_MATRIX": [[8, 0], [1, 7]],
        "PER_CLASS": {
            c: {"PRECISION": 0.9, "RECALL": 0.9, "F1": v, "SUPPORT": 8}
            for c, v in per_class.items()
        },
        "PER_SPEAKER": {f"s{i}": {"F1": 0.9, "ACCURACY": 0.9, "SUPPORT": 4} for i in range(40)},
        "RELIABILITY": [
            {"LOWER": i / 15, "UPPER": (i + 1) / 15, "COUNT": 1, "CONFIDENCE": 0.5, "ACCURACY": 1}
            for i in range(15)
        ],
    }


MODEL = {
    "MODEL_VERSION": "v2",
    "CURRENT": True,
    "CREATED_AT": "2026-12-01T10:00:00Z",
    "DATASET": "emodb",
    "PROTOCOL": "stratified",
    "FEATURE_SPEC": "default-3",
    "CLASSES": ["anger", "sadness"],
    "F1_MACRO_MEAN": 0.9188709252357188,
    "F1_MACRO_STD": 0.0212345,
    "SPEAKER_F1_MACRO_MEAN": 0.8512,
    "SPEAKER_F1_MACRO_STD": 0.05,
    "ADAPT": "auto",
    "ADAPT_CHOSEN": "speaker",
    "N_SAMPLES": 535,
    "FINGERPRINT": "f" * 16,
    "SIZE_BYTES": 123456,
    "SHA256": "a" * 64,
    "JOB_ID": JOB,
    "METRICS": {"protocols": {"stratified": {"f1_macro_folds": [0.9] * 40}}},
    "EVALUATIONS": {
        "stratified": _evaluation(0.9188709252357188, {"anger": 0.95123, "sadness": 0.8866}),
        "speaker": _evaluation(0.8512, {"anger": 0.9, "sadness": 0.8024}),
    },
    "VERSIONS": {"numpy": "2.3"},
    "CONFUSION_PNG": "/models/v2/confusion.png",
}


def test_a_model_version_is_a_readable_summary_and_json_the_whole_document(fake_api, capsys):
    fake_api({("GET", "/models/v2"): (200, MODEL)})
    assert main(["models", "v2"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "METRICS" not in out and "RELIABILITY" not in out and "PER_SPEAKER" not in out
    assert len(out) < 2000 and max(map(len, lines)) < 100, out
    assert "CURRENT: true" in lines and "DATASET: emodb" in lines
    assert f"CONFUSION_PNG: {API}/models/v2/confusion.png" in lines
    rows = {line.split()[0]: line.split() for line in lines if line.strip()}
    # per protocol: F1 mean±std, folds×repeats, UAR, accuracy, ECE, chance F1
    assert rows["stratified"][1:] == ["0.919±0.021", "4×3", "0.917", "0.921", "0.043", "0.331"]
    assert rows["speaker"][1] == "0.851±0.021"
    # F1 per class, a column per protocol
    assert rows["anger"][1:] == ["0.951", "0.900"] and rows["sadness"][1:] == ["0.887", "0.802"]
    assert "ser models v2 --json" in out
    assert main(["models", "v2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == MODEL


def test_a_version_without_evaluations_keeps_its_f1_fields(fake_api, capsys):
    old = {k: v for k, v in MODEL.items() if k != "EVALUATIONS"} | {"EVALUATIONS": None}
    fake_api({("GET", "/models/v1"): (200, old | {"MODEL_VERSION": "v1"})})
    assert main(["models", "v1"]) == 0
    out = capsys.readouterr().out
    assert "F1_MACRO_MEAN: 0.9189" in out and "F1 per class" not in out


EVALUATION = {
    "LABELS": "labels_csv",
    "EVALUATED": 16,
    "F1_MACRO": 0.8751,
    "UAR": 0.875,
    "ACCURACY": 0.875,
    "CLASSES": ["anger", "sadness"],
    "PER_CLASS": {
        c: {"PRECISION": 0.875, "RECALL": 0.875, "F1": 0.875, "SUPPORT": 8}
        for c in ("anger", "sadness")
    },
    "CONFUSION_MATRIX": [[7, 1], [1, 7]],
    "UNKNOWN_LABELS": {},
    "UNLABELLED": 0,
    "FAILED": 0,
    "CONFUSION_PNG": f"/jobs/{JOB}/confusion.png",
}


def test_score_evaluate_keeps_the_confusion_png_url_on_one_line(fake_api, capsys):
    done = _job("SUCCEEDED", KIND="score", FOLDER="mycorpus", EVALUATION=EVALUATION)
    fake_api(
        {
            ("POST", "/score"): (202, _job("QUEUED", KIND="score")),
            ("GET", f"/jobs/{JOB}"): (200, done),
        }
    )
    assert main(["score", "mycorpus", "--evaluate"]) == 0  # stdout is not a terminal here
    url = f"{API}/jobs/{JOB}/confusion.png"
    assert len(f"confusion matrix PNG: {url}") > 80  # longer than the width off a terminal
    assert f"confusion matrix PNG: {url}" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("flags", "why"),
    [(["--evaluate"], "one label per file"), (["--speakers", "folder"], "its own speaker")],
)
def test_score_segments_refuses_what_does_not_go_with_it_before_sending(
    fake_api, capsys, flags, why
):
    api = fake_api({})  # any request would fail the test (no route)
    with pytest.raises(SystemExit) as exit_:
        main(["score", "calls", "--segments", *flags])
    assert exit_.value.code == 2 and api.sent == []
    err = capsys.readouterr().err
    assert "usage: ser score" in err and f"--segments and {flags[0]}" in err and why in err


def test_predict_segments_labels_the_header_figures(fake_api, capsys, tmp_path):
    clip = tmp_path / "long_talk.wav"
    clip.write_bytes(b"RIFF")  # the fake API does not read it
    segments = [
        {"START": 0.5, "END": 3.1, "EMOTION": "anger", "PROBABILITY": 0.61, "PROBABILITIES": {}},
        {"START": 3.1, "END": 4.0, "EMOTION": "sadness", "PROBABILITY": 0.4, "PROBABILITIES": {}},
    ]
    done = _job(
        "SUCCEEDED",
        FILENAME="long_talk.wav",
        EMOTION="anger",
        PROBABILITY=0.2531,
        DURATION=60.0,
        SPEECH_SECONDS=3.5,
        ADAPTED=False,
        SEGMENTS=segments,
    )
    fake_api({("POST", "/predict"): (200, done)})
    assert main(["predict", "--segments", str(clip)]) == 0
    head, *rows = capsys.readouterr().out.splitlines()
    assert head.split("\t") == [
        "long_talk.wav",
        "dominant emotion (by speech time): anger",
        "its mean probability (weighted by duration): 0.253",
        "speech: 3.50 s of 60.00 s",
    ]
    assert rows == ["  0.50-3.10 s\tanger\t0.610", "  3.10-4.00 s\tsadness\t0.400"]
