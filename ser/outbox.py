"""The outbox: every task message the service publishes, kept until a worker has run it.

Why: kombu's Redis transport takes a message off its queue with BRPOP and only then records
it as unacknowledged. A worker node killed in between (SIGKILL, OOM, power loss) loses the
message: the job stays QUEUED forever, or a bulk job misses a chunk. The soak
(bench/soak.py: a worker node SIGKILLed every minute under traffic) lost 1 job in 36,944 that
way. The same gap opens when the API dies between writing a job record and publishing it.

How: the publisher adds (task id, name, args) here before it publishes; the task removes its
entry when it has run (whatever the outcome). A sweeper (worker/recovery.py) looks at entries
older than a few seconds: an entry whose message is neither waiting in a queue nor held
unacknowledged by a worker, twice in a row, is published again under the same task id. A
second run is harmless: job records only move forward, and a bulk chunk overwrites its rows.

Plain Redis, no Celery: the API and the workers share it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

MAX_REPUBLISH = 3  # a message lost this many times is given up (its job fails JOB_LOST)


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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

    def add(self, task_id: str, name: str, args: list, pipe=None) -> None:
        """Record a message about to be published (in ``pipe`` when given, not executed)."""
        own = pipe is None
        p = self.client.pipeline(transaction=True) if own else pipe
        entry = json.dumps({"name": name, "args": args, "republished": 0})
        p.hset(self.msg_key, task_id, entry)
        p.zadd(self.index_key, {task_id: time.time()})
        if own:
            p.execute()

    def done(self, task_id: str) -> None:
        """The task ran (or will never need to): forget its message."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.index_key, task_id)
        pipe.hdel(self.msg_key, task_id)
        pipe.hdel(self.miss_key, task_id)
        pipe.execute()

    def pending(self) -> int:
        """How many messages are outstanding."""
        return int(self.client.zcard(self.index_key))

    def sweep(
        self,
        present: Callable[[], Iterable[str]],
        republish: Callable[[str, str, list], bool],
        min_age: float,
        confirm_after: float,
        now: float | None = None,
        limit: int = 10_000,
    ) -> SweepReport:
        """Publish again what the broker lost.

        ``present()`` returns the task ids the broker still holds (queued or unacknowledged);
        it is called only when some entry is older than ``min_age`` seconds. An entry missing
        from it in two sweeps at least ``confirm_after`` seconds apart (a message is briefly
        in neither place while a worker takes it) is handed to ``republish(id, name, args)``,
        which publishes it again (True) or says it is no longer needed (False: the entry is
        dropped, e.g. its job has ended). After MAX_REPUBLISH republications an entry is
        dropped and returned as abandoned.
        """
        now = time.time() if now is None else now
        report = SweepReport()
        old = [
            _s(x)
            for x in self.client.zrangebyscore(
                self.index_key, "-inf", now - min_age, start=0, num=limit
            )
        ]
        misses = {_s(k): float(v) for k, v in self.client.hgetall(self.miss_key).items()}
        stale = [k for k in misses if k not in set(old)]
        if stale:
            self.client.hdel(self.miss_key, *stale)
        if not old:
            return report
        held = set(present())
        # Entries that finished while the broker was being read are not candidates.
        scores = self.client.zmscore(self.index_key, old)
        report.checked = len(old)
        for task_id, score in zip(old, scores, strict=True):
            if score is None or task_id in held:
                if task_id in misses:
                    self.client.hdel(self.miss_key, task_id)
                continue
            report.missing += 1
            first = misses.get(task_id)
            if first is None:
                self.client.hset(self.miss_key, task_id, repr(now))
                continue
            if now - first < confirm_after:
                continue
            raw = self.client.hget(self.msg_key, task_id)
            if raw is None:  # finished a moment ago
                self.client.hdel(self.miss_key, task_id)
                continue
            entry = json.loads(raw)
            if int(entry.get("republished", 0)) >= MAX_REPUBLISH:
                self.done(task_id)
                report.abandoned.append((task_id, entry["name"], entry["args"]))
                continue
            entry["republished"] = int(entry.get("republished", 0)) + 1
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self.msg_key, task_id, json.dumps(entry))
            pipe.zadd(self.index_key, {task_id: now})  # ages again from now
            pipe.hdel(self.miss_key, task_id)
            pipe.execute()
            if republish(task_id, entry["name"], entry["args"]):
                report.republished.append(task_id)
            else:
                self.done(task_id)
        return report
