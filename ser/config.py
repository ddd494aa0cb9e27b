"""Settings from the environment (``SER_*``): the :class:`Settings` model is the one place
where each setting's type, default and meaning are written.

The README's settings table is generated from it: ``python -m ser.config`` prints the table,
``python -m ser.config --write README.md`` replaces the README's block.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from ser.errors import SettingError

ENV_PREFIX = "SER_"
SECRET_KEY_FILE = "secret_key"
_REPO = Path(__file__).resolve().parent.parent
_SHARED_DATA = _REPO.parent / "shared" / "data"
_SECRET_FIELDS = {"secret_key", "api_key", "redis_url"}  # values never echoed in errors


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _read_secret(state_dir: Path) -> str:
    try:
        return (state_dir / SECRET_KEY_FILE).read_text().strip()
    except OSError:
        return ""


def _shown(text: str) -> dict[str, Any]:
    """How the settings table shows (markdown) a default that is computed, not a constant."""
    return {"shown_default": text}


class Settings(BaseSettings):
    """A frozen snapshot of the environment settings; build with :func:`load`.

    Secrets are ``SecretStr`` (``.get_secret_value()``) and the Redis URL, which may carry a
    password, stays out of ``repr()``, so a logged Settings never leaks them.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # SER_X= means "the default"
        frozen=True,
        validate_default=True,
        extra="ignore",
    )

    data_dir: Path = Field(
        Path("data"),
        description="data root: every dataset or file path a client names must lie below it",
    )
    state_dir: Path = Field(
        Path(".ser"), description="local state: embedded Redis, secret key, logs, lock"
    )
    cache_dir: Path = Field(
        default_factory=lambda data: data.get("state_dir", Path(".ser")) / "cache",
        description="on-disk feature cache",
        json_schema_extra=_shown("`$SER_STATE_DIR/cache`"),
    )
    max_audio_seconds: float = Field(600.0, gt=0, description="longest recording accepted")
    max_segmented_seconds: float = Field(
        4 * 3600.0,
        gt=0,
        description="longest recording accepted for emotion over time (`segments`: decoded "
        "in blocks, memory bounded); above it `AUDIO_TOO_LONG`",
    )
    segment_chunk_seconds: float = Field(
        120.0,
        ge=10,
        le=3600,
        description="seconds of audio per task of a `segments` job: a recording longer than "
        "this (named under `SER_DATA_DIR`) is cut into time ranges of this length, spread over "
        "every worker process (a 1-hour recording: 30 ranges per pass); each task stays "
        "within `SER_PREDICT_TIME_LIMIT`",
    )
    n_jobs: int = Field(
        default_factory=cpu_count,
        ge=1,
        description="processes for batch feature extraction",
        json_schema_extra=_shown("number of cores"),
    )
    emodb_dir: Path = Field(
        _SHARED_DATA / "emodb",
        description="EMO-DB copy used by tests and benchmarks (skipped when absent)",
        json_schema_extra=_shown("`../shared/data/emodb`"),
    )
    corpus2_dir: Path = Field(
        _SHARED_DATA / "ravdess13-24",
        description="second corpus for tests and benchmarks (a `labels.csv` dataset with speakers)",
        json_schema_extra=_shown("`../shared/data/ravdess13-24`"),
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        repr=False,  # may carry a password
        description="broker, job records, model registry (unset: `ser up` starts its own Redis)",
    )
    secret_key: SecretStr = Field(
        default_factory=lambda data: SecretStr(_read_secret(data.get("state_dir", Path(".ser")))),
        description="HMAC-SHA256 key signing model artifacts, the same on every replica "
        "(`ser up` makes one)",
        json_schema_extra=_shown("`$SER_STATE_DIR/secret_key` (file)"),
    )
    api_key: SecretStr = Field(
        SecretStr(""),
        description="when set, every endpoint but the probes `/health` and `/ready` needs "
        "`Authorization: Bearer <key>`",
        json_schema_extra=_shown("(none)"),
    )
    api_url: str = Field(
        "http://127.0.0.1:5000",
        description="API used by `ser train/predict/score/jobs/models/speakers` (an `http://` "
        "or `https://` URL; else `INVALID_SETTING`)",
    )
    key_prefix: str = Field("ser:", description="prefix of every Redis key the service writes")
    max_upload_mb: float = Field(25.0, gt=0, description="largest accepted upload (413 above)")
    job_ttl: int = Field(7 * 24 * 3600, gt=0, description="seconds a job record is kept (7 days)")
    blob_ttl: int = Field(
        3600, gt=0, description="seconds an uploaded clip waits in Redis for its prediction"
    )
    visibility_timeout: int = Field(
        7200,
        gt=0,
        description="seconds before Redis redelivers an unacknowledged task; above every "
        "time limit",
    )
    train_time_limit: int = Field(
        3600, gt=0, description="hard limit of a training task in seconds (soft: 90 % of it)"
    )
    predict_time_limit: int = Field(
        120, gt=0, description="hard limit of a prediction task in seconds (soft: 90 % of it)"
    )
    train_dataset: str = Field(
        ".",
        description="folder trained when a request names no dataset (under `SER_DATA_DIR`), "
        "or the one dataset it holds ([Data](#data))",
    )
    recovery_interval: int = Field(
        10,
        ge=0,
        description="seconds between sweeps that republish task messages the broker lost "
        "(`0`: off; see docs/RELIABILITY.md)",
    )
    skip_warmup: bool = Field(
        False,
        description="worker pool processes skip the librosa warm-up, model preload and "
        "rehearsal prediction, API processes their rehearsal (faster start, slower first "
        "request; for tests that start many workers)",
    )
    metrics: bool = Field(
        True,
        description="serve Prometheus metrics at /metrics (false: 404); under `ser api` the "
        "HTTP figures of every gunicorn process are pooled in $SER_STATE_DIR/metrics",
    )

    @field_validator("data_dir", "state_dir", "cache_dir", "emodb_dir", "corpus2_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest.split("/")[0]:
            example = value.split("://")[-1] or "127.0.0.1:5000"
            raise PydanticCustomError(
                "http_url",
                "expected an http:// or https:// URL, e.g. {example}",
                {"example": f"http://{example}"},
            )
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    def require_secret_key(self) -> bytes:
        """The artifact-signing key as bytes; a SerError when none is configured."""
        if not self.secret_key:
            from ser.errors import SerError

            raise SerError(
                "NO_SECRET_KEY",
                f"SER_SECRET_KEY is not set and {self.state_dir / SECRET_KEY_FILE} does not exist",
            )
        return self.secret_key.get_secret_value().encode()


class _MappingSource(EnvSettingsSource):
    """The environment source reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        # Blank values (also whitespace only) mean "the default", as an unset variable.
        self._environ = {k: v for k, v in environ.items() if isinstance(v, str) and v.strip()}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        fold = str if self.case_sensitive else str.lower
        return {fold(k): v for k, v in self._environ.items()}


def variable(name: str) -> str:
    """The environment variable of the setting ``name``."""
    return ENV_PREFIX + name.upper()


def load(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None
) -> Settings:
    """Read the settings from ``environ`` (default: the process environment; an explicit
    mapping replaces it whole) with ``overrides`` (``SER_*`` keys) on top.

    A value that does not fit its setting raises SettingError (``INVALID_SETTING``)."""
    env = dict(os.environ if environ is None else environ)
    env.update(overrides or {})
    try:
        return Settings(_build_sources=((_MappingSource(Settings, env),), {}))
    except ValidationError as exc:
        raise SettingError("INVALID_SETTING", _describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    """One line per bad value: the variable, the value (not for secrets), what was expected."""
    lines = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        shown = "" if name in _SECRET_FIELDS else f"={error.get('input')!r}"
        expected = error["msg"][0].lower() + error["msg"][1:]
        lines.append(f"{variable(name)}{shown}: {expected}")
    return "; ".join(lines)


def settings_table() -> str:
    """The markdown table of every setting: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        default = extra.get("shown_default")
        if default is None:
            value = info.default
            if isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, float):
                value = f"{value:g}"
            default = f"`{value}`"
        rows.append(f"| `{variable(name)}` | {default} | {info.description} |")
    return "\n".join(rows)


