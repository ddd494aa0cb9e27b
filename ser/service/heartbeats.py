"""Worker liveness and readiness.

Liveness: each worker node refreshes its heartbeat while it is online. All heartbeats live in
one hash, ``<prefix>workers`` (hostname -> JSON), so reading them is one script call, not a
scan of the keyspace (``/health`` and every bulk fan-out read them). Each entry carries its
expiry in Redis's own clock (a beat and a reader on different machines never compare their
clocks); a reader ignores lapsed entries and removes them.

Readiness: each pool process, once it has loaded its libraries and the current model, marks
itself warm in ``<prefix>workers:warm`` under its node's run id (a random id drawn when the
node's main process starts, inherited by its pool processes) and its pid, and renews that mark
every ``HEARTBEAT_EVERY`` seconds; a mark, like a heartbeat, lapses ``HEARTBEAT_TTL`` seconds
after it was last written (Redis's clock), and a reader removes lapsed marks only. A mark counts
while a live heartbeat carries its run id, so a node restarted under the same name and pid (a
container's PID 1) starts with no warm process. A mark whose run has no live heartbeat is not
counted but left alone: its pool processes warm up while the node's main process is still
starting (Celery sends ``worker_ready``, which starts the heartbeat, once its consumer is up,
without waiting for the pool), so a mark routinely comes before its node's first beat. Renewal
also restores marks Redis lost (restarted without its data). A pool process removes its own
mark when it exits. At most ``concurrency`` marks count per node.
"""

from __future__ import annotations

import json
import os

HEARTBEAT_EVERY = 10  # seconds between beats of a worker node
HEARTBEAT_TTL = 30  # a node missing three beats counts as gone

# An entry (a heartbeat or a warm mark) is "<expiry, Redis seconds> <JSON>".
# KEYS: hash. ARGV: field (hostname, or run/pid), JSON, ttl.
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


def mark_warm(
    client, prefix: str, run: str, model: str | None, warmed: bool = True, ttl: int = HEARTBEAT_TTL
) -> None:
    """Record, for the next ``ttl`` seconds, that this pool process of node run ``run`` is ready
    to work: its libraries loaded (``warmed``) and ``model`` (the version current at start, or
    None) in memory. The process renews it every ``HEARTBEAT_EVERY`` seconds."""
    doc = {"run": run, "machine": machine(), "pid": os.getpid(), "model": model, "warm": warmed}
    client.eval(_BEAT, 1, warm_key(prefix), f"{run}/{os.getpid()}", json.dumps(doc), ttl)


def unmark_warm(client, prefix: str, run: str) -> None:
    """Remove this pool process's mark (it is exiting)."""
    client.hdel(warm_key(prefix), f"{run}/{os.getpid()}")


def readiness(client, prefix: str, queues: tuple[str, ...] | list[str]) -> dict:
    """{"ready": every queue has a warm process on a live node, "queues": {queue: warm
    processes}, "workers": live nodes}. Lapsed marks are removed; marks of a run with no live
    heartbeat are not counted, and kept (their node may not have beaten yet)."""
    nodes = heartbeats(client, prefix)
    live = {b["run"]: b for b in nodes if b.get("run")}
    warm_per_run: dict[str, int] = {}
    for raw in client.eval(_LIVE, 1, warm_key(prefix)):
        try:
            doc = json.loads(raw)
            run = doc["run"] if doc["run"] in live else None
        except (ValueError, KeyError, TypeError):
            continue  # unreadable: it lapses like any mark no process renews
        if run is not None and doc.get("warm", True):
            warm_per_run[run] = warm_per_run.get(run, 0) + 1
    per_queue = {q: 0 for q in queues}
    for run, n in warm_per_run.items():
        node = live[run]
        n = min(n, int(node.get("concurrency") or n))  # a replaced process's mark, not yet gone
        for q in node.get("queues") or []:
            if q in per_queue:
                per_queue[q] += n
    ready = bool(per_queue) and all(per_queue.values())
    return {"ready": ready, "queues": per_queue, "workers": len(nodes)}
