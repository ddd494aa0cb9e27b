"""Every Celery setting of the service, each with the reason it is set.

Light on purpose: the producer (worker.producer, which the API imports) builds its Celery app
from here, so it imports Celery and ser.config only (no task code, no audio libraries).
"""

from __future__ import annotations

from celery import Celery

from ser.config import Settings
from ser.contract import (
    PREDICT_QUEUE,
    TASK_FEATURIZE_CHUNK,
    TASK_PREDICT,
    TASK_SCORE,
    TASK_SCORE_CHUNK,
    TASK_TRAIN,
    TRAIN_QUEUE,
)


def restore_interval(visibility_timeout: int) -> tuple[int, int]:
    """(seconds between sweeps, scan every Nth sweep) for kombu's unacked-message restore.

    A message whose worker node died comes back after the visibility timeout plus up to one
    sweep period (interval x throttle): keep that period about a tenth of the timeout, so a
    short timeout (tests: seconds) is not undone by kombu's 100 s default period.
    """
    interval = max(1, min(10, visibility_timeout // 20))
    throttle = 1 if visibility_timeout < 1200 else 10
    return interval, throttle


def soft_limit(hard: int) -> int:
    """The soft time limit for a hard one: 90 %, leaving time to record the failure."""
    return max(1, int(hard * 0.9))


def make_config(settings: Settings) -> dict:
    """The Celery configuration mapping for ``settings``."""
    longest = max(settings.train_time_limit, settings.predict_time_limit)
    if settings.visibility_timeout <= longest:
        raise ValueError(
            f"SER_VISIBILITY_TIMEOUT ({settings.visibility_timeout}s) must exceed every task "
            f"time limit ({longest}s), or Redis redelivers tasks that are still running"
        )
    interval, throttle = restore_interval(settings.visibility_timeout)
    transport = {
        # Redis redelivers an unacknowledged message after this; above every time limit,
        # or a long training would be started a second time while the first still runs.
        # It is also how long the chunks of a whole replica that died wait before another
        # replica takes them (README: "Bulk scoring").
        "visibility_timeout": settings.visibility_timeout,
        # Sweep for such abandoned messages often enough that the timeout is what counts.
        "unacked_restore_interval": interval,
        "unacked_restore_throttle": throttle,
        # Fail fast when Redis is down (the API answers 503 instead of hanging).
        "socket_connect_timeout": 3,
    }
    conf = {
        "broker_url": settings.redis_url,
        # No result backend: a job's result lives in its job record (ser.service.jobs), the
        # source of truth for /jobs; storing every task's return value would double writes.
        "task_ignore_result": True,
        # JSON only: a pickle message from anyone who can reach Redis would run code.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Acknowledge after the task ran, so a worker killed mid-task does not lose it ...
        "task_acks_late": True,
        # ... and requeue it when the worker process dies (jobs cap retries at MAX_ATTEMPTS).
        "task_reject_on_worker_lost": True,
        # A failed or timed-out task is acknowledged (recorded FAILED), never redelivered forever.
        "task_acks_on_failure_or_timeout": True,
        # One reserved message per process: a long training never holds back a prediction
        # that another process could run now.
        "worker_prefetch_multiplier": 1,
        # Defaults for tasks without their own limits (predictions and scoring chunks).
        "task_soft_time_limit": soft_limit(settings.predict_time_limit),
        "task_time_limit": settings.predict_time_limit,
        # Training gets its own, longer limits.
        "task_annotations": {
            TASK_TRAIN: {
                "soft_time_limit": soft_limit(settings.train_time_limit),
                "time_limit": settings.train_time_limit,
            },
        },
        # Separate queues so a long training never blocks predictions.
        "task_routes": {
            TASK_TRAIN: {"queue": TRAIN_QUEUE},
            TASK_PREDICT: {"queue": PREDICT_QUEUE},
            # Bulk work spreads over every replica that serves predictions.
            TASK_SCORE: {"queue": PREDICT_QUEUE},
            TASK_SCORE_CHUNK: {"queue": PREDICT_QUEUE},
            TASK_FEATURIZE_CHUNK: {"queue": PREDICT_QUEUE},
        },
        "task_default_queue": PREDICT_QUEUE,
        "broker_transport_options": transport,
        # Anything publishing through Celery itself must not hang on a dead broker: few,
        # quick retries. (The service's own publishes are Redis writes in its transactions,
        # worker/producer.py: a dead Redis is a 503 at once.)
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "broker_connection_timeout": 3,
        # Workers keep retrying the broker at start-up (compose starts them with Redis).
        "broker_connection_retry_on_startup": True,
        # On a lost broker connection, let running tasks finish: cancelling them lost the
        # message when Redis came back before the cancellation's acknowledgement
        # (tests/stack/reliability). A task whose Redis writes fail requeues itself (Reject), an
        # ack that cannot be sent leaves the message to be redelivered, and job records make
        # a second run of a finished job a no-op.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # librosa/numba warm-up runs in worker_process_init; the default 4 s would kill
        # a child that is still compiling on a busy machine.
        "worker_proc_alive_timeout": 120,
        # Bound memory growth (leaks in native decoders): recycle a child above ~1.5 GB.
        "worker_max_memory_per_child": 1_500_000,
        # Task events are not used (job records carry progress); saves broker traffic.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "timezone": "UTC",
        "enable_utc": True,
    }
    if settings.redis_url.startswith("redis://"):
        # kombu's Redis transport with one redis-py client per channel instead of one per
        # command (worker/transport.py: a fifth of a worker node's main-process CPU). Only for
        # plain redis://: kombu picks TLS defaults for rediss:// by the transport's name.
        conf["broker_transport"] = "worker.transport:Transport"
    return conf


def make_celery(settings: Settings, include: list[str] | None = None):
    """A Celery app for ``settings``: the API sends with it, the worker runs it."""
    app = Celery("ser", include=include or [])
    app.conf.update(make_config(settings))
    return app
