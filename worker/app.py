"""The Celery app of the workers (``celery -A worker.app worker``), with per-process set-up.

- Each pool process builds its own Redis clients after the fork (``context()``), pays the
  librosa/numba warm-up once and loads the current model before taking its first task.
- Each pool process then marks itself warm in Redis for /ready, and renews that mark every
  10 s until it exits (ser.service.heartbeats).
- The main process runs the outbox sweeper (worker/sweeper.py), which republishes task
  messages the broker lost, and keeps its heartbeat (ser.service.heartbeats: one hash entry
  per node, lapsing 30 s after its last beat) that ``/health`` reads to count the workers
  online and the queues they serve.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
import uuid

# One BLAS/OpenMP thread per worker process, set before numpy loads: the pool already runs one
# process per core, and letting each also spawn a thread per core oversubscribes the CPU
# (measured on 2 cores: prediction throughput 42 -> 112 jobs/s, warm training 10 s -> 1 s).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import redis  # noqa: E402
from celery import signals  # noqa: E402
from celery.exceptions import Reject  # noqa: E402

from ser import config  # noqa: E402
from ser.contract import TASK_WARM_UP  # noqa: E402
from ser.features import warm_up  # noqa: E402
from ser.service import heartbeats  # noqa: E402
from ser.service.outbox import OUTBOX_DONE  # noqa: E402
from ser.service.redis import redis_client  # noqa: E402
from worker.celeryconfig import make_celery  # noqa: E402
from worker.context import Context  # noqa: E402
from worker.predict import rehearse  # noqa: E402
from worker.producer import TaskMessages  # noqa: E402
from worker.sweeper import Sweeper  # noqa: E402

log = logging.getLogger(__name__)
# The service's own INFO lines (a job's transitions, a process's warm-up) are logged whatever
# Celery's --loglevel: `ser up` runs the workers at WARNING, so Celery's two lines per task
# (received, succeeded with its return value) cost nothing on the hot path.
for _name in ("ser", "worker"):
    logging.getLogger(_name).setLevel(logging.INFO)
settings = config.load()
app = make_celery(settings, include=["worker.tasks"])
# This node's run: drawn when its main process starts, inherited by its pool processes; the
# heartbeat and the warm marks carry it, so a restart under the same name and pid (a
# container's PID 1) never counts the previous run's warm processes.
RUN_ID = uuid.uuid4().hex


class RequeueOnRedisLoss(app.Task):
    """Base of every task: a Redis connection error escaping a task (Redis stopped or
    restarting) requeues its message instead of failing it. A failed acks_late task is
    acknowledged, and an acknowledgement sent once Redis is back dropped the job
    (tests/stack/reliability/test_faults.py): job records make the second run harmless."""

    abstract = True

    def __call__(self, *args, **kwargs):
        try:
            result = super().__call__(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise Reject(f"Redis unavailable: {exc}", requeue=True) from exc
        except Reject:
            raise
        except Exception:
            _outbox_done(self.request.id)  # acknowledged as failed: never republish it
            raise
        if not (isinstance(result, dict) and result.get(OUTBOX_DONE)):
            _outbox_done(self.request.id)
        return result


app.Task = RequeueOnRedisLoss


def _outbox_done(task_id: str | None) -> None:
    """The task ran: drop its outbox entry (ser.service.outbox). Best effort: an entry left behind
    is dropped by the sweeper, which finds its job no longer waiting for it."""
    if not task_id:
        return
    try:
        context().outbox.done(task_id)
    except Exception as exc:
        log.warning("could not clear outbox entry %s: %s", task_id, exc)


_context = None
_stop = threading.Event()


def context():
    """This process's worker.context.Context (created on first use, after any fork)."""
    global _context
    if _context is None:
        _context = Context(settings)
    return _context


# glibc malloc in a pool process: arrays up to 32 MB from the heap rather than fresh mmaps,
# and up to 128 MB of freed heap kept rather than given back after every task. With glibc's
# defaults a pool process kept returning its arrays' pages and faulting them in again: a spread
# 1-hour recording's pass 2 took 0.19-0.65 M page faults and 0.4-1.3 CPU s in the kernel
# (5-15 % of its CPU) against 4-336 faults and 0.02-0.06 s with these (bench/RESULTS.md,
# instrumented runs of bench/segments.py).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_MMAP_BYTES = 32 * 1024 * 1024  # glibc's largest mmap threshold on 64-bit
MALLOC_TRIM_BYTES = 128 * 1024 * 1024


def tune_malloc() -> bool:
    """Set this process's malloc thresholds (glibc only; MALLOC_*_ variables set by the
    operator win). Returns whether they were set."""
    if "MALLOC_TRIM_THRESHOLD_" in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): its own defaults
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_BYTES)
    )


