"""Settings from the environment, documented in one place.

| variable | default | meaning |
|---|---|---|
| SER_DATA_DIR | ./data | data root: every dataset/file path a client names is confined below it |
| SER_STATE_DIR | ./.ser | local state (embedded Redis, secret key, logs) |
| SER_CACHE_DIR | $SER_STATE_DIR/cache | on-disk feature cache |
| SER_MAX_AUDIO_SECONDS | 600 | longest recording accepted (10 minutes) |
| SER_N_JOBS | number of cores | processes for batch feature extraction |
| SER_EMODB_DIR | ../shared/data/emodb | EMO-DB copy used by tests and benchmarks |

The service layer adds its own settings (Redis URL, API key, ...) to :class:`Settings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "")
    return value if value.strip() else default


def _cpu_count() -> int:
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


def load(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ

    def get(name: str, default: str) -> str:
        value = env.get(name, "")
        return value if value.strip() else default

    state = Path(get("SER_STATE_DIR", ".ser")).expanduser()
    return Settings(
        data_dir=Path(get("SER_DATA_DIR", "data")).expanduser(),
        state_dir=state,
        cache_dir=Path(get("SER_CACHE_DIR", str(state / "cache"))).expanduser(),
        max_audio_seconds=float(get("SER_MAX_AUDIO_SECONDS", "600")),
        n_jobs=int(get("SER_N_JOBS", str(_cpu_count()))),
    )


def emodb_dir() -> Path | None:
    """The EMO-DB copy for tests and benchmarks, or None when absent."""
    here = Path(__file__).resolve().parent.parent
    candidate = Path(_env("SER_EMODB_DIR", str(here.parent / "shared" / "data" / "emodb")))
    return candidate if candidate.is_dir() and any(candidate.glob("*.wav")) else None
