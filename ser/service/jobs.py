"""Job records in Redis, shared by the API (creates, reads, cancels) and the workers (run).

A job is a hash ``<prefix>job:<id>`` (kind, status, progress, timestamps, params, result or
error) that expires ``ttl`` seconds after its last change; ``<prefix>jobs`` indexes them by
creation time. Status changes are atomic Lua transitions, so a late worker can never turn a
CANCELLED job into SUCCEEDED. A finished job pushes a token on ``<prefix>job:<id>:done``,
which waiters watch with a blocking BLMOVE that leaves the token in place for other waiters.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ser.contract import (  # noqa: F401 - the statuses and kinds are read as jobs.X
    ACTIVE,
    CANCELLED,
    FAILED,
    KINDS,
    QUEUED,
    RUNNING,
    STATUSES,
    SUCCEEDED,
    TERMINAL,
)
from ser.service.redis import as_str

log = logging.getLogger(__name__)

TIMEOUT_ERROR = {
    "CODE": "JOB_TIMEOUT",
    "MESSAGE": "the job exceeded its time limit or its worker was lost",
}
MAX_ATTEMPTS = 3  # deliveries of one job (a worker killed mid-task redelivers it)
DEADLINE_MARGIN = 30  # seconds past the hard time limit before a RUNNING job counts as lost
LIST_SCAN_MAX = 5000  # index entries examined by one listing
MIN_BLOCK = 0.002  # seconds: the shortest blocking timeout sent to Redis (see JobStore.wait)

# Job metrics, kept in Redis by the same scripts that move a job (so every API and worker
# process, on any machine, counts into one place; /metrics reads them): ``<prefix>metrics:jobs``
# counts transitions by "kind|status"; ``<prefix>metrics:seconds`` is a histogram by
# "kind|phase|le" (phase: queued, from creation to the first start; running, from the last
# start to the end), with "kind|phase|sum" and "kind|phase|count".
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_OBSERVE = (
    """
local function observe(hist, kind, phase, seconds)
  if seconds < 0 then seconds = 0 end
  local base = kind .. '|' .. phase .. '|'
  for _, le in ipairs({"""
    + ", ".join(repr(b) for b in DURATION_BUCKETS)
    + """}) do
    if seconds <= le then redis.call('HINCRBY', hist, base .. le, 1) end
  end
  redis.call('HINCRBY', hist, base .. '+Inf', 1)
  redis.call('HINCRBY', hist, base .. 'count', 1)
  redis.call('HINCRBYFLOAT', hist, base .. 'sum', tostring(seconds))
end
local function now_ts()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
"""
)

# KEYS: job. Stamps its creation in Redis's clock, the one the durations are measured in (an
# API host's clock may be off from Redis's host).
_STAMP = (
    _OBSERVE
    + """
redis.call('HSET', KEYS[1], 'created_rts', tostring(now_ts()))
return 1
"""
)

# KEYS: job, done, job counters, durations. ARGV: allowed statuses (",A,B,"), new status, ttl,
# terminal (0/1), fields...
_TRANSITION = (
    _OBSERVE
    + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return false end
if not string.find(ARGV[1], ',' .. st .. ',', 1, true) then return st end
redis.call('HSET', KEYS[1], 'status', ARGV[2], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[3])
if ARGV[4] == '1' then
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  local kind = redis.call('HGET', KEYS[1], 'kind') or 'unknown'
  redis.call('HINCRBY', KEYS[3], kind .. '|' .. ARGV[2], 1)
  local now = now_ts()
  local started = tonumber(redis.call('HGET', KEYS[1], 'started_ts') or '')
  local created = tonumber(redis.call('HGET', KEYS[1], 'created_rts') or '') or now
  if started then observe(KEYS[4], kind, 'running', now - started) end
  return {'OK', kind, tostring(now - created), started and tostring(now - started) or ''}
end
return 'OK'
"""
)

