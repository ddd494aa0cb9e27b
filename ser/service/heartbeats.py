"""Worker liveness: each worker node refreshes its heartbeat while it is online."""

from __future__ import annotations

import json


def heartbeat_key(prefix: str, hostname: str) -> str:
    """The heartbeat a worker node keeps while it is online (worker/app.py)."""
    return f"{prefix}worker:{hostname}"


def heartbeats(client, prefix: str) -> list[dict]:
    """The heartbeats of the worker nodes online: hostname, queues, concurrency, ..."""
    keys = list(client.scan_iter(match=heartbeat_key(prefix, "*"), count=200))
    return [json.loads(v) for v in (client.mget(keys) if keys else []) if v]
