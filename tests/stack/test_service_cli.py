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
from pathlib import Path

import pytest
import requests

from tests.harness import ROOT, EmbeddedStack, answers_ok, free_port, ser, wait_until


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
    out = ser(client_env, "predict", str(data_dir / "clips" / "silent.wav"), "--wait", "--json")
    failed = json.loads(out.stdout)
    assert out.returncode == 1 and failed["JOB_STATUS"] == "FAILED", out.stdout
    out = ser(client_env, "jobs", failed["JOB_ID"])  # shown, not waited for: still non-zero
    assert out.returncode == 1 and "JOB_STATUS: FAILED" in out.stdout, out.stdout + out.stderr
    out = ser(client_env, "jobs", "--kind", "predict", "--limit", "3")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 3

    out = ser(client_env, "models", "--json")
    listing = json.loads(out.stdout)
    assert listing["CURRENT"] == job["MODEL_VERSION"]
    # one version: a summary of the real document (the whole of it with --json)
    out = ser(client_env, "models", job["MODEL_VERSION"])
    assert out.returncode == 0, out.stderr
    assert "METRICS" not in out.stdout and "F1 per class" in out.stdout, out.stdout
    assert any(line.startswith("stratified ") for line in out.stdout.splitlines()), out.stdout
    assert f"MODEL_VERSION: {job['MODEL_VERSION']}" in out.stdout
    out = ser(client_env, "models", job["MODEL_VERSION"], "--json")
    assert "EVALUATIONS" in json.loads(out.stdout)


def test_cli_reports_unreachable_api_and_auth(client_env):
    down = dict(client_env, SER_API_URL=f"http://127.0.0.1:{free_port()}")
    out = ser(down, "models")
    assert out.returncode != 0 and "API_UNAVAILABLE" in out.stderr and "SER_API_URL" in out.stderr
    bad = dict(client_env, SER_API_KEY="bad-key-7f3a")
    out = ser(bad, "jobs")
    assert out.returncode != 0 and "UNAUTHORIZED" in out.stderr and "bad-key-7f3a" not in out.stderr
    assert "SER_API_KEY" in out.stderr


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _up_env(service_env: dict, tmp: Path) -> dict:
    """``service_env`` for a `ser up` of its own: its own state folder, embedded Redis, a secret
    key of its own and no API key."""
    env = {k: v for k, v in service_env.items() if k not in ("SER_REDIS_URL", "SER_SECRET_KEY")}
    env.pop("SER_API_KEY", None)
    env["SER_STATE_DIR"] = str(tmp / "state")
    return env


def test_ser_up_starts_and_stops_the_embedded_stack(service_env, data_dir, tmp_path):
    up = EmbeddedStack(_up_env(service_env, tmp_path), tmp_path).start(timeout=90)
    state, port, base = up.state, up.port, up.base
    try:
        # ser up prints its lines after /health turns green: read them once it says ready
        # ("ready" only once /ready says so: every queue has a warm process)
        wait_until(lambda: "ser: ready" in up.log.read_text(), 60, "ser up to say ready")
        text = up.log.read_text()
        assert f"http://127.0.0.1:{port}" in text
        key = state / "secret_key"
        assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
        assert (state / "redis").is_dir()
        redis_port = int(text.split("redis-server on 127.0.0.1:")[1].split()[0])
        assert redis_port == up.redis_port
        assert requests.get(base + "/ready", timeout=10).status_code == 200
        # as root (a container's default), one line of its own on Celery's SecurityWarning
        assert ("ser: running as root" in up.log.read_text()) == (os.geteuid() == 0)
        assert up.log.read_text().index("API listening") < up.log.read_text().index("ser: ready")
        # train and predict through the embedded stack
        job = requests.post(base + "/train", json={"dataset": "ds", "features": "seed"}).json()
        done = requests.get(f"{base}/jobs/{job['JOB_ID']}?wait=30").json()
        assert done["JOB_STATUS"] == "SUCCEEDED", done
        with open(data_dir / "clips" / "tense.wav", "rb") as fh:
            resp = requests.post(base + "/predict?wait=30", files={"file": ("t.wav", fh)})
        assert resp.status_code == 200 and resp.json()["EMOTION"] == "tense", resp.text
        assert any((state / "redis").glob("appendonly*")), "AOF must be on"
        # The parts log under the state folder: one line per job transition, in the worker
        # that made it; the API's access log; no API key or upload in any of them.
        logs = state / "logs"

        def logged(name: str, *words: str) -> bool:
            text = (logs / name).read_text(errors="replace") if (logs / name).exists() else ""
            return all(w in text for w in words)

        train_id, predict_id = job["JOB_ID"], resp.json()["JOB_ID"]
        wait_until(lambda: logged("worker-train.log", train_id, "SUCCEEDED"), 30, "train log")
        wait_until(lambda: logged("worker-predict.log", predict_id, "SUCCEEDED"), 30, "log")
        assert logged("worker-train.log", train_id, "RUNNING")
        wait_until(lambda: logged("api.log", "POST /predict"), 30, "the API's access log")
        every = "".join(f.read_text(errors="replace") for f in logs.glob("*.log"))
        assert (state / "secret_key").read_text().strip() not in every
    finally:
        code = up.stop()  # SIGTERM: `ser up` stops its parts and exits 0
    assert code == 0, up.tail()
    deadline = time.monotonic() + 10
    while _port_open(port) or _port_open(redis_port):
        assert time.monotonic() < deadline, "ser up left a server running"
        time.sleep(0.2)
    assert "ser: stopped" in up.log.read_text()
    assert os.path.exists(state / "redis" / "redis.conf")


