"""Worker liveness: each worker node refreshes its heartbeat while it is online.

All heartbeats live in one hash, ``<prefix>workers`` (hostname -> JSON), so reading them is
one HGETALL, not a scan of the keyspace (``/health`` and every bulk fan-out read them). Each
entry carries its expiry in Redis's own clock (a beat and a reader on different machines never
compare their clocks); a reader ignores lapsed entries and removes them.
"""

from __future__ import annotations

import json

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
