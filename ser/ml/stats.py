"""Per-speaker feature statistics: count, mean and sum of squared deviations, mergeable exactly
and stored compactly. numpy only, so the Redis-backed stores (ser.service.speakers) and the
bulk job's pass-1 entries (ser.bulk) read them without scikit-learn."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Count, mean and sum of squared deviations of feature vectors (mergeable, exact)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray) -> Stats:
        """Statistics of the rows of ``X``."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        mean = X.mean(axis=0)
        return cls(len(X), mean, ((X - mean) ** 2).sum(axis=0))

    @property
    def var(self) -> np.ndarray:
        return self.m2 / max(self.n, 1)

    def merge(self, other: Stats | None) -> Stats:
        """The statistics of both sets of rows together (Chan et al.'s parallel update)."""
        if other is None or other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return Stats(n, mean, m2)

    def to_bytes(self) -> bytes:
        """A compact binary form (count, then float64 mean and m2) for a Redis value."""
        head = struct.pack("<qq", self.n, len(self.mean))
        return head + self.mean.astype("<f8").tobytes() + self.m2.astype("<f8").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Stats:
        n, dim = struct.unpack_from("<qq", data)
        body = np.frombuffer(data, dtype="<f8", offset=16)
        if body.size != 2 * dim:
            raise ValueError("speaker statistics of the wrong size")
        return cls(int(n), body[:dim].copy(), body[dim:].copy())


def by_speaker(X: np.ndarray, groups: Sequence[str]) -> dict[str, Stats]:
    """Statistics of each speaker's rows."""
    groups = np.asarray(groups)
    return {g: Stats.of(X[groups == g]) for g in np.unique(groups)}
