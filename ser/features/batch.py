"""Featurize many recordings: cache look-ups first, then the misses in parallel processes.

Results are per item: a vector, or the :class:`~ser.errors.SerError` that item raised. One bad
recording never fails the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ser import audio
from ser.errors import AudioError, SerError
from ser.features import FeatureSpec, get_spec
from ser.features.cache import content_hash

Result = np.ndarray | SerError
Progress = Callable[[int, int], None]


class Cache(Protocol):
    """What featurize needs of a cache (DiskCache, RedisCache, CountingCache): batch calls,
    one round trip per batch where the store allows it."""

    def get_many(self, version: str, keys: list[str]) -> list[np.ndarray | None]: ...
    def put_many(self, version: str, vectors: dict[str, np.ndarray]) -> None: ...


def _read(source: Path | str | bytes) -> bytes:
    if isinstance(source, bytes | bytearray):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise AudioError(audio.UNREADABLE, f"cannot read {source}: {exc.strerror}") from None


def extract_one(spec_name: str, source: Path | str | bytes, max_seconds: float | None) -> Result:
    """Features of one recording, or the error it raised (never raises)."""
    try:
        source = Path(source) if isinstance(source, str) else source
        return get_spec(spec_name).from_source(source, max_seconds=max_seconds)
    except SerError as exc:
        return exc
    except Exception as exc:  # a decoder or extractor bug must fail this row only
        return SerError("FEATURE_ERROR", f"feature extraction failed: {type(exc).__name__}: {exc}")


def _extract_chunk(
    spec_name: str, items: list[tuple[int, Path | str | bytes]], max_seconds: float | None
) -> list[tuple[int, Result]]:
    return [(i, extract_one(spec_name, src, max_seconds)) for i, src in items]


def _warm(spec_name: str) -> int:
    import os

    from ser.model import warm_up

    warm_up(spec_name)
    return os.getpid()


def warm_pool(n_jobs: int, spec_name: str = "default") -> int:
    """Start the reusable process pool and pay imports/first calls in each process.

    Later ``featurize(..., n_jobs=n_jobs)`` calls reuse these processes. Returns how many
    distinct processes answered.
    """
    from joblib import Parallel, delayed

    pids = Parallel(n_jobs=n_jobs)(delayed(_warm)(spec_name) for _ in range(4 * n_jobs))
    return len(set(pids))


def featurize(
    sources: Sequence[Path | str | bytes],
    spec: FeatureSpec | str = "default",
    *,
    cache: Cache | None = None,
    n_jobs: int = 1,
    progress: Progress | None = None,
    max_seconds: float | None = audio.DEFAULT_MAX_SECONDS,
) -> list[Result]:
    """Per-item features of ``sources`` (paths or bytes), in order."""
    spec = get_spec(spec) if isinstance(spec, str) else spec
    total = len(sources)
    results: list[Result | None] = [None] * total
    keys: list[str | None] = [None] * total
    todo: list[tuple[int, Path | str | bytes]] = []
    done = 0
    if cache is None:
        todo = list(enumerate(sources))
    else:
        for i, src in enumerate(sources):
            try:
                keys[i] = content_hash(_read(src))
            except AudioError as exc:
                results[i] = exc
        hashed = [i for i in range(total) if keys[i]]
        hits = cache.get_many(spec.version, [keys[i] for i in hashed])
        for i, hit in zip(hashed, hits):
            if hit is not None:
                results[i] = hit
            else:
                todo.append((i, sources[i]))
        done = total - len(todo)
    if progress:
        progress(done, total)

    def record(pairs: list[tuple[int, Result]]) -> None:
        nonlocal done
        fresh = {}
        for i, res in pairs:
            results[i] = res
            if keys[i] and isinstance(res, np.ndarray):
                fresh[keys[i]] = res
        if cache is not None and fresh:
            cache.put_many(spec.version, fresh)
        done += len(pairs)
        if progress:
            progress(done, total)

    if n_jobs <= 1 or len(todo) < 4 * n_jobs:
        for item in todo:
            record(_extract_chunk(spec.name, [item], max_seconds))
    else:
        from joblib import Parallel, delayed

        # Several chunks per process: balanced load, little per-task overhead, live progress.
        n_chunks = min(len(todo), n_jobs * 8)
        chunks = [todo[k::n_chunks] for k in range(n_chunks)]
        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        for pairs in parallel(delayed(_extract_chunk)(spec.name, c, max_seconds) for c in chunks):
            record(pairs)
    return results  # type: ignore[return-value]
