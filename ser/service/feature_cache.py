"""The feature cache every worker replica shares, in Redis (the same interface as
:class:`ser.features.cache.DiskCache`, which serves the command line)."""

from __future__ import annotations

import numpy as np


class RedisCache:
    """Feature vectors in Redis, shared by every worker replica: ``<prefix>feat:<ver>:<hash>``.

    ``client`` is a redis-py client; entries expire after ``ttl`` seconds (None: never).
    """

    def __init__(self, client, prefix: str = "ser:", ttl: int | None = 30 * 24 * 3600) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl

    def _key(self, version: str, key: str) -> str:
        return f"{self.prefix}feat:{version}:{key}"

    def contains_many(self, version: str, keys: list[str]) -> list[bool]:
        """Whether each key is cached, in one round trip without fetching the vectors."""
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.exists(self._key(version, k))
        return [bool(n) for n in pipe.execute()]

    def get_many(self, version: str, keys: list[str]) -> list[np.ndarray | None]:
        """Look up many keys in one round trip."""
        if not keys:
            return []
        raw = self.client.mget([self._key(version, k) for k in keys])
        return [np.frombuffer(b, dtype=np.float32).copy() if b else None for b in raw]

    def put_many(self, version: str, vectors: dict[str, np.ndarray]) -> None:
        """Store many vectors in one round trip."""
        if not vectors:
            return
        pipe = self.client.pipeline(transaction=False)
        for k, v in vectors.items():
            data = np.asarray(v, dtype=np.float32).tobytes()
            pipe.set(self._key(version, k), data, ex=self.ttl)
        pipe.execute()
