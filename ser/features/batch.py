"""Featurize many recordings: cache look-ups first, then the misses on a pool of threads.

Results are per item: a vector, or the :class:`~ser.errors.SerError` that item raised. One bad
recording never fails the others.

Parallel extraction (``n_jobs > 1``) runs on threads in this process, not in worker processes:
decoding (libsndfile), resampling (soxr), the FFTs and the array arithmetic release the GIL, and
a thread pool starts at once, where a cold process pool pays ≈2 s of imports (numpy, scipy,
librosa) in every process before its first recording (bench/featurize_speed.py measures both).
While the threads run, BLAS is held to one thread per caller (threadpoolctl), as joblib did in
its worker processes: the threads already fill the cores, and OpenBLAS's own threads on the
small per-recording matrix products only wait on each other. The vectors are therefore bit for
bit those of the former process pool (and of a worker, which runs one BLAS thread).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from ser import audio
from ser.errors import AudioError, SerError
from ser.features import FeatureSpec, get_spec, warm_up
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
        # (the file's name only, as ser.audio says it, never the server's absolute path: a
        # row or a training's failed files name the file by its relative path already)
        raise AudioError(
            audio.UNREADABLE, f"cannot read {Path(source).name}: {exc.strerror}"
        ) from None


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


def warm_pool(n_jobs: int, spec_name: str = "default") -> int:
    """Pay the imports and first-call costs of ``featurize(..., n_jobs=n_jobs)`` now.

    Extraction threads share this process's imports, so warming the process warms them all.
    Returns how many processes will do the work (1: this one).
    """
    warm_up(spec_name)
    return 1


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

    if n_jobs <= 1 or len(todo) < 2:
        for item in todo:
            record(_extract_chunk(spec.name, [item], max_seconds))
    else:
        _run_threads(spec.name, todo, max_seconds, n_jobs, record)
    return results  # type: ignore[return-value]


def _run_threads(
    spec_name: str,
    todo: list[tuple[int, Path | str | bytes]],
    max_seconds: float | None,
    n_jobs: int,
    record: Callable[[list[tuple[int, Result]]], None],
) -> None:
    """Extract ``todo`` on ``n_jobs`` threads, recording each chunk as it completes."""
    # Several chunks per thread: balanced load, one cache write per chunk, live progress.
    n_chunks = min(len(todo), n_jobs * 8)
    chunks = [todo[k::n_chunks] for k in range(n_chunks)]
    with _one_blas_thread():
        pool = ThreadPoolExecutor(min(n_jobs, n_chunks), thread_name_prefix="featurize")
        try:
            pending = {pool.submit(_extract_chunk, spec_name, c, max_seconds) for c in chunks}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    record(future.result())
        finally:
            # A failing record() (cache, progress callback, cancellation) drops what is queued.
            pool.shutdown(wait=True, cancel_futures=True)


def _one_blas_thread():
    """Hold BLAS to one thread per caller while the extraction threads run."""
    return threadpool_limits(limits=1, user_api="blas")
