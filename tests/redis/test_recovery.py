"""Lost task messages come back (ser.service.outbox, worker/sweeper.py).

kombu's Redis transport pops a message (BRPOP) before it records it as unacknowledged, so a
worker node killed in between loses it; so does an API killed between writing a job record
and publishing. The tests here stage those losses on a Redis database no worker
consumes; tests/stack/test_recovery.py leaves a job with no message to the running service.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from ser import config
from ser.contract import (
    PREDICT_QUEUE,
    TASK_FEATURIZE_CHUNK,
    TASK_PREDICT,
    TASK_SCORE_CHUNK,
)
from ser.service import jobs
from ser.service.outbox import MAX_REPUBLISH, Outbox
from tests.fixtures import quiet_database
from worker.celeryconfig import make_celery
from worker.producer import TaskMessages, publish
from worker.sweeper import Sweeper, broker_keys, broker_task_ids


@pytest.fixture()
def quiet(redis_url, service_env):
    """Settings, a Redis client, a task message builder and stores on a database no worker reads."""
    with quiet_database(redis_url, 7) as (url, client):
        env = dict(service_env, SER_REDIS_URL=url, SER_KEY_PREFIX=f"rec{uuid.uuid4().hex[:6]}:")
        env["SER_RECOVERY_INTERVAL"] = "1"
        settings = config.load(env)
        messages = TaskMessages(make_celery(settings))
        store = jobs.JobStore(client, settings.key_prefix, 600)
        outbox = Outbox(client, settings.key_prefix)
        sweeper = Sweeper(messages, client, settings, "test")
        yield settings, client, messages, store, outbox, sweeper


def _queued_ids(client) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(PREDICT_QUEUE, 0, -1)]


def _predict_job(store, outbox, messages):
    rec = store.create("predict", {"filename": "clips/calm.wav"}, total=1)
    publish(messages, outbox, TASK_PREDICT, [rec["id"], rec["params"]], task_id=rec["id"])
    return rec["id"]


def _sweep_twice(sweeper):
    """Two sweeps more than the confirmation interval apart (entries must be old enough)."""
    time.sleep(1.1)
    first = sweeper.sweep_once(force=True)
    time.sleep(1.1)
    return first, sweeper.sweep_once(force=True)


def test_publish_records_the_message_and_the_broker_holds_it(quiet):
    _, client, messages, store, outbox, _ = quiet
    job_id = _predict_job(store, outbox, messages)
    assert outbox.pending() == 1
    assert _queued_ids(client) == [job_id]
    assert job_id in broker_task_ids(client)


def test_a_waiting_message_is_never_republished(quiet):
    _, client, messages, store, outbox, sweeper = quiet
    job_id = _predict_job(store, outbox, messages)
    first, second = _sweep_twice(sweeper)
    assert (first.checked, first.missing, second.missing) == (1, 0, 0)
    assert second.republished == []
    assert _queued_ids(client) == [job_id]


def test_a_message_held_unacknowledged_is_not_republished(quiet):
    """What a worker took (and may be running) sits in kombu's unacked hash: not lost."""
    _, client, messages, store, outbox, sweeper = quiet
    job_id = _predict_job(store, outbox, messages)
    raw = client.rpop(PREDICT_QUEUE)
    client.hset("unacked", "tag-1", json.dumps([json.loads(raw), "", PREDICT_QUEUE]))
    _, second = _sweep_twice(sweeper)
    assert second.republished == [] and second.missing == 0
    assert job_id in broker_task_ids(client)


