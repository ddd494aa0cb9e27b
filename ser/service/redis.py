"""Redis plumbing shared by the API and the workers: one client factory, one decoder, and the
keys both sides read (upload blobs). No Flask, no Celery."""

from __future__ import annotations

from typing import Any

import redis


def as_str(value: Any) -> str:
    """A Redis reply (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_client(url: str, **kwargs):
    """A binary-safe redis-py client with short connect timeouts."""
    kwargs.setdefault("socket_connect_timeout", 3)
    kwargs.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(url, **kwargs)


def blob_key(prefix: str, blob_id: str) -> str:
    """Where an uploaded clip waits for its prediction."""
    return f"{prefix}blob:{blob_id}"
