"""Task messages pushed straight to Redis (worker/producer.py) and the broker transport
(worker/transport.py).

The API and the fan-out push task messages with one LPUSH inside their own transactions
instead of ``Celery.send_task``; the message must be the one kombu's producer would push,
or workers would misread it. Every end-to-end test (tests/stack/test_http.py and the
rest) has real workers run messages made this way; here they are compared field by field.
"""

from __future__ import annotations

import base64
import json

import pytest

from ser import config
from ser.contract import (
    PREDICT_QUEUE,
    TASK_PREDICT,
    TASK_SCORE_CHUNK,
    TASK_TRAIN,
    TRAIN_QUEUE,
)
from tests.fixtures import quiet_database
from worker.celeryconfig import make_celery, make_config
from worker.producer import TaskMessages, queue_key


@pytest.fixture()
def quiet_celery(redis_url, service_env):
    """A Celery app and a client on a Redis database no worker reads."""
    with quiet_database(redis_url, 8) as (url, client):
        yield make_celery(config.load(dict(service_env, SER_REDIS_URL=url))), client


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
        conf = make_config(settings.model_copy(update={"redis_url": url}))
        assert (conf.get("broker_transport") == "worker.transport:Transport") is ours, url
    # a rediss:// URL keeps kombu's TLS connection (checked without connecting)
    tls = Connection("rediss://cache:6380/0", transport=None)
    assert tls.transport_cls == "rediss" and tls.ssl
