"""Redis plumbing shared by the API and the workers: one client factory, one decoder, and the
keys both sides read (upload blobs, worker heartbeats). No Flask, no Celery."""

from __future__ import annotations

import json
from typing import Any


def as_str(value: Any) -> str:
    """A Redis reply (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_client(url: str, **kwargs):
    """A binary-safe redis-py client with short connect timeouts."""
    import redis

    kwargs.setdefault("socket_connect_timeout", 3)
    kwargs.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(url, **kwargs)


def blob_key(prefix: str, blob_id: str) -> str:
    """Where an uploaded clip waits for its prediction."""
    return f"{prefix}blob:{blob_id}"


def heartbeat_key(prefix: str, hostname: str) -> str:
    """The heartbeat a worker node keeps while it is online (worker/app.py)."""
    return f"{prefix}worker:{hostname}"


def heartbeats(client, prefix: str) -> list[dict]:
    """The heartbeats of the worker nodes online: hostname, queues, concurrency, ..."""
    keys = list(client.scan_iter(match=heartbeat_key(prefix, "*"), count=200))
    return [json.loads(v) for v in (client.mget(keys) if keys else []) if v]
