"""On-disk feature cache keyed by (content hash, feature-spec version)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np


def content_hash(data: bytes) -> str:
    """Hex digest identifying a recording by its bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class DiskCache:
    """One ``.npy`` file per (spec version, content hash); writes are atomic renames."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, version: str, key: str) -> Path:
        return self.root / version / key[:2] / f"{key}.npy"

    def get(self, version: str, key: str) -> np.ndarray | None:
        """The cached vector, or None on a miss (or an unreadable entry)."""
        try:
            return np.load(self._path(version, key), allow_pickle=False)
        except (OSError, ValueError):
            return None

    def get_many(self, version: str, keys: list[str]) -> list[np.ndarray | None]:
        return [self.get(version, k) for k in keys]

    def put_many(self, version: str, vectors: dict[str, np.ndarray]) -> None:
        for k, v in vectors.items():
            self.put(version, k, v)

    def put(self, version: str, key: str, vector: np.ndarray) -> None:
        """Store ``vector``; concurrent writers of the same key are harmless."""
        path = self._path(version, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.asarray(vector, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class CountingCache:
    """Wraps a cache and counts its hits and misses (how many recordings were decoded)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.hits = 0
        self.misses = 0

    def get_many(self, version: str, keys: list[str]) -> list[np.ndarray | None]:
        found = self.inner.get_many(version, keys)
        hits = sum(v is not None for v in found)
        self.hits += hits
        self.misses += len(found) - hits
        return found

    def put_many(self, version: str, vectors: dict[str, np.ndarray]) -> None:
        self.inner.put_many(version, vectors)
