"""Rehearsals: one prediction job run through a process's own code at start-up, before real
work arrives, so that the first real request does not pay the process's first-call costs
(code run for the first time, Redis scripts, Prometheus series, memory first touched).

A rehearsal's job lives on keys of its own, under ``<prefix>warm-up:<who>:``: no job listing,
counter or metric of the service sees it. Its keys are deleted when it ends, and each expires
on its own within :data:`TTL` seconds should the process die first: the keys one job shares
with others (the job index, the counters, the outbox...) are created with that TTL before the
job writes into them (a write into an existing hash, sorted set or list keeps its TTL).
Used by the worker's pool processes (worker.predict.rehearse) and the API's processes
(api.warmup.rehearse).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ser.config import Settings

NAMESPACE = "warm-up"
TTL = 60  # seconds
PLACEHOLDER = f"{NAMESPACE}|{NAMESPACE}|count"  # a hash field: "kind|status", "kind|phase|count"


def key_prefix(prefix: str, who: str) -> str:
    """The key prefix of ``who``'s rehearsal under the service's ``prefix``."""
    return f"{prefix}{NAMESPACE}:{who}:"


def settings_for(settings: Settings, who: str) -> Settings:
    """``settings`` for ``who``'s rehearsal: its key prefix, and records and uploads that
    expire within :data:`TTL`."""
    prefix = key_prefix(settings.key_prefix, who)
    return settings.model_copy(update={"key_prefix": prefix, "job_ttl": TTL, "blob_ttl": TTL})


def seed(
    client, hashes: Sequence[str] = (), sorted_sets: Sequence[str] = (), lists: Sequence[str] = ()
) -> list[str]:
    """Create these keys with a placeholder and a TTL of :data:`TTL` (one round trip), before
    a rehearsal's job writes into them; returns them (to delete when it ends). Nothing reads a
    rehearsal's keys as a whole (no listing, metrics or outbox sweep runs on its prefix); the
    hashes' placeholder still parses as a job counter or a duration's count."""
    pipe = client.pipeline(transaction=False)
    for key in hashes:
        pipe.hset(key, PLACEHOLDER, 1)
    for key in sorted_sets:  # scored now: a store trimming old members keeps it
        pipe.zadd(key, {NAMESPACE: time.time()})
    for key in lists:
        pipe.rpush(key, NAMESPACE)
    keys = [*hashes, *sorted_sets, *lists]
    for key in keys:
        pipe.expire(key, TTL)
    pipe.execute()
    return keys


def seed_job_keys(client, jobs, outbox=None, lists=()) -> list[str]:
    """:func:`seed` the keys a job of ``jobs`` (ser.service.jobs.JobStore) shares with other
    jobs, and ``outbox``'s (ser.service.outbox.Outbox) when its task is recorded there."""
    hashes = [jobs.counters_key, jobs.durations_key]
    sorted_sets = [jobs.index_key]
    if outbox is not None:
        hashes += [outbox.msg_key, outbox.miss_key]
        sorted_sets.append(outbox.index_key)
    return seed(client, hashes, sorted_sets, lists)
