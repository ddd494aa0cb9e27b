"""The `ser evaluate` command: JSON contract, table, report files, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import audiogen

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
    proc = run_ser("evaluate", str(csv_dataset), "--features", "seed", "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)  # exactly one JSON document on stdout
    assert KEYS <= set(metrics)
    assert metrics["n_samples"] == 24 and metrics["classes"] == ["calm", "excited", "tense"]
    assert metrics["features"].startswith("seed-")
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
    assert {p.name for p in out.iterdir()} == {"metrics.json", "confusion.png", "pca.png"}
    assert not (tmp_path / "state" / "cache").exists()


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
