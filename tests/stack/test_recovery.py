"""Lost task messages come back, end to end: the running service sends a job whose message was
never sent, and leaves no outbox entries behind (the sweeps themselves, without workers:
tests/redis/test_recovery.py)."""

from __future__ import annotations

import time

from ser.contract import TASK_PREDICT
from ser.service import jobs
from ser.service.outbox import Outbox


def test_the_service_runs_a_job_whose_message_was_never_sent(
    redis_client, settings, worker1, api, trained
):
    """End to end: a QUEUED job with an outbox entry and no message ends SUCCEEDED."""
    store = jobs.JobStore(redis_client, settings.key_prefix, 600)
    outbox = Outbox(redis_client, settings.key_prefix)
    params = {"filename": "clips/calm.wav"}
    rec = store.create("predict", params, total=1)
    outbox.add(rec["id"], TASK_PREDICT, [rec["id"], params])
    body = api.wait_job(rec["id"], timeout=60)
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    assert body["FILENAME"] == "clips/calm.wav" and body["EMOTION"]
    deadline = time.monotonic() + 10
    while redis_client.zscore(outbox.index_key, rec["id"]) is not None:
        assert time.monotonic() < deadline, "the finished task must leave the outbox"
        time.sleep(0.2)


def test_the_service_leaves_no_outbox_entries_behind(redis_client, settings, api, trained):
    """Every task the API and the workers published and that ran has left the outbox."""
    resp = api.post("/predict?wait=30", json={"filename": "clips/calm.wav"})
    assert resp.status_code == 200, resp.text
    outbox = Outbox(redis_client, settings.key_prefix)
    deadline = time.monotonic() + 10
    while redis_client.zscore(outbox.index_key, resp.json()["JOB_ID"]) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
