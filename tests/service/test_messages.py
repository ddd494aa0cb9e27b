"""Task messages pushed straight to Redis (worker/messages.py) and the broker transport
(worker/transport.py).

The API and the fan-out push task messages with one LPUSH inside their own transactions
instead of ``Celery.send_task``; the message must be the one kombu's producer would push,
or workers would misread it. Every end-to-end test (tests/service/test_http.py and the
rest) has real workers run messages made this way; here they are compared field by field.
"""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest

from ser import config
from worker.celeryconfig import (
    PREDICT_QUEUE,
    TASK_PREDICT,
    TASK_SCORE_CHUNK,
    TASK_TRAIN,
    TRAIN_QUEUE,
    make_celery,
    make_config,
)
from worker.messages import TaskMessages, queue_key

pytestmark = [pytest.mark.service]


@pytest.fixture()
def quiet_celery(redis_url, service_env):
    """A Celery app and a client on a Redis database no worker reads."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/8"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield make_celery(config.load(dict(service_env, SER_REDIS_URL=url))), client
    client.flushdb()
    client.close()


@pytest.mark.parametrize(
    ("task", "queue", "args"),
    [
        (TASK_PREDICT, PREDICT_QUEUE, ["j1", {"blob": "ab12", "name": "émotion 😀.wav"}]),
        (TASK_TRAIN, TRAIN_QUEUE, ["j2", {"dataset": "emodb", "protocol": "speaker"}]),
        (TASK_SCORE_CHUNK, PREDICT_QUEUE, ["j3", {"files": ["a.wav", "b/c.flac"], "first": 0}]),
    ],
)
def test_messages_are_the_ones_kombu_pushes(quiet_celery, task, queue, args):
    celery, client = quiet_celery
    celery.send_task(task, args=args, task_id="t-" + task, ignore_result=True)
    [theirs] = client.lrange(queue, 0, -1)
    key, ours = TaskMessages(celery).build(task, args, "t-" + task)
    assert key == queue
    a, b = json.loads(theirs), json.loads(ours)
    tag_a, tag_b = a["properties"].pop("delivery_tag"), b["properties"].pop("delivery_tag")
    assert tag_a and tag_b and tag_a != tag_b  # fresh per message, as kombu makes them
    assert a == b
    body = json.loads(base64.b64decode(b["body"]))
    assert body[0] == args and body[1] == {}
    assert b["headers"]["task"] == task and b["headers"]["id"] == "t-" + task


def test_push_joins_the_callers_transaction(quiet_celery):
    celery, client = quiet_celery
    messages = TaskMessages(celery)
    pipe = client.pipeline(transaction=True)
    pipe.set("marker", "1")
    messages.push(pipe, TASK_PREDICT, ["j", {}], "t1")
    assert client.llen(PREDICT_QUEUE) == 0  # nothing before EXEC
    pipe.execute()
    [raw] = client.lrange(PREDICT_QUEUE, 0, -1)
    assert json.loads(raw)["headers"]["id"] == "t1" and client.get("marker") == b"1"


def test_queue_keys_follow_kombus_options():
    assert queue_key("ser.predict") == "ser.predict"
    assert queue_key("q", {"global_keyprefix": "p:"}) == "p:q"
    assert queue_key("q", {"global_keyprefix": "p:"}, 3) == "p:q\x06\x163"
    assert queue_key("q", {"sep": ":"}, 9) == "q:9"


def test_the_broker_channel_keeps_one_client(quiet_celery):
    celery, _ = quiet_celery
    with celery.connection_for_write() as conn:
        channel = conn.default_channel
        assert type(channel).__module__ == "worker.transport"
        first = channel._create_client()
        assert channel._create_client() is first and first.ping()
        channel._disconnect_pools()  # what kombu does after a connection error
        again = channel._create_client()
        assert again is not first and again.ping()
        assert channel._create_client(asynchronous=True) is not again  # BRPOP's own


def test_only_plain_redis_urls_get_the_transport(settings):
    from kombu import Connection

    for url, ours in (
        ("redis://127.0.0.1:6379/0", True),
        ("rediss://cache:6380/0?ssl_cert_reqs=required", False),  # kombu's TLS defaults
        ("sentinel://s1:26379;sentinel://s2:26379", False),
    ):
        conf = make_config(dataclasses.replace(settings, redis_url=url))
        assert (conf.get("broker_transport") == "worker.transport:Transport") is ours, url
    # a rediss:// URL keeps kombu's TLS connection (checked without connecting)
    tls = Connection("rediss://cache:6380/0", transport=None)
    assert tls.transport_cls == "rediss" and tls.ssl


# -- the transport's acknowledgement records (worker/transport.py) ---------------------------
@pytest.fixture()
def broker_queue(quiet_celery):
    """A kombu queue on the quiet database, over the service's transport, and its channel."""
    celery, client = quiet_celery
    with celery.connection_for_write() as conn:
        queue = conn.SimpleQueue("xq")
        assert type(queue.channel.qos).__module__ == "worker.transport"
        yield queue, queue.channel, client
        queue.close()


def _landed(channel):
    channel.qos._flush()  # what kombu does itself before reading the records back


def test_a_taken_message_is_recorded_until_acknowledged(broker_queue):
    queue, channel, client = broker_queue
    queue.put({"n": 1})
    message = queue.get(timeout=5)
    _landed(channel)
    [(tag, raw)] = client.hgetall("unacked").items()
    assert tag.decode() == message.delivery_tag and client.zscore("unacked_index", tag)
    payload, _exchange, routing_key = json.loads(raw)  # kombu's own record format
    assert payload["properties"]["delivery_tag"] == message.delivery_tag and routing_key == "xq"
    message.ack()
    _landed(channel)
    assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0


def test_a_requeued_message_goes_back_to_its_queue(broker_queue):
    queue, channel, client = broker_queue
    queue.put({"n": 2})
    queue.get(timeout=5).requeue()  # restored from its record, which must have landed
    again = queue.get(timeout=5)
    assert again.payload == {"n": 2}
    again.ack()
    _landed(channel)
    assert client.hlen("unacked") == 0 and client.llen("xq") == 0


def test_a_refused_write_is_logged_and_the_next_ones_land(broker_queue, caplog):
    queue, channel, client = broker_queue
    client.set("unacked", "not a hash")  # the HSET of the next record fails (WRONGTYPE)
    queue.put({"n": 3})
    message = queue.get(timeout=5)
    _landed(channel)
    assert "unacked-index write failed" in caplog.text and "WRONGTYPE" in caplog.text
    client.delete("unacked")
    message.ack()
    _landed(channel)
    assert client.zcard("unacked_index") == 0


def test_a_connection_closed_by_the_server_is_reopened(broker_queue):
    import time

    import redis

    queue, channel, client = broker_queue
    queue.put({"n": 4})
    message = queue.get(timeout=5)
    writer = channel._unreplied
    writer.flush()
    writer.conn.send_command("CLIENT", "ID")
    client.client_kill_filter(_id=str(writer.conn.read_response()))
    deadline = time.monotonic() + 5

    def closed() -> bool:  # the server's close has reached this end
        try:
            return writer.conn.can_read(timeout=0.05)
        except redis.exceptions.ConnectionError:
            return True

    while not closed():
        assert time.monotonic() < deadline
    message.ack()  # notices the closed connection, sends on a new one
    _landed(channel)
    assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