def test_a_message_lost_between_pop_and_unacked_is_republished_once(quiet):
    _, client, messages, store, outbox, sweeper = quiet
    job_id = _predict_job(store, outbox, messages)
    client.rpop(PREDICT_QUEUE)  # a worker popped it and died before recording it
    assert job_id not in broker_task_ids(client)
    first, second = _sweep_twice(sweeper)
    assert first.missing == 1 and first.republished == []  # one miss is not enough
    assert second.republished == [job_id]
    assert _queued_ids(client) == [job_id]  # same task id, so job records still match
    body = json.loads(client.lrange(PREDICT_QUEUE, 0, -1)[0])
    assert body["headers"]["task"] == TASK_PREDICT
    time.sleep(1.1)
    assert sweeper.sweep_once(force=True).republished == []  # it is queued again now
    assert store.get(job_id)["status"] == jobs.QUEUED


def test_a_job_published_without_its_message_is_sent(quiet):
    """The API died between recording the job (and its outbox entry) and publishing."""
    _, client, _, store, outbox, sweeper = quiet
    rec = store.create("predict", {"filename": "clips/calm.wav"}, total=1)
    outbox.add(rec["id"], TASK_PREDICT, [rec["id"], rec["params"]])
    _, second = _sweep_twice(sweeper)
    assert second.republished == [rec["id"]]
    assert _queued_ids(client) == [rec["id"]]


def test_lost_messages_of_jobs_that_ended_are_dropped(quiet):
    _, client, messages, store, outbox, sweeper = quiet
    cancelled = _predict_job(store, outbox, messages)
    store.cancel(cancelled)
    client.delete(PREDICT_QUEUE)
    _, second = _sweep_twice(sweeper)
    assert second.republished == []
    assert outbox.pending() == 0 and _queued_ids(client) == []


def test_a_lost_chunk_is_republished_while_its_job_runs(quiet):
    _, client, messages, store, outbox, sweeper = quiet
    rec = store.create("score", {"folder": "batch"})
    store.start(rec["id"], 600)
    chunk = [rec["id"], {"start": 0, "files": ["batch/a.wav"], "total": 1, "model_version": "v"}]
    task_id = publish(messages, outbox, TASK_SCORE_CHUNK, chunk)
    client.delete(PREDICT_QUEUE)
    _, second = _sweep_twice(sweeper)
    assert second.republished == [task_id]
    body = json.loads(client.lrange(PREDICT_QUEUE, 0, -1)[0])
    assert body["headers"]["id"] == task_id and body["headers"]["task"] == TASK_SCORE_CHUNK
    # once the job has ended, a chunk lost again is dropped
    store.succeed(rec["id"], {"STATUS": "SCORED"})
    client.delete(PREDICT_QUEUE)
    _, second = _sweep_twice(sweeper)
    assert second.republished == [] and outbox.pending() == 0


def test_a_message_lost_again_and_again_fails_its_job(quiet):
    _, client, messages, store, outbox, sweeper = quiet
    job_id = _predict_job(store, outbox, messages)
    republished = 0
    for _ in range(MAX_REPUBLISH + 1):
        client.delete(PREDICT_QUEUE)
        _, second = _sweep_twice(sweeper)
        republished += len(second.republished)
    assert republished == MAX_REPUBLISH
    assert [a[0] for a in second.abandoned] == [job_id]
    rec = store.get(job_id)
    assert rec["status"] == jobs.FAILED and rec["error"]["CODE"] == "JOB_LOST"
    assert outbox.pending() == 0


def test_finished_tasks_leave_the_outbox(quiet):
    _, _, messages, store, outbox, sweeper = quiet
    job_id = _predict_job(store, outbox, messages)
    outbox.done(job_id)
    time.sleep(1.1)
    report = sweeper.sweep_once(force=True)
    assert outbox.pending() == 0 and report.checked == 0


