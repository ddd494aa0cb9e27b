"""Settings from the environment, documented in one place.

| variable | default | meaning |
|---|---|---|
| SER_DATA_DIR | ./data | data root: every dataset/file path a client names is confined below it |
| SER_STATE_DIR | ./.ser | local state (embedded Redis, secret key, logs) |
| SER_CACHE_DIR | $SER_STATE_DIR/cache | on-disk feature cache |
| SER_MAX_AUDIO_SECONDS | 600 | longest recording accepted (10 minutes) |
| SER_N_JOBS | number of cores | processes for batch feature extraction |
| SER_EMODB_DIR | ../shared/data/emodb | EMO-DB copy used by tests and benchmarks |
| SER_CORPUS2_DIR | ../shared/data/ravdess13-24 | second test corpus (labels.csv with speakers) |
| SER_REDIS_URL | redis://127.0.0.1:6379/0 | broker, jobs, registry (unset: `ser up` runs Redis) |
| SER_SECRET_KEY | $SER_STATE_DIR/secret_key | HMAC key signing models (`ser up` makes one) |
| SER_API_KEY | (none) | when set, all endpoints but /health need `Bearer <key>` |
| SER_API_URL | http://127.0.0.1:5000 | API used by `ser train/predict/jobs/models` |
| SER_KEY_PREFIX | ser: | prefix of the service's Redis keys (jobs, models, blobs) |
| SER_MAX_UPLOAD_MB | 25 | largest accepted upload (413 above) |
| SER_JOB_TTL | 604800 | seconds a job record is kept (7 days) |
| SER_BLOB_TTL | 3600 | seconds an uploaded clip waits in Redis for its prediction |
| SER_VISIBILITY_TIMEOUT | 7200 | seconds before an unacked task is redelivered (> limits) |
| SER_TRAIN_TIME_LIMIT | 3600 | hard limit of a training task (soft limit: 90 % of it) |
| SER_PREDICT_TIME_LIMIT | 120 | hard limit of a prediction task (soft limit: 90 % of it) |
| SER_RECOVERY_INTERVAL | 10 | seconds between sweeps that republish lost task messages (0: off) |
| SER_TRAIN_DATASET | . | dataset (under SER_DATA_DIR) when a train request names none |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "")
    return value if value.strip() else default


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment settings; build with :func:`load`."""

    data_dir: Path = field(default_factory=lambda: Path("data"))
    state_dir: Path = field(default_factory=lambda: Path(".ser"))
    cache_dir: Path = field(default_factory=lambda: Path(".ser/cache"))
    max_audio_seconds: float = 600.0
    n_jobs: int = 1
    # Service settings (api/, worker/, ser.service.registry, ser.service.jobs).
    # Secrets stay out of repr() so a logged Settings never leaks them.
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    secret_key: str = field(default="", repr=False)
    api_key: str = field(default="", repr=False)
    api_url: str = "http://127.0.0.1:5000"
    key_prefix: str = "ser:"
    max_upload_mb: float = 25.0
    job_ttl: int = 7 * 24 * 3600
    blob_ttl: int = 3600
    visibility_timeout: int = 7200
    train_time_limit: int = 3600
    predict_time_limit: int = 120
    train_dataset: str = "."
    recovery_interval: int = 10

    def require_secret_key(self) -> bytes:
        """The artifact-signing key as bytes; a SerError when none is configured."""
        if not self.secret_key:
            from ser.errors import SerError

            raise SerError(
                "NO_SECRET_KEY",
                f"SER_SECRET_KEY is not set and {self.state_dir / SECRET_KEY_FILE} does not exist",
            )
        return self.secret_key.encode()


def load(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ

    def get(name: str, default: str) -> str:
        value = env.get(name, "")
        return value if value.strip() else default

    state = Path(get("SER_STATE_DIR", ".ser")).expanduser()
    secret = get("SER_SECRET_KEY", "") or _read_secret(state)
    return Settings(
        data_dir=Path(get("SER_DATA_DIR", "data")).expanduser(),
        state_dir=state,
        cache_dir=Path(get("SER_CACHE_DIR", str(state / "cache"))).expanduser(),
        max_audio_seconds=float(get("SER_MAX_AUDIO_SECONDS", "600")),
        n_jobs=int(get("SER_N_JOBS", str(cpu_count()))),
        redis_url=get("SER_REDIS_URL", "redis://127.0.0.1:6379/0"),
        secret_key=secret,
        api_key=env.get("SER_API_KEY", "").strip(),
        api_url=get("SER_API_URL", "http://127.0.0.1:5000").rstrip("/"),
        key_prefix=get("SER_KEY_PREFIX", "ser:"),
        max_upload_mb=float(get("SER_MAX_UPLOAD_MB", "25")),
        job_ttl=int(get("SER_JOB_TTL", str(7 * 24 * 3600))),
        blob_ttl=int(get("SER_BLOB_TTL", "3600")),
        visibility_timeout=int(get("SER_VISIBILITY_TIMEOUT", "7200")),
        train_time_limit=int(get("SER_TRAIN_TIME_LIMIT", "3600")),
        predict_time_limit=int(get("SER_PREDICT_TIME_LIMIT", "120")),
        train_dataset=get("SER_TRAIN_DATASET", "."),
        recovery_interval=int(get("SER_RECOVERY_INTERVAL", "10")),
    )


SECRET_KEY_FILE = "secret_key"


def _read_secret(state_dir: Path) -> str:
    try:
        return (state_dir / SECRET_KEY_FILE).read_text().strip()
    except OSError:
        return ""


def ensure_secret_key(state_dir: Path) -> str:
    """The key in ``state_dir/secret_key``, generated (mode 0600) when absent."""
    return ensure_token(state_dir / SECRET_KEY_FILE, 32)


def ensure_token(path: Path, nbytes: int) -> str:
    """The random hex token in ``path``, generated (``nbytes``, mode 0600) when absent."""
    import secrets

    try:
        existing = path.read_text().strip()
    except OSError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def emodb_dir() -> Path | None:
    """The EMO-DB copy for tests and benchmarks, or None when absent."""
    return _corpus("SER_EMODB_DIR", "emodb")


def second_corpus_dir() -> Path | None:
    """The second test corpus (RAVDESS speech, actors 13-24, with a labels.csv), or None."""
    return _corpus("SER_CORPUS2_DIR", "ravdess13-24")


def _corpus(variable: str, name: str) -> Path | None:
    here = Path(__file__).resolve().parent.parent
    candidate = Path(_env(variable, str(here.parent / "shared" / "data" / name)))
    found = candidate.is_dir() and (
        (candidate / "labels.csv").is_file() or any(candidate.glob("*.wav"))
    )
    return candidate if found else None