def _redis_servers(state) -> list[int]:
    """Pids of the redis-server processes working in ``state`` (redis chdirs to its --dir;
    it rewrites its command line, so that cannot tell)."""
    import psutil

    found = []
    for p in psutil.process_iter(["name"]):
        if "redis-server" not in (p.info["name"] or ""):
            continue
        try:
            if Path(p.cwd()).is_relative_to(state):
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def _up(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """A second `ser up`, expected to refuse at once; if it runs instead, stop it by SIGTERM
    (so it stops its own servers) and return what it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ser.cli", "up", "--concurrency", "1", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        err += f"\n(still running after {timeout} s: stopped)"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def running_up(service_env, tmp_path_factory):
    """One `ser up` (embedded Redis, own state folder), healthy; stopped at the end."""
    tmp = tmp_path_factory.mktemp("up_lock")
    up = EmbeddedStack(_up_env(service_env, tmp), tmp).start(timeout=90)
    try:
        yield up
    finally:
        up.stop()


def _healthy(up: EmbeddedStack) -> bool:
    return answers_ok(up.base + "/health")


def test_second_ser_up_on_the_same_state_folder_refuses(running_up):
    first, state = running_up.proc, running_up.state
    redis_before = _redis_servers(state)
    assert len(redis_before) == 1, redis_before
    # another API port, so only the state folder is shared
    started = time.monotonic()
    out = _up(running_up.env, "--port", str(free_port()))
    took = time.monotonic() - started
    assert out.returncode == 1, out.stdout + out.stderr
    message = out.stderr.strip()
    assert "ALREADY_RUNNING" in message and len(message.splitlines()) == 1, message
    assert f"pid {first.pid}" in message, message
    assert running_up.base in message, message
    assert "redis-server on" not in out.stdout and "API listening" not in out.stdout
    assert took < 30, f"the refusal took {took:.1f} s"
    # nothing of the first stack disturbed
    assert first.poll() is None
    assert _healthy(running_up), "the first `ser up` must stay healthy"
    assert _redis_servers(state) == redis_before


def test_ser_up_refuses_a_taken_api_port_before_starting_anything(running_up, tmp_path):
    env = dict(running_up.env, SER_STATE_DIR=str(tmp_path / "other"))
    port = running_up.port
    out = _up(env, "--port", str(port))
    assert out.returncode == 1, out.stdout + out.stderr
    message = out.stderr.strip()
    assert "PORT_IN_USE" in message and f"port {port}" in message and "--port" in message
    assert not (tmp_path / "other" / "redis").exists(), "nothing may start on a taken port"
    assert _redis_servers(tmp_path / "other") == []
    assert running_up.alive() and _healthy(running_up)


def test_the_parts_die_with_ser_up_however_it_dies(service_env, tmp_path):
    """`ser up` killed outright (or its terminal closed) leaves no API or worker running on
    unsupervised, unable to log: they get SIGTERM when it dies (Redis is stopped by the next
    `ser up`'s lock, and here by the harness)."""
    import psutil

    up = EmbeddedStack(_up_env(service_env, tmp_path), tmp_path).start(timeout=90)
    try:
        parts = [
            p
            for p in psutil.Process(up.proc.pid).children()
            if "redis-server" not in (p.name() or "")
        ]
        assert len(parts) == 3, parts  # the API and the two worker nodes
        up.proc.kill()
        up.proc.wait(10)
        wait_until(
            lambda: not any(p.is_running() and p.status() != "zombie" for p in parts),
            60,
            "the parts to exit after ser up died",
        )
    finally:
        up.stop()


class _UpWithSigintIgnored(EmbeddedStack):
    """`ser up` as a shell starts a background job (`ser up &`): SIGINT ignored from birth."""

    def argv(self) -> list[str]:
        ignore_then_exec = (
            "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "os.execv(sys.argv[1], sys.argv[1:])"
        )
        return [sys.executable, "-c", ignore_then_exec, *super().argv()]


def test_sigint_stops_ser_up_even_when_inherited_as_ignored(service_env, tmp_path):
    """Ctrl-C (SIGINT) stops `ser up` in order, whatever disposition it inherited."""
    up = _UpWithSigintIgnored(_up_env(service_env, tmp_path), tmp_path).start(timeout=90)
    try:
        up.proc.send_signal(signal.SIGINT)
        try:
            code = up.proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail("`ser up` ignored SIGINT")
    finally:
        up.stop()
    assert code == 0, up.tail()
    assert "ser: stopped" in up.log.read_text()
    assert not _port_open(up.port) and not _port_open(up.redis_port)
