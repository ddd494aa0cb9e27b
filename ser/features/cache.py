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
