"""The sweeper that republishes lost task messages (from the outbox, ser.service.outbox).

The sweeper runs as a thread in every worker node's main process; a short Redis lock makes one
node sweep per interval. It reads the broker's own keys (kombu's Redis transport: one list per
queue and priority step, and the ``unacked`` hash of messages a worker holds).
"""

from __future__ import annotations

import json
import logging
import threading

from kombu.transport.redis import PRIORITY_STEPS, Channel

from ser.contract import JOB_TASKS, QUEUES, TASK_FEATURIZE_CHUNK, TASK_SCORE_CHUNK
from ser.service import jobs
from ser.service.outbox import Outbox
from worker.producer import TaskMessages, queue_key

log = logging.getLogger(__name__)


def _message_id(raw) -> str | None:
    try:
        msg = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if isinstance(msg, list):  # an unacked entry: [message, exchange, routing key]
        msg = msg[0] if msg else {}
    if not isinstance(msg, dict):
        return None
    headers = msg.get("headers") or {}
    props = msg.get("properties") or {}
    return headers.get("id") or props.get("correlation_id")


def broker_keys(transport_options: dict | None = None, queues=QUEUES) -> tuple[list[str], str]:
    """(queue list keys, unacked hash key) of kombu's Redis transport with these options."""
    opts = transport_options or {}
    steps = opts.get("priority_steps", PRIORITY_STEPS)
    lists = [queue_key(queue, opts, pri) for queue in queues for pri in steps]
    return lists, opts.get("global_keyprefix", "") + opts.get("unacked_key", Channel.unacked_key)


def broker_task_ids(client, transport_options: dict | None = None, queues=QUEUES) -> set[str]:
    """Task ids of every message the broker holds, waiting in a queue or unacknowledged, read
    in one transaction: a message moving between a list and the unacked hash is seen once."""
    lists, unacked = broker_keys(transport_options, queues)
    pipe = client.pipeline(transaction=True)
    for key in lists:
        pipe.lrange(key, 0, -1)
    pipe.hvals(unacked)
    ids: set[str | None] = set()
    for batch in pipe.execute():
        ids.update(_message_id(raw) for raw in batch)
    ids.discard(None)
    return ids  # type: ignore[return-value]


class Sweeper:
    """Republishes the messages the broker lost, for jobs that still need them."""

    def __init__(self, messages: TaskMessages, client, settings, hostname: str = "") -> None:
        self.messages, self.client, self.settings = messages, client, settings
        self.outbox = Outbox(client, settings.key_prefix)
        self.jobs = jobs.JobStore(client, settings.key_prefix, settings.job_ttl)
        self.hostname = hostname
        self.lock_key = f"{settings.key_prefix}outbox:sweeper"

    def _republish(self, task_id: str, name: str, args: list) -> bool:
        if name == TASK_FEATURIZE_CHUNK:  # the training takes unclaimed chunks over itself
            return False
        job_id = str(args[0]) if args else ""
        rec = self.jobs.get(job_id)
        status = rec["status"] if rec else None
        # A job's own message is needed while the job waits; a score chunk while its job
        # runs. (A RUNNING job whose message vanished is left to its deadline: JOB_TIMEOUT.)
        wanted = jobs.RUNNING if name == TASK_SCORE_CHUNK else jobs.QUEUED
        if status != wanted:
            return False
        log.warning("republishing %s %s of job %s: its message was lost", name, task_id, job_id)
        self.messages.push(self.client, name, args, task_id)
        return True

    def sweep_once(self, force: bool = False):
        """One sweep (unless another node holds this interval's lock); the report or None."""
        interval = max(1, int(self.settings.recovery_interval))
        if not force and not self.client.set(self.lock_key, self.hostname, nx=True, ex=interval):
            return None
        report = self.outbox.sweep(
            lambda: broker_task_ids(self.client, self.messages.options),
            self._republish,
            min_age=interval,
            confirm_after=interval,
        )
        for task_id, name, args in report.abandoned:
            log.error("giving up on %s %s: its message was lost again and again", name, task_id)
            job_id = str(args[0]) if args else ""
            rec = self.jobs.get(job_id) if name in JOB_TASKS else None
            if rec is not None and rec["status"] == jobs.QUEUED:
                # (chunks: the bulk job's liveness deadline reports it)
                self.jobs.fail(
                    job_id,
                    {"CODE": "JOB_LOST", "MESSAGE": "the job's task message was lost repeatedly"},
                )
        return report

    def run(self, stop: threading.Event) -> None:
        interval = max(1, int(self.settings.recovery_interval))
        while not stop.wait(interval):
            try:
                self.sweep_once()
            except Exception as exc:  # Redis down: try again next interval
                log.warning("outbox sweep failed: %s", exc)
