"""Worker liveness and readiness.

Liveness: each worker node refreshes its heartbeat while it is online. All heartbeats live in
one hash, ``<prefix>workers`` (hostname -> JSON), so reading them is one script call, not a
scan of the keyspace (``/health`` and every bulk fan-out read them). Each entry carries its
expiry in Redis's own clock (a beat and a reader on different machines never compare their
clocks); a reader ignores lapsed entries and removes them.

Readiness: each pool process, once it has loaded its libraries and the current model, marks
itself warm in ``<prefix>workers:warm`` under its node's run id (a random id drawn when the
node's main process starts, inherited by its pool processes) and its pid. A mark counts while a
live heartbeat carries that run id, so a node restarted under the same name and pid (a
container's PID 1) starts with no warm process; marks of runs gone are removed by the reader,
and a pool process removes its own when it exits. At most ``concurrency`` marks count per node.
"""

from __future__ import annotations

import json
import os

HEARTBEAT_EVERY = 10  # seconds between beats of a worker node
HEARTBEAT_TTL = 30  # a node missing three beats counts as gone

# An entry is "<expiry, Redis seconds> <JSON>".
# KEYS: hash. ARGV: hostname, JSON, ttl.
_BEAT = """
local now = tonumber(redis.call('TIME')[1])
redis.call('HSET', KEYS[1], ARGV[1], (now + tonumber(ARGV[3])) .. ' ' .. ARGV[2])
return 1
"""

# KEYS: hash. Returns the JSON of the live entries; lapsed (or unreadable) ones are deleted.
_LIVE = """
local now = tonumber(redis.call('TIME')[1])
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local sep = string.find(all[i + 1], ' ', 1, true)
  local expiry = sep and tonumber(string.sub(all[i + 1], 1, sep - 1))
  if expiry and expiry > now then
    table.insert(live, string.sub(all[i + 1], sep + 1))
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live
"""


def machine() -> str:
    """This machine's name, as heartbeats and warm marks record it."""
    return os.uname().nodename


def heartbeats_key(prefix: str) -> str:
    """The hash of every worker node's heartbeat."""
    return f"{prefix}workers"


def beat(client, prefix: str, hostname: str, info: dict, ttl: int = HEARTBEAT_TTL) -> None:
    """Record that ``hostname`` is online for the next ``ttl`` seconds, with ``info``."""
    client.eval(_BEAT, 1, heartbeats_key(prefix), hostname, json.dumps(info), ttl)


def forget(client, prefix: str, hostname: str) -> None:
    """Remove ``hostname``'s heartbeat (a node shutting down cleanly)."""
    client.hdel(heartbeats_key(prefix), hostname)


def heartbeats(client, prefix: str) -> list[dict]:
    """The heartbeats of the worker nodes online: hostname, queues, concurrency, ..."""
    return [json.loads(v) for v in client.eval(_LIVE, 1, heartbeats_key(prefix))]


def heartbeat(client, prefix: str, hostname: str) -> dict | None:
    """``hostname``'s heartbeat while it is online, else None."""
    return next((b for b in heartbeats(client, prefix) if b.get("hostname") == hostname), None)


def warm_key(prefix: str) -> str:
    """The hash of the pool processes that are warm."""
    return f"{prefix}workers:warm"


def mark_warm(client, prefix: str, run: str, model: str | None, warmed: bool = True) -> None:
    """Record that this pool process of node run ``run`` is ready to work: its libraries
    loaded (``warmed``) and ``model`` (the version current at start, or None) in memory."""
    doc = {"run": run, "machine": machine(), "pid": os.getpid(), "model": model, "warm": warmed}
    client.hset(warm_key(prefix), f"{run}/{os.getpid()}", json.dumps(doc))


def unmark_warm(client, prefix: str, run: str) -> None:
    """Remove this pool process's mark (it is exiting)."""
    client.hdel(warm_key(prefix), f"{run}/{os.getpid()}")


def readiness(client, prefix: str, queues: tuple[str, ...] | list[str]) -> dict:
    """{"ready": every queue has a warm process on a live node, "queues": {queue: warm
    processes}, "workers": live nodes}. Marks of nodes no longer live are removed."""
    nodes = heartbeats(client, prefix)
    live = {b["run"]: b for b in nodes if b.get("run")}
    warm_per_run: dict[str, int] = {}
    stale = []
    for field, raw in client.hgetall(warm_key(prefix)).items():
        try:
            doc = json.loads(raw)
            run = doc["run"] if doc["run"] in live else None
        except (ValueError, KeyError, TypeError):
            run = None
        if run is None:
            stale.append(field)
        elif doc.get("warm", True):
            warm_per_run[run] = warm_per_run.get(run, 0) + 1
    per_queue = {q: 0 for q in queues}
    for run, n in warm_per_run.items():
        node = live[run]
        n = min(n, int(node.get("concurrency") or n))  # a replaced process's mark, not yet gone
        for q in node.get("queues") or []:
            if q in per_queue:
                per_queue[q] += n
    if stale:
        client.hdel(warm_key(prefix), *stale)
    ready = bool(per_queue) and all(per_queue.values())
    return {"ready": ready, "queues": per_queue, "workers": len(nodes)}
