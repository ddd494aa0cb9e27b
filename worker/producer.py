"""How the API (and the workers) send tasks: the only worker module the API imports.

Task messages are written straight to Redis, so a publish can join a Redis transaction.

Why: a prediction request writes its upload, its job record and its outbox entry
and publishes its task. Through ``Celery.send_task`` the publish is a separate round trip
and ~0.8 ms of CPU (routing, signals, kombu's producer and a new redis-py client per
publish), about a sixth of the API's CPU per prediction (bench/service_throughput.py). Here
the message is one LPUSH queued in the same MULTI/EXEC as the rest: one round trip, and the
record, the entry and the message exist together or not at all.

What is written is exactly what kombu's Redis transport stores for ``send_task``: Celery
builds the task message (``app.amqp.as_task_v2``: protocol 2 headers, properties and body),
kombu serializes the body (``kombu.serialization.dumps``), and the envelope is the one
kombu's virtual channel makes in ``prepare_message`` + ``basic_publish`` (base64 body,
``delivery_info``, a fresh ``delivery_tag``) and its Redis ``_put`` pushes on the queue's
list (anonymous exchange: the routing key is the queue; priority 0: the list is named after
the queue). tests/redis/test_messages.py compares it field by field with what kombu's own
producer pushes and has a real worker run it.

Light: Celery and kombu, no task code. :func:`connect` builds the producer for a settings
object; :func:`publish` records a task in the outbox and pushes its message in one step.
"""

from __future__ import annotations

import base64
import json
import uuid

from kombu.serialization import dumps as serialize
from kombu.transport.redis import Channel

from ser.config import Settings
from ser.contract import JOB_TASKS
from ser.service.outbox import Outbox
from worker.celeryconfig import make_celery

PERSISTENT = 2  # AMQP delivery mode Celery's queues use (kombu: Exchange.PERSISTENT_DELIVERY_MODE)


def queue_key(queue: str, transport_options: dict | None = None, priority: int = 0) -> str:
    """The Redis list kombu's transport keeps ``queue`` (at ``priority``) in."""
    opts = transport_options or {}
    prefix = opts.get("global_keyprefix", "")
    sep = opts.get("sep", Channel.sep)
    return prefix + (queue if priority == 0 else f"{queue}{sep}{priority}")


class TaskMessages:
    """Builds and pushes the task messages of one Celery app (its routes and options)."""

    def __init__(self, celery) -> None:
        self.app = celery
        self.options = dict(celery.conf.broker_transport_options or {})
        self._queues: dict[str, str] = {}

    def queue(self, name: str) -> str:
        """The queue task ``name`` is routed to (celeryconfig's task_routes)."""
        if name not in self._queues:
            route = self.app.amqp.router.route({}, name)
            self._queues[name] = route["queue"].name
        return self._queues[name]

    def build(
        self, name: str, args: list, task_id: str, queue: str | None = None
    ) -> tuple[str, str]:
        """(list key, payload) of task ``name`` with JSON ``args`` under id ``task_id``, on
        its routed queue or on ``queue``."""
        msg = self.app.amqp.as_task_v2(
            task_id, name, args=args, kwargs={}, ignore_result=True, reply_to=self.app.thread_oid
        )
        content_type, encoding, body = serialize(msg.body, serializer="json")
        if isinstance(body, str):
            body = body.encode(encoding)
        queue = queue or self.queue(name)
        properties = dict(msg.properties)
        properties.update(
            delivery_mode=PERSISTENT,
            delivery_info={"exchange": "", "routing_key": queue},
            priority=0,
            body_encoding="base64",
            delivery_tag=str(uuid.uuid4()),
        )
        envelope = {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": encoding,
            "content-type": content_type,
            "headers": msg.headers,
            "properties": properties,
        }
        return queue_key(queue, self.options), json.dumps(envelope)

    def push(self, client, name: str, args: list, task_id: str, queue: str | None = None) -> None:
        """LPUSH the message through ``client`` (a redis-py client or a pipeline to join)."""
        key, payload = self.build(name, args, task_id, queue)
        client.lpush(key, payload)


def publish(
    messages: TaskMessages,
    outbox: Outbox,
    name: str,
    args: list,
    task_id: str | None = None,
    pipe=None,
    recorded: bool = False,
) -> str:
    """Record task ``name`` in the outbox (unless ``recorded`` already, with its job record)
    and push its message, in one transaction; returns its task id. With ``pipe`` (the
    caller's MULTI, e.g. the one writing the job record) both are queued there and the caller
    executes it."""
    task_id = task_id or str(uuid.uuid4())
    tx = pipe if pipe is not None else outbox.client.pipeline(transaction=True)
    if not recorded:
        outbox.add(task_id, name, args, pipe=tx)
    messages.push(tx, name, args, task_id)
    if pipe is None:
        tx.execute()
    return task_id


def connect(settings: Settings) -> TaskMessages:
    """The producer for ``settings``: Celery's routes and options, no connection opened.

    One message of each job task is built (not sent) here, so the first request does not pay
    for what Celery makes on first use (its AMQP helper, the router, the serializer: ≈5 ms)."""
    messages = TaskMessages(make_celery(settings))
    for name in JOB_TASKS:
        messages.build(name, [], "warm-up")
    return messages
