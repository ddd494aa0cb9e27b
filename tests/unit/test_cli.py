"""The `ser evaluate` command: JSON contract, table, report files, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests import audiogen
from tests.harness import ROOT

KEYS = {
    "protocol",
    "features",
    "n_samples",
    "classes",
    "f1_macro_mean",
    "f1_macro_std",
    "uar",
    "accuracy",
    "log_loss",
    "ece",
    "confusion_matrix",
    "featurize_seconds",
    "fit_seconds",
    "repeats",
    "chance_f1",
    "speaker_baseline_f1",
    "speaker_confounded",
    "adapt",
    "adapt_chosen",
    "adapt_folds",
}


def run_ser(*args, env_extra=None, tmp_path=None):
    env = dict(os.environ, SER_N_JOBS="1")
    if tmp_path is not None:
        env["SER_STATE_DIR"] = str(tmp_path / "state")
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "ser.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_evaluate_json_is_one_object_with_the_keys(tmp_path, csv_dataset):
    proc = run_ser(
        "evaluate",
        str(csv_dataset),
        "--features",
        "seed",
        "--json",
        "--repeats",
        "2",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # exactly one JSON document on stdout
    # The dataset has speakers: both protocols, one object each.
    assert set(out) == {"protocols"} and set(out["protocols"]) == {"stratified", "speaker"}
    for protocol, metrics in out["protocols"].items():
        assert KEYS <= set(metrics)
        assert metrics["protocol"] == protocol and metrics["adapt"] == "auto"
        assert metrics["n_samples"] == 24 and metrics["classes"] == ["calm", "excited", "tense"]
        assert metrics["features"].startswith("seed-")
    assert out["protocols"]["stratified"]["repeats"] == 2
    assert len(out["protocols"]["stratified"]["f1_macro_folds"]) == 8
    assert out["protocols"]["speaker"]["repeats"] == 1  # leave-one-speaker-out: one answer
    # The cache was filled under SER_STATE_DIR/cache; --no-cache leaves a new dir untouched.
    assert any((tmp_path / "state" / "cache").rglob("*.npy"))


def test_evaluate_table_and_report(tmp_path, csv_dataset):
    out = tmp_path / "report"
    proc = run_ser(
        "evaluate",
        str(csv_dataset),
        "--features",
        "seed",
        "--protocol",
        "speaker",
        "--report-dir",
        str(out),
        "--no-cache",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "F1-macro" in proc.stdout and "speaker" in proc.stdout
    assert "· stratified ·" not in proc.stdout  # --protocol: that one only
    assert {p.name for p in out.iterdir()} == {"metrics.json", "confusion.png", "pca.png"}
    assert not (tmp_path / "state" / "cache").exists()


def test_one_protocol_json_is_flat(tmp_path, csv_dataset):
    proc = run_ser(
        "evaluate",
        str(csv_dataset),
        "--protocol",
        "stratified",
        "--repeats",
        "1",
        "--adapt",
        "off",
        "--json",
        "--no-cache",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert KEYS <= set(metrics) and metrics["protocol"] == "stratified"
    assert metrics["adapt"] == "off" and metrics["adapt_chosen"] == "off"
    assert metrics["repeats"] == 1 and metrics["n_folds"] == 4


def test_confounded_corpus_warns(tmp_path):
    root = audiogen.make_dataset(tmp_path / "d", "labels_csv", n_per_class=8, confounded=True)
    proc = run_ser("evaluate", str(root), "--repeats", "2", "--no-cache", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # rich wraps lines
    assert "Warning" in text and "speaker identification" in text
    assert "--protocol speaker" in text


def test_dataset_error_exit_code_and_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_ser("evaluate", str(tmp_path / "empty"), "--json", tmp_path=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "DATASET_NO_AUDIO" in proc.stderr


def test_class_too_small_for_protocol(tmp_path):
    root = audiogen.make_dataset(tmp_path / "d", "folders", n_per_class=2)
    proc = run_ser("evaluate", str(root), "--features", "seed", tmp_path=tmp_path)
    assert proc.returncode == 2 and "DATASET_CLASS_TOO_SMALL" in proc.stderr


def test_a_closed_pipe_ends_quietly(tmp_path, csv_dataset):
    # `ser ... | head`: the reader is gone before ser writes its table.
    read, write = os.pipe()
    os.close(read)
    env = dict(os.environ, SER_N_JOBS="1", SER_STATE_DIR=str(tmp_path / "state"))
    args = ["evaluate", str(csv_dataset), "--protocol", "stratified", "--repeats", "1", "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "ser.cli", *args],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=300,
    )
    os.close(write)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_make_up_passes_args_to_ser_up():
    # `make -n` prints the recipe without running it (nothing is installed or started)
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # run from `make test` too: the parent make's MAKEFLAGS/MAKELEVEL would make it print
    # "make[1]: Entering directory" lines around the recipe
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "up", "ARGS=--port 8000 --concurrency 2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == ".venv/bin/ser up --port 8000 --concurrency 2"
