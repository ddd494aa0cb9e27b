"""What every task's work needs: the worker process's :class:`Context` (settings and its
Redis-backed stores), how a failure lands in a job record, and who is working.

The work behind the tasks (worker.train, worker.predict, worker.score) is plain functions of
a Context, testable without Celery. Each moves the job record QUEUED -> RUNNING ->
SUCCEEDED/FAILED, reports progress, and never raises for a domain error: the error lands in
the job record with its code.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import redis
from celery.exceptions import Reject, SoftTimeLimitExceeded

from ser import config
from ser.contract import PREDICT_QUEUE, TASK_SCORE_CHUNK
from ser.errors import SerError
from ser.ml.bundle import Bundle
from ser.service import jobs
from ser.service.feature_cache import RedisCache
from ser.service.heartbeats import heartbeats
from ser.service.outbox import Outbox
from ser.service.redis import blob_key, redis_client
from ser.service.registry import BundleCache, Registry
from ser.service.results import ResultStore
from ser.service.speakers import SpeakerStore

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.25  # seconds between progress writes (and cancellation checks)
# (task name, args[, pipe=]): publish one task message through the outbox; with ``pipe`` it
# joins that transaction (worker.tasks.send)
Send = Callable[..., None]


class JobCancelled(Exception):
    """The job was cancelled while it ran."""


@dataclass
class Context:
    """What a worker process needs: settings and its Redis-backed stores (built per process)."""

    settings: config.Settings = field(default_factory=config.load)

    @cached_property
    def redis(self):
        return redis_client(self.settings.redis_url)

    @cached_property
    def jobs(self) -> jobs.JobStore:
        return jobs.JobStore(self.redis, self.settings.key_prefix, self.settings.job_ttl)

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.redis, self.settings.key_prefix)

    @cached_property
    def models(self) -> BundleCache:
        return BundleCache(self.registry, self.settings.require_secret_key(), Bundle.from_bytes)

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.redis, self.settings.key_prefix)

    @cached_property
    def results(self) -> ResultStore:
        return ResultStore(self.redis, self.settings.key_prefix, self.settings.job_ttl)

    @cached_property
    def speakers(self) -> SpeakerStore:
        # A job's "clip added" mark lives as long as the job record (its redeliveries).
        return SpeakerStore(self.redis, self.settings.key_prefix, self.settings.job_ttl)

    @cached_property
    def feature_cache(self) -> RedisCache:
        # Shared by every replica: a recording is featurized once per feature-spec version.
        return RedisCache(self.redis, self.settings.key_prefix)

    def blob_key(self, blob_id: str) -> str:
        return blob_key(self.settings.key_prefix, blob_id)


def fail(ctx: Context, job_id: str, exc: Exception) -> None:
    """Record ``exc`` in the job record with its code (a lost Redis requeues the task)."""
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        # Redis (broker and job store) went away mid-job: not the job's fault, and the job
        # record cannot be written anyway. Requeue the message instead of failing the job
        # (or acknowledging it once Redis is back): job records make a re-run harmless.
        raise Reject(f"Redis unavailable: {exc}", requeue=True) from exc
    if not isinstance(exc, SerError | SoftTimeLimitExceeded):
        log.exception("job %s failed unexpectedly", job_id)
    ctx.jobs.fail(job_id, *error_of(exc, ctx.settings.data_dir))


def without_root(message: str, data_dir) -> str:
    """``message`` naming paths relative to the data root: the domain errors do already;
    this keeps an unexpected one (an OSError's text, a bug's) from showing the server's
    absolute path. Only the root's absolute forms are replaced, and only as whole path
    components ("/srv/data/x.wav" -> "x.wav", "/srv/data" -> "."; "/srv/data2" and the word
    "data" stay as they are)."""
    root = Path(data_dir)
    for base in sorted({str(root.absolute()), str(root.resolve())}, key=len, reverse=True):
        base = base.rstrip("/")
        if not base:  # the data root is "/": nothing to take away
            continue
        message = re.sub(re.escape(base) + r"/+", "", message)
        message = re.sub(re.escape(base) + r"(?![\w\-/]|\.\w)", ".", message)
    return message


def chunk_error(exc: Exception, data_dir) -> dict:
    """The error of every file of a chunk that failed as a whole (a bug, the time limit), its
    message naming paths relative to the data root ``data_dir``."""
    message = without_root(f"{type(exc).__name__}: {exc}", data_dir)
    return {"CODE": "CHUNK_FAILED", "MESSAGE": message[:300]}


def error_of(exc: Exception, data_dir=None) -> tuple[dict, int]:
    """The error record of ``exc`` and its HTTP status: a domain error's own; the soft time
    limit JOB_TIMEOUT (504); anything else INTERNAL_ERROR (500). With ``data_dir`` the
    message names paths relative to it (:func:`without_root`)."""
    if isinstance(exc, SerError):
        error, status = exc.to_dict(), exc.http_status
    elif isinstance(exc, SoftTimeLimitExceeded):
        error, status = {"CODE": "JOB_TIMEOUT", "MESSAGE": "the job exceeded its time limit"}, 504
    else:
        error = {"CODE": "INTERNAL_ERROR", "MESSAGE": f"{type(exc).__name__}: {exc}"[:500]}
        status = 500
    if data_dir is not None:
        error = dict(error, MESSAGE=without_root(str(error.get("MESSAGE", "")), data_dir))
    return error, status


def requeued() -> bool:
    """Whether the exception being raised (in a ``finally``) requeues the task."""
    exc = sys.exc_info()[1]
    return exc is not None and bool(getattr(exc, "requeue", False))


def host() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def predict_processes(ctx: Context) -> int:
    """Pool processes online that consume the predict queue (from the worker heartbeats)."""
    total = sum(
        int(beat.get("concurrency") or 1)
        for beat in heartbeats(ctx.redis, ctx.settings.key_prefix)
        if PREDICT_QUEUE in (beat.get("queues") or [])
    )
    return max(1, total)


def liveness_deadline(ctx: Context) -> float:
    """When a bulk job with no chunk finishing counts as lost: a chunk of a dead replica comes
    back after the visibility timeout, then runs for at most the task time limit."""
    s = ctx.settings
    return time.time() + s.visibility_timeout + s.predict_time_limit + jobs.DEADLINE_MARGIN


def send_once(
    ctx: Context,
    job_id: str,
    flag: str,
    msgs: list[dict],
    send: Send | None,
    also: Callable | None = None,
) -> int:
    """Send the chunk messages ``msgs`` of a running job once, however many tasks try: the
    messages (with their outbox entries), ``also(pipe)``'s writes and ``flag`` go in one
    transaction that WATCHes the flag. Returns the chunks sent (0: already sent, or the job
    is not running)."""
    if send is None:
        raise RuntimeError("this task needs a way to publish its job's chunks")
    if ctx.redis.exists(flag) or ctx.jobs.status(job_id) != jobs.RUNNING:
        return 0
    with ctx.redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(flag)
            if pipe.exists(flag):
                return 0
            pipe.multi()
            if also is not None:
                also(pipe)
            for msg in msgs:
                send(TASK_SCORE_CHUNK, [job_id, msg], pipe=pipe)
            pipe.set(flag, "1", ex=ctx.settings.job_ttl)
            pipe.execute()
        except redis.WatchError:  # another task sent them meanwhile
            return 0
    return len(msgs)