README_START = "<!-- settings:start -->"
README_END = "<!-- settings:end -->"


def readme_with_table(text: str) -> str:
    """``text`` (the README) with the block between the settings markers regenerated."""
    head, start, rest = text.partition(README_START)
    _, end, tail = rest.partition(README_END)
    if not start or not end:
        raise ValueError(f"no {README_START} ... {README_END} block")
    return f"{head}{start}\n{settings_table()}\n{end}{tail}"


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
    return _corpus(load().emodb_dir)


def second_corpus_dir() -> Path | None:
    """The second test corpus (RAVDESS speech, actors 13-24, with a labels.csv), or None."""
    return _corpus(load().corpus2_dir)


def _corpus(candidate: Path) -> Path | None:
    found = candidate.is_dir() and (
        (candidate / "labels.csv").is_file() or any(candidate.glob("*.wav"))
    )
    return candidate if found else None


def main(argv: list[str] | None = None) -> int:
    """``python -m ser.config [--write README.md]``: print the settings table, or rewrite the
    README's generated block."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ser.config", description=main.__doc__)
    parser.add_argument("--write", metavar="README", type=Path, help="rewrite its block")
    args = parser.parse_args(argv)
    if args.write is None:
        print(settings_table())
        return 0
    args.write.write_text(readme_with_table(args.write.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
