"""What real workers do with task messages: a pickled one is refused, never executed. (The
messages themselves, built without a worker: tests/redis/test_messages.py.)"""

from __future__ import annotations


def test_pickle_message_is_refused_by_the_worker(redis_client, settings, worker1, api, trained):
    """A pickle-serialized task sent to the queue is rejected, never executed."""
    from ser.service.jobs import JobStore
    from worker.celeryconfig import make_celery

    app = make_celery(settings)
    app.conf.task_serializer = "pickle"
    app.conf.accept_content = ["pickle", "json"]
    jobs = JobStore(redis_client, settings.key_prefix, 600)
    rec = jobs.create("predict", {"filename": "clips/calm.wav"})
    app.send_task(
        "ser.predict",
        args=[rec["id"], {"filename": "clips/calm.wav"}],
        task_id=rec["id"],
        serializer="pickle",
        ignore_result=True,
    )
    # a JSON prediction sent after it finishes; the pickle one must still be QUEUED
    resp = api.post("/predict?wait=30", json={"filename": "clips/calm.wav"})
    assert resp.status_code == 200
    assert jobs.get(rec["id"])["status"] == "QUEUED"
    assert "untrusted content of type pickle" in worker1.log.read_text(errors="replace")
