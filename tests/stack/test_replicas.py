"""Model rollout across worker replicas, rollback, and refusal of tampered artifacts."""

from __future__ import annotations

import pytest

from ser.service.registry import Registry
from tests.harness import Worker, upload


@pytest.fixture
def replica(service_env, redis_client, settings, logdir, worker1, trained):
    """A second worker node (prediction queue only); w1 stops taking predictions meanwhile."""
    from worker.celeryconfig import make_celery

    w2 = Worker(service_env, "w2", logdir, "ser.predict")
    w2.wait_ready(redis_client, settings.key_prefix)
    control = make_celery(settings).control
    replies = control.cancel_consumer("ser.predict", destination=[worker1.hostname], reply=True)
    assert replies, "w1 did not answer the cancel_consumer command"
    try:
        yield w2
    finally:
        control.add_consumer("ser.predict", destination=[worker1.hostname], reply=True)
        w2.stop()


def predict(api, data_dir, label="tense") -> dict:
    resp = upload(api, data_dir / "clips" / f"{label}.wav", wait=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_replica_serves_new_model_without_restart_and_rolls_back(api, data_dir, replica):
    first = predict(api, data_dir)
    assert first["WORKER"].startswith("w2@"), first
    old = first["MODEL_VERSION"]
    # retrain (on w1's training queue); w2 keeps running
    job = api.post("/train", json={"dataset": "ds", "features": "seed"}).json()
    done = api.wait_job(job["JOB_ID"])
    assert done["JOB_STATUS"] == "SUCCEEDED", done
    new = done["MODEL_VERSION"]
    assert new != old
    after = predict(api, data_dir)
    assert after["WORKER"].startswith("w2@") and after["MODEL_VERSION"] == new
    assert after["EMOTION"] == "tense"
    # roll back, then forward again: same replica, no restart
    resp = api.post(f"/models/{old}/activate")
    assert resp.status_code == 200 and resp.json()["CURRENT"] is True
    assert predict(api, data_dir)["MODEL_VERSION"] == old
    assert api.post(f"/models/{new}/activate").status_code == 200
    assert predict(api, data_dir)["MODEL_VERSION"] == new
    assert replica.proc.poll() is None


def test_tampered_artifact_is_refused(api, data_dir, redis_client, settings, trained):
    reg = Registry(redis_client, settings.key_prefix)
    good = reg.current()
    data = redis_client.hget(f"{settings.key_prefix}model:{good}", "bundle")
    meta = reg.meta(good)
    key = settings.require_secret_key()
    # (1) bytes altered after signing
    tampered = reg.publish(data, meta, key, activate=False)
    redis_client.hset(
        f"{settings.key_prefix}model:{tampered}", "bundle", data[:-1] + bytes([data[-1] ^ 0xFF])
    )
    # (2) a bundle signed by someone without the key
    forged = reg.publish(data, meta, b"not-the-key", activate=False)
    for version in (tampered, forged):
        resp = api.post(f"/models/{version}/activate")
        assert resp.status_code == 500, resp.text
        assert resp.json()["ERROR"]["CODE"] == "MODEL_SIGNATURE_INVALID"
        assert reg.current() == good
    # written straight into Redis, past the API: the worker still refuses to load it
    try:
        for version in (tampered, forged):
            redis_client.set(reg.current_key, version)
            resp = upload(api, data_dir / "clips" / "calm.wav", wait=30)
            assert resp.status_code == 500, resp.text
            body = resp.json()
            assert body["JOB_STATUS"] == "FAILED"
            assert body["ERROR"]["CODE"] == "MODEL_SIGNATURE_INVALID"
    finally:
        redis_client.set(reg.current_key, good)
    assert predict(api, data_dir)["MODEL_VERSION"] == good