# KEYS: job, job counters, durations. ARGV: max attempts, ttl, started_at, deadline_ts, worker,
# now, start token.
# QUEUED/RUNNING -> RUNNING with one more attempt; returns the record's fields, false when the
# job must not run (unknown, finished, cancelled), 'EXHAUSTED' past the last attempt,
# 'TIMEOUT' for a RUNNING job past its deadline (its worker died long ago: not run again). The
# token makes a call that redis-py re-sends after a lost reply count its attempt once.
_START = (
    _OBSERVE
    + """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'QUEUED' and st ~= 'RUNNING' then return false end
if redis.call('HGET', KEYS[1], 'start_token') == ARGV[7] then
  return redis.call('HGETALL', KEYS[1])
end
if st == 'RUNNING' then
  local deadline = tonumber(redis.call('HGET', KEYS[1], 'deadline_ts') or '')
  if deadline and deadline < tonumber(ARGV[6]) then return 'TIMEOUT' end
end
local n = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') + 1
if n > tonumber(ARGV[1]) then return 'EXHAUSTED' end
local now = now_ts()
redis.call('HSET', KEYS[1], 'status', 'RUNNING', 'attempts', n, 'started_at', ARGV[3],
           'deadline_ts', ARGV[4], 'worker', ARGV[5], 'start_token', ARGV[7],
           'started_ts', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[2])
if n == 1 then
  local kind = redis.call('HGET', KEYS[1], 'kind') or 'unknown'
  redis.call('HINCRBY', KEYS[2], kind .. '|RUNNING', 1)
  local created = tonumber(redis.call('HGET', KEYS[1], 'created_rts') or '')
  if created then observe(KEYS[3], kind, 'queued', now - created) end
end
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: lock. ARGV: job id, lock ttl, job key prefix. Returns the id of the job holding it.
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
  local st = redis.call('HGET', ARGV[3] .. cur, 'status')
  if st == 'QUEUED' or st == 'RUNNING' then return cur end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def now_iso() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def train_lock_name(
    dataset: str, protocol: str, adapt: str = "auto", features: str = "default"
) -> str:
    """The single-flight lock of a training: one per (dataset, protocol, adaptation,
    features), the choices that change the model (the dataset last: it may hold ``:``)."""
    return f"train:{protocol}:{adapt}:{features}:{dataset}"


def new_id() -> str:
    """A fresh job id (also the Celery task id)."""
    return uuid.uuid4().hex


class JobStore:
    """Job records under ``prefix`` in the Redis behind ``client`` (a redis-py client)."""

    def __init__(self, client, prefix: str = "ser:", ttl: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = int(ttl)
        self.logged = True  # one log line per transition (not for a rehearsal's job)
        self._transition = client.register_script(_TRANSITION)
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    # -- keys ---------------------------------------------------------------------------------
    def key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def done_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:done"

    @property
    def counters_key(self) -> str:
        """Transitions counted by "kind|status" (see DURATION_BUCKETS)."""
        return f"{self.prefix}metrics:jobs"

    @property
    def durations_key(self) -> str:
        """Queued and running seconds, as histogram buckets by "kind|phase|le"."""
        return f"{self.prefix}metrics:seconds"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}jobs"

    def lock_key(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    # -- writes -------------------------------------------------------------------------------
    def create(
        self,
        kind: str,
        params: dict | None = None,
        job_id: str | None = None,
        total: int = 0,
        also: Callable[[Any], None] | None = None,
    ) -> dict:
        """A new QUEUED job record (``total``: its known amount of work); returns it.

        ``also(pipe)`` adds commands to the same transaction (the job's outbox entry)."""
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        job_id = job_id or new_id()
        now = time.time()
        fields = {
            "id": job_id,
            "kind": kind,
            "status": QUEUED,
            "created_at": now_iso(),
            "created_ts": repr(now),
            "progress_done": "0",
            "progress_total": str(int(total)),
            "attempts": "0",
            "params": json.dumps(params or {}),
        }
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key(job_id), mapping=fields)
        pipe.eval(_STAMP, 1, self.key(job_id))
        pipe.expire(self.key(job_id), self.ttl)
        pipe.zadd(self.index_key, {job_id: now})
        pipe.zremrangebyscore(self.index_key, "-inf", now - self.ttl)
        pipe.hincrby(self.counters_key, f"{kind}|{QUEUED}", 1)
        if also is not None:
            also(pipe)
        pipe.execute()
        if self.logged:
            log.info("job %s %s QUEUED", job_id, kind)
        return self._decode(fields)

    def discard(self, job_id: str) -> None:
        """Remove a record that was never enqueued (e.g. lost a single-flight race)."""
        kind = self.client.hget(self.key(job_id), "kind")
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.key(job_id), self.done_key(job_id))
        pipe.zrem(self.index_key, job_id)
        if kind is not None:  # its creation was counted: a job that never was is not
            pipe.hincrby(self.counters_key, f"{as_str(kind)}|{QUEUED}", -1)
        pipe.execute()

    def _move(
        self, job_id: str, allowed: tuple[str, ...], status: str, pipe=None, **fields: Any
    ) -> str | None:
        """Atomically set ``status`` (and fields) if the current status is in ``allowed``.

        Returns "OK", the blocking current status, or None for an unknown job; with ``pipe``
        (a pipeline the caller executes) the transition is queued there and None returned.
        """
        flat: list[str] = []
        for name, value in fields.items():
            flat += [name, value if isinstance(value, str) else json.dumps(value)]
        terminal = "1" if status in TERMINAL else "0"
        keys = [self.key(job_id), self.done_key(job_id), self.counters_key, self.durations_key]
        args = ["," + ",".join(allowed) + ",", status, str(self.ttl), terminal, *flat]
        if pipe is not None:  # plain EVAL: a registered script costs a SCRIPT EXISTS per pipeline
            pipe.eval(_TRANSITION, len(keys), *keys, *args)
            return None
        return self.outcome(job_id, status, self._transition(keys=keys, args=args))

    def outcome(self, job_id: str, status: str, reply) -> str | None:
        """A transition script's reply as "OK", the blocking status or None; a job that just
        ended gets its log line (id, kind, status, seconds since created and running). For
        a transition queued in a pipeline, pass its reply here after executing it."""
        if isinstance(reply, Exception):  # the queued script failed (raise_on_error=False)
            raise reply
        if isinstance(reply, list):  # [OK, kind, total seconds, running seconds or ""]
            kind, total, ran = (as_str(v) for v in reply[1:4])
            ran_part = f" ran {float(ran):.3f}s" if ran else ""
            if self.logged:
                log.info("job %s %s %s after %.3fs%s", job_id, kind, status, float(total), ran_part)
            return "OK"
        return None if reply is None else as_str(reply)

    def start(self, job_id: str, time_limit: float, worker: str = "") -> dict | None:
        """Mark a job RUNNING for a worker; None when it must not run (cancelled, finished,
        unknown or delivered too often: the last case fails it)."""
        return self.start_reading(job_id, time_limit, worker)[0]

    def start_reading(
        self, job_id: str, time_limit: float, worker: str = "", reads: Callable | None = None
    ) -> tuple[dict | None, list]:
        """:meth:`start`, with ``reads(pipe)`` queuing more reads in the same round trip
        (a task's model pointer and upload); returns (record or None, their results)."""
        now = time.time()
        deadline = now + time_limit + DEADLINE_MARGIN
        pipe = self.client.pipeline(transaction=False)
        args = [str(MAX_ATTEMPTS), str(self.ttl), now_iso(), repr(deadline), worker, repr(now)]
        keys = [self.key(job_id), self.counters_key, self.durations_key]
        pipe.eval(_START, len(keys), *keys, *args, uuid.uuid4().hex)
        if reads is not None:
            reads(pipe)
        res, *extra = pipe.execute()
        if isinstance(res, list):  # HGETALL's flat [field, value, ...] from the script
            rec = self._record(job_id, dict(zip(res[::2], res[1::2])))
            if rec is not None and self.logged:
                log.info(
                    "job %s %s RUNNING attempt %d on %s",
                    job_id,
                    rec["kind"],
                    rec["attempts"],
                    worker or "?",
                )
            return rec, extra
        verdict = as_str(res) if res is not None else None
        if verdict == "EXHAUSTED":
            self.fail(
                job_id,
                {
                    "CODE": "WORKER_LOST",
                    "MESSAGE": f"the job's worker process died {MAX_ATTEMPTS} times; giving up",
                },
            )
        elif verdict == "TIMEOUT":
            self.fail(job_id, TIMEOUT_ERROR)
        return None, extra

    def progress(self, job_id: str, done: int, total: int) -> str | None:
        """Record progress of a RUNNING job; returns its current status (CANCELLED: stop)."""
        res = self._move(
            job_id,
            (RUNNING,),
            RUNNING,
            progress_done=str(int(done)),
            progress_total=str(int(total)),
        )
        return RUNNING if res == "OK" else res

    def succeed(self, job_id: str, result: dict, pipe=None) -> bool:
        """RUNNING -> SUCCEEDED with ``result``; False if the job was cancelled meanwhile
        (or, queued in ``pipe``, not known yet)."""
        res = self._move(
            job_id, (RUNNING,), SUCCEEDED, pipe, finished_at=now_iso(), result=json.dumps(result)
        )
        return res == "OK"

    def fail(self, job_id: str, error: dict, http_status: int = 500) -> bool:
        """QUEUED/RUNNING -> FAILED with ``error`` = {"CODE", "MESSAGE"}."""
        res = self._move(
            job_id,
            ACTIVE,
            FAILED,
            finished_at=now_iso(),
            error=json.dumps(error),
            http_status=str(int(http_status)),
        )
        return res == "OK"

    def cancel(self, job_id: str) -> tuple[bool, dict | None]:
        """QUEUED/RUNNING -> CANCELLED; returns (changed, record after the attempt)."""
        res = self._move(job_id, ACTIVE, CANCELLED, finished_at=now_iso())
        return res == "OK", self.get(job_id)

    # -- reads --------------------------------------------------------------------------------
    def get(self, job_id: str) -> dict | None:
        """The decoded record, or None for an unknown (or expired) id."""
        if not job_id or len(job_id) > 64:
            return None
        return self._record(job_id, self.client.hgetall(self.key(job_id)))

    def _record(self, job_id: str, raw: dict) -> dict | None:
        """The record from its raw hash (a RUNNING job past its deadline is failed first)."""
        if not raw:
            return None
        rec = self._decode({as_str(k): as_str(v) for k, v in raw.items()})
        if rec["status"] == RUNNING and rec.get("deadline_ts") and time.time() > rec["deadline_ts"]:
            # The worker died or hit its hard time limit without reporting: say so, once.
            self.fail(job_id, TIMEOUT_ERROR)
            return self.get(job_id)
        return rec

    def status(self, job_id: str) -> str | None:
        """Just the status (None for an unknown job): one field, no decoding."""
        raw = self.client.hget(self.key(job_id), "status")
        return None if raw is None else as_str(raw)

    def wait(self, job_id: str, timeout: float, rec: dict | None = None) -> dict | None:
        """The record once the job has finished, or as it is after ``timeout`` seconds
        (``rec``: the record as the caller just read it, saving the first read)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            rec = rec or self.get(job_id)
            if rec is None or rec["status"] in TERMINAL:
                return rec
            left = deadline - time.monotonic()
            if left <= 0:
                return rec
            # Wake up at the finish token, but at least every 5 s to notice lost workers;
            # the record is read in the same round trip (Redis runs it after the BLMOVE).
            # Never under a millisecond: Redis (6.2 at least) truncates a blocking timeout to
            # whole milliseconds, and 0 blocks for ever.
            key = self.done_key(job_id)
            pipe = self.client.pipeline(transaction=False)
            pipe.blmove(key, key, min(max(left, MIN_BLOCK), 5.0), "RIGHT", "LEFT")
            pipe.hgetall(self.key(job_id))
            rec = self._record(job_id, pipe.execute()[1])
            if rec is None:
                return None

    def list(self, kind: str | None = None, status: str | None = None, limit: int = 50) -> list:
        """Recent jobs, newest first, optionally filtered by kind and status."""
        out: list[dict] = []
        start, page = 0, 200
        while len(out) < limit and start < LIST_SCAN_MAX:
            ids = [
                as_str(i) for i in self.client.zrevrange(self.index_key, start, start + page - 1)
            ]
            if not ids:
                break
            pipe = self.client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self.key(job_id))
            gone = []
            for job_id, raw in zip(ids, pipe.execute()):
                if not raw:
                    gone.append(job_id)
                    continue
                rec = self._decode({as_str(k): as_str(v) for k, v in raw.items()})
                if (kind is None or rec["kind"] == kind) and (
                    status is None or rec["status"] == status
                ):
                    out.append(rec)
            if gone:
                self.client.zrem(self.index_key, *gone)
            start += page
        return out[:limit]

    # -- single flight ------------------------------------------------------------------------
    def acquire(self, name: str, job_id: str, ttl: int) -> str:
        """Take lock ``name`` for ``job_id`` unless an active job holds it; returns the holder."""
        res = self._acquire(
            keys=[self.lock_key(name)], args=[job_id, str(int(ttl)), f"{self.prefix}job:"]
        )
        return as_str(res)

    def release(self, name: str, job_id: str) -> None:
        """Free lock ``name`` if ``job_id`` holds it."""
        self._release(keys=[self.lock_key(name)], args=[job_id])

    def metrics(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], dict]]:
        """({(kind, status): transitions}, {(kind, phase): {"buckets": {le: n}, "sum", "count"}})
        over every process that ever moved a job through this Redis."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.counters_key)
        pipe.hgetall(self.durations_key)
        raw_counts, raw_hist = pipe.execute()
        counts = {}
        for field, value in raw_counts.items():
            kind, _, status = as_str(field).partition("|")
            counts[(kind, status)] = int(value)
        hist: dict[tuple[str, str], dict] = {}
        for field, value in raw_hist.items():
            kind, phase, name = as_str(field).split("|", 2)
            entry = hist.setdefault((kind, phase), {"buckets": {}, "sum": 0.0, "count": 0})
            if name == "sum":
                entry["sum"] = float(value)
            elif name == "count":
                entry["count"] = int(value)
            else:
                entry["buckets"][name] = int(value)
        return counts, hist

    # -- decoding -----------------------------------------------------------------------------
    @staticmethod
    def _decode(fields: dict[str, str]) -> dict:
        rec: dict[str, Any] = dict(fields)
        for name in ("params", "result", "error"):
            if name in rec:
                rec[name] = json.loads(rec[name])
        for name in ("progress_done", "progress_total", "attempts", "http_status"):
            if name in rec:
                rec[name] = int(rec[name])
        for name in ("created_ts", "deadline_ts", "started_ts"):
            if name in rec:
                rec[name] = float(rec[name])
        return rec
