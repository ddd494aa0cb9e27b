"""The `ser` service commands as processes: clients against the API, and the embedded stack."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
import requests

from tests.service.conftest import ROOT, free_port, ser, stop, wait_until

pytestmark = [pytest.mark.service, pytest.mark.xdist_group("service")]


def test_cli_train_predict_jobs_models(client_env, data_dir, trained):
    out = ser(client_env, "train", "ds", "--wait", "--json")
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["JOB_STATUS"] == "SUCCEEDED" and job["STATUS"] == "FITTED"

    clips = [str(data_dir / "clips" / f"{c}.wav") for c in ("calm", "excited")]
    out = ser(client_env, "predict", *clips, "--wait", "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["EMOTION"] for r in rows] == ["calm", "excited"]

    out = ser(client_env, "predict", clips[0], str(data_dir / "clips" / "silent.wav"), "--wait")
    assert out.returncode == 1, "a failed prediction must exit non-zero"
    assert "calm.wav\tcalm" in out.stdout and "AUDIO_SILENT" in out.stdout

    out = ser(client_env, "jobs", rows[0]["JOB_ID"], "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["JOB_ID"] == rows[0]["JOB_ID"]
    out = ser(client_env, "jobs", "--kind", "predict", "--limit", "3")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 3

    out = ser(client_env, "models", "--json")
    listing = json.loads(out.stdout)
    assert listing["CURRENT"] == job["MODEL_VERSION"]


def test_cli_reports_unreachable_api_and_auth(client_env):
    down = dict(client_env, SER_API_URL=f"http://127.0.0.1:{free_port()}")
    out = ser(down, "models")
    assert out.returncode != 0 and "API_UNAVAILABLE" in out.stderr
    bad = dict(client_env, SER_API_KEY="bad-key-7f3a")
    out = ser(bad, "jobs")
    assert out.returncode != 0 and "UNAUTHORIZED" in out.stderr and "bad-key-7f3a" not in out.stderr


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ser_up_starts_and_stops_the_embedded_stack(service_env, data_dir, tmp_path):
    env = {k: v for k, v in service_env.items() if k not in ("SER_REDIS_URL", "SER_SECRET_KEY")}
    env.pop("SER_API_KEY", None)
    state = tmp_path / "state"
    env["SER_STATE_DIR"] = str(state)
    port = free_port()
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "ser.cli", "up", "--port", str(port), "--concurrency", "1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy():
            try:
                return requests.get(base + "/health", timeout=2).status_code == 200
            except (requests.ConnectionError, requests.Timeout):  # a busy machine answers late
                return False

        try:
            wait_until(healthy, 90, "ser up", proc)
        except Exception:
            log.flush()
            sys.stderr.write((tmp_path / "up.log").read_text()[-4000:])
            raise
        text = (tmp_path / "up.log").read_text()
        assert f"http://127.0.0.1:{port}" in text
        key = state / "secret_key"
        assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
        assert (state / "redis").is_dir()
        redis_port = int(text.split("redis-server on 127.0.0.1:")[1].split()[0])
        # train and predict through the embedded stack
        job = requests.post(base + "/train", json={"dataset": "ds", "features": "seed"}).json()
        done = requests.get(f"{base}/jobs/{job['JOB_ID']}?wait=30").json()
        assert done["JOB_STATUS"] == "SUCCEEDED", done
        with open(data_dir / "clips" / "tense.wav", "rb") as fh:
            resp = requests.post(base + "/predict?wait=30", files={"file": ("t.wav", fh)})
        assert resp.status_code == 200 and resp.json()["EMOTION"] == "tense", resp.text
        assert any((state / "redis").glob("appendonly*")), "AOF must be on"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            stop(proc)
            raise
        log.close()
    assert code == 0
    deadline = time.monotonic() + 10
    while _port_open(port) or _port_open(redis_port):
        assert time.monotonic() < deadline, "ser up left a server running"
        time.sleep(0.2)
    assert "ser: stopped" in (tmp_path / "up.log").read_text()
    assert os.path.exists(state / "redis" / "redis.conf")