@signals.worker_process_init.connect
def _init_process(**_kwargs) -> None:
    global _context
    _context = None  # never reuse connections inherited from the parent
    tune_malloc()
    t0 = time.perf_counter()
    model, warmed = None, False
    try:
        if not settings.skip_warmup:  # (skipped: ready as configured, without the warm-up)
            warm_up()
        warmed = True
    except Exception:  # a warm-up problem must not keep the process from serving
        log.exception("warm-up failed; the first task will pay the start-up cost")
    if warmed and not settings.skip_warmup:
        try:
            ctx = context()
            if ctx.registry.current() is not None:
                model, _ = ctx.models.get()
                # a whole prediction job's path with the model's own features and its
                # classification, on keys of its own (worker.predict.rehearse)
                if not rehearse(ctx, f"{RUN_ID}:{os.getpid()}"):
                    log.warning("the warm-up prediction did not succeed")
        except Exception:  # Redis down, a model refused: the next task tries (and says why)
            log.exception("the current model could not be preloaded")
    _mark(None, model, warmed)
    log.info("pool process %d warm in %.2fs", os.getpid(), time.perf_counter() - t0)
    threading.Thread(
        target=_renew_mark, args=(model, warmed), name="ser-warm-mark", daemon=True
    ).start()


def _mark(client, model: str | None = None, warmed: bool = True) -> None:
    """Put this process's warm mark in Redis (readiness counts it from then on), with
    ``client`` (None: this process's context's)."""
    try:
        heartbeats.mark_warm(client or context().redis, settings.key_prefix, RUN_ID, model, warmed)
    except Exception as exc:  # Redis down: not ready, which is true; retried by the renewal
        log.warning("could not mark process %d warm: %s", os.getpid(), exc)


def _renew_mark(model: str | None, warmed: bool, every: float = heartbeats.HEARTBEAT_EVERY):
    """Renew this process's warm mark every ``every`` seconds until it exits (a mark lapses
    unless renewed; renewing also writes back a mark Redis lost or never took)."""
    client = redis_client(settings.redis_url, socket_timeout=5)  # this thread's own
    while not _unmarking.wait(every):
        with _mark_lock:
            if not _unmarking.is_set():
                _mark(client, model, warmed)


_unmarking = threading.Event()  # this pool process is exiting: its mark is removed, not renewed
_mark_lock = threading.Lock()


@signals.worker_process_shutdown.connect
def _unmark(**_kwargs) -> None:
    with _mark_lock:
        _unmarking.set()
    try:
        heartbeats.unmark_warm(context().redis, settings.key_prefix, RUN_ID)
    except Exception:  # best effort: an unrenewed mark lapses anyway
        pass


def _beat(hostname: str, queues: list[str], concurrency) -> None:
    client = redis_client(settings.redis_url)
    prefix = settings.key_prefix
    info = {
        "hostname": hostname,
        "queues": queues,
        "concurrency": concurrency,
        "pid": os.getpid(),
        "run": RUN_ID,
        "machine": heartbeats.machine(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    while not _stop.is_set():
        try:
            heartbeats.beat(client, prefix, hostname, info)
        except Exception as exc:  # Redis down: keep trying, /health will say so
            log.warning("heartbeat failed: %s", exc)
        _stop.wait(heartbeats.HEARTBEAT_EVERY)
    try:
        heartbeats.forget(client, prefix, hostname)
    except Exception:
        pass


@signals.worker_ready.connect
def _start_heartbeat(sender=None, **_kwargs) -> None:
    queues = sorted(sender.app.amqp.queues.consume_from) if sender is not None else []
    hostname = getattr(sender, "hostname", None) or os.uname().nodename
    concurrency = getattr(getattr(sender, "pool", None), "num_processes", None)
    thread = threading.Thread(
        target=_beat, args=(hostname, queues, concurrency), name="ser-heartbeat", daemon=True
    )
    thread.start()


@signals.worker_ready.connect
def _first_delivery(sender=None, **_kwargs) -> None:
    """Send this worker one no-op task per queue it consumes: Celery's first delivery (the
    consumer's first-use costs, and those of the one pool process that runs it) is then paid
    before the first job. One message reaches one pool process, on whichever node consumes it
    first; the other processes pay their own first delivery. Best effort: without Redis the
    first job pays it."""
    if sender is None or settings.skip_warmup:
        return
    try:
        client = redis_client(settings.redis_url)
        messages = TaskMessages(app)
        for queue in sorted(sender.app.amqp.queues.consume_from):
            messages.push(client, TASK_WARM_UP, [], f"warm-up-{uuid.uuid4().hex}", queue=queue)
    except Exception as exc:
        log.warning("could not send the warm-up delivery: %s", exc)


def _sweep(hostname: str) -> None:
    Sweeper(TaskMessages(app), redis_client(settings.redis_url), settings, hostname).run(_stop)


@signals.worker_ready.connect
def _start_sweeper(sender=None, **_kwargs) -> None:
    if settings.recovery_interval <= 0:
        return
    hostname = getattr(sender, "hostname", None) or os.uname().nodename
    thread = threading.Thread(
        target=_sweep, args=(hostname,), name="ser-outbox-sweeper", daemon=True
    )
    thread.start()


@signals.worker_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:
    _stop.set()
    time.sleep(0.2)
