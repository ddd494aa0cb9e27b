"""The outbox: every task message the service publishes, kept until a worker has run it.

Why: kombu's Redis transport takes a message off its queue with BRPOP and only then records
it as unacknowledged. A worker node killed in between (SIGKILL, OOM, power loss) loses the
message: the job stays QUEUED forever, or a bulk job misses a chunk. The soak
(bench/soak.py: a worker node SIGKILLed every minute under traffic) lost 1 job in 36,944 that
way. The same gap opens when the API dies between writing a job record and publishing: the
API writes the entry in the same transaction as the job record.

How: the publisher adds (task id, name, args) here before it publishes; the task removes its
entry when it has run (whatever the outcome). A sweeper (worker/sweeper.py) looks at entries
older than a few seconds: an entry whose message is neither waiting in a queue nor held
unacknowledged by a worker, in two snapshots of the broker in a row, is claimed (atomically:
one sweeper wins) and handed back to be published again under the same task id. A second run
is harmless: job records only move forward, and a bulk chunk overwrites its rows.

Times are Redis server time, so the clocks of API and worker hosts do not matter.
Plain Redis, no Celery: the API and the workers share it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ser.service.redis import as_str

# A task's result with this key true says the task dropped its own entry (in its last
# pipeline): the task wrapper (worker/app.py) does not do it a second time.
OUTBOX_DONE = "outbox_done"
MAX_REPUBLISH = 3  # a message lost this many times is given up (its job fails JOB_LOST)
PAGE = 5000  # outbox entries read per round trip by a sweep

# KEYS: index, msg. ARGV: task id, entry. Score = server time.
_ADD = """
local t = redis.call('TIME')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], t[1] + t[2] / 1000000, ARGV[1])
return 1
"""

# KEYS: index, msg, miss. ARGV: task id, the miss mark the sweeper saw, now.
# Claims a confirmed-missing entry for one sweeper: returns its entry and re-ages it, or
# nothing when another sweeper claimed it first or the task finished meanwhile.
_CLAIM = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return false end
redis.call('HDEL', KEYS[3], ARGV[1])
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return false
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return raw
"""

# KEYS: msg. ARGV: task id, entry. Updates an entry that still exists (never recreates one).
_UPDATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


@dataclass
class SweepReport:
    """What one sweep saw and did."""

    checked: int = 0  # entries old enough to be looked for
    missing: int = 0  # of those, not found in the broker this time
    republished: list[str] = field(default_factory=list)
    abandoned: list[tuple[str, str, list]] = field(default_factory=list)  # (id, name, args)


class Outbox:
    """Outstanding task messages under ``prefix`` (a sorted set by publish time + payloads)."""

    def __init__(self, client, prefix: str = "ser:") -> None:
        self.client = client
        self.index_key = f"{prefix}outbox"
        self.msg_key = f"{prefix}outbox:msg"
        self.miss_key = f"{prefix}outbox:miss"
        self._add = client.register_script(_ADD)
        self._claim = client.register_script(_CLAIM)
        self._update = client.register_script(_UPDATE)

    def add(self, task_id: str, name: str, args: list, pipe=None) -> None:
        """Record a message about to be published (queued in ``pipe`` when given, e.g. the
        transaction that writes its job record; executed at once otherwise)."""
        entry = json.dumps({"name": name, "args": args, "republished": 0})
        keys, argv = [self.index_key, self.msg_key], [task_id, entry]
        if pipe is None:
            self._add(keys=keys, args=argv)
        else:  # plain EVAL: a registered script in a pipeline costs a SCRIPT EXISTS per call
            pipe.eval(_ADD, 2, *keys, *argv)

    def done(self, task_id: str, pipe=None) -> None:
        """The task ran (or will never need to): forget its message. With ``pipe``, the
        commands join that pipeline (the caller executes it)."""
        own = pipe is None
        if own:
            pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.index_key, task_id)
        pipe.hdel(self.msg_key, task_id)
        pipe.hdel(self.miss_key, task_id)
        if own:
            pipe.execute()

    def pending(self) -> int:
        """How many messages are outstanding."""
        return int(self.client.zcard(self.index_key))

    def now(self) -> float:
        """Redis server time (what entry ages are measured in)."""
        sec, usec = self.client.time()
        return sec + usec / 1e6

    def _old(self, before: float) -> list[str]:
        out: list[str] = []
        while True:
            page = self.client.zrangebyscore(
                self.index_key, "-inf", before, start=len(out), num=PAGE
            )
            out += [as_str(x) for x in page]
            if len(page) < PAGE:
                return out

    def sweep(
        self,
        present: Callable[[], Iterable[str]],
        republish: Callable[[str, str, list], bool],
        min_age: float,
        confirm_after: float,
        now: float | None = None,
    ) -> SweepReport:
        """Publish again what the broker lost.

        ``present()`` returns the task ids the broker holds (queued or unacknowledged, read as
        one snapshot); it is called only when some entry is older than ``min_age`` seconds.
        An entry missing from two snapshots at least ``confirm_after`` seconds apart (a message
        is briefly in neither place while a worker takes it) is claimed and handed to
        ``republish(id, name, args)``, which publishes it again (True) or says it is no longer
        needed (False: the entry is dropped, e.g. its job has ended). An exception from it
        leaves the entry to the next sweep. After MAX_REPUBLISH republications an entry is
        dropped and returned as abandoned.
        """
        now = self.now() if now is None else now
        report = SweepReport()
        old = self._old(now - min_age)
        misses = {as_str(k): as_str(v) for k, v in self.client.hgetall(self.miss_key).items()}
        old_set = set(old)
        stale = [k for k in misses if k not in old_set]
        if stale:
            self.client.hdel(self.miss_key, *stale)
        if not old:
            return report
        held = set(present())
        report.checked = len(old)
        lost = [t for t in old if t not in held]
        found = [t for t in old_set & held if t in misses]
        if found:
            self.client.hdel(self.miss_key, *found)
        if not lost:
            return report
        # Entries that finished while the broker was being read are not missing.
        lost = [t for t, s in zip(lost, self.client.zmscore(self.index_key, lost)) if s is not None]
        report.missing = len(lost)
        for task_id in lost:
            mark = misses.get(task_id)
            if mark is None:  # first miss: remember when (only if nobody marked it first)
                self.client.hsetnx(self.miss_key, task_id, repr(now))
                continue
            if now - float(mark) < confirm_after:
                continue
            raw = self._claim(
                keys=[self.index_key, self.msg_key, self.miss_key], args=[task_id, mark, now]
            )
            if raw is None:  # another sweeper took it, or it finished
                continue
            entry = json.loads(raw)
            count = int(entry.get("republished", 0))
            if count >= MAX_REPUBLISH:
                self.done(task_id)
                report.abandoned.append((task_id, entry["name"], entry["args"]))
                continue
            try:
                again = republish(task_id, entry["name"], entry["args"])
            except Exception:  # e.g. Redis went away: the entry (re-aged) waits for a sweep
                continue
            if not again:
                self.done(task_id)
                continue
            entry["republished"] = count + 1
            self._update(keys=[self.msg_key], args=[task_id, json.dumps(entry)])
            report.republished.append(task_id)
        return report