def test_overlapping_sweeps_republish_a_message_once(quiet):
    """Two sweepers confirming the same loss at the same time: one claim wins."""
    import threading

    _, client, _, store, outbox, _ = quiet
    rec = store.create("predict", {"filename": "clips/calm.wav"}, total=1)
    outbox.add(rec["id"], TASK_PREDICT, [rec["id"], rec["params"]])
    t0 = outbox.now()
    outbox.sweep(lambda: [], lambda *a: True, 0, 1, now=t0 + 5)  # first miss
    sent: list[str] = []
    gate = threading.Barrier(2)

    def slow_broker():
        gate.wait()  # both sweeps hold the same view before either claims
        return []

    def sweep():
        outbox.sweep(slow_broker, lambda tid, n, a: sent.append(tid) or True, 0, 1, now=t0 + 20)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sent == [rec["id"]]
    assert json.loads(client.hget(outbox.msg_key, rec["id"]))["republished"] == 1


def test_a_task_finishing_during_the_republish_is_not_brought_back(quiet):
    _, _, _, store, outbox, _ = quiet
    rec = store.create("predict", {"filename": "clips/calm.wav"}, total=1)
    outbox.add(rec["id"], TASK_PREDICT, [rec["id"], rec["params"]])
    t0 = outbox.now()
    outbox.sweep(lambda: [], lambda *a: True, 0, 1, now=t0 + 5)

    def republish_then_the_task_ends(task_id, name, args):
        outbox.done(task_id)  # the republished (or the late original) message ran at once
        return True

    outbox.sweep(lambda: [], republish_then_the_task_ends, 0, 1, now=t0 + 20)
    assert outbox.pending() == 0


def test_a_failing_republish_costs_no_attempt_and_is_retried(quiet):
    _, client, _, store, outbox, _ = quiet
    rec = store.create("predict", {"filename": "clips/calm.wav"}, total=1)
    outbox.add(rec["id"], TASK_PREDICT, [rec["id"], rec["params"]])
    t0 = outbox.now()

    def broken(*_args):
        raise ConnectionError("broker gone")

    outbox.sweep(lambda: [], broken, 0, 1, now=t0 + 5)
    assert outbox.sweep(lambda: [], broken, 0, 1, now=t0 + 20).republished == []
    outbox.sweep(lambda: [], lambda *a: True, 0, 1, now=t0 + 40)
    report = outbox.sweep(lambda: [], lambda *a: True, 0, 1, now=t0 + 60)
    assert report.republished == [rec["id"]]
    assert json.loads(client.hget(outbox.msg_key, rec["id"]))["republished"] == 1


def test_lost_featurization_chunks_are_left_to_the_training(quiet):
    """A training takes unclaimed featurization chunks over itself: no republication."""
    _, client, messages, store, outbox, sweeper = quiet
    rec = store.create("train", {"dataset": "ds"})
    store.start(rec["id"], 600)
    task_id = publish(messages, outbox, TASK_FEATURIZE_CHUNK, [rec["id"], {"index": 0}])
    client.delete(PREDICT_QUEUE)
    _, second = _sweep_twice(sweeper)
    assert second.republished == [] and outbox.pending() == 0
    assert task_id not in broker_task_ids(client)


def test_a_job_record_and_its_outbox_entry_are_written_together(quiet):
    _, client, _, store, outbox, _ = quiet
    job_id = jobs.new_id()

    def entry(pipe):
        outbox.add(job_id, TASK_PREDICT, [job_id, {}], pipe=pipe)

    store.create("predict", {}, job_id=job_id, also=entry)
    assert store.get(job_id)["status"] == jobs.QUEUED
    assert client.zscore(outbox.index_key, job_id) is not None


def test_broker_keys_follow_the_transport_options():
    lists, unacked = broker_keys({"global_keyprefix": "p:", "unacked_key": "u"}, ["q"])
    assert lists[0] == "p:q" and all(k.startswith("p:q") for k in lists) and len(lists) == 4
    assert unacked == "p:u"


def test_one_node_sweeps_per_interval(quiet):
    settings, client, messages, _, _, sweeper = quiet
    other = Sweeper(messages, client, settings, "other")
    assert sweeper.sweep_once() is not None
    assert other.sweep_once() is None  # the lock of this interval is taken
