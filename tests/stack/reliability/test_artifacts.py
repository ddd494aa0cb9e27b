"""What the other stack tests do not cover: an UNSIGNED artifact, a hostile pickle as the bundle
(never unpickled: its payload would leave a marker file), hostile task messages (pickle with a
payload, unknown task names, malformed JSON arguments): refused, reported, the worker lives."""

from __future__ import annotations

import json
import os
import pickle
import uuid

import pytest

from ser.service.registry import Registry
from tests.stack.reliability.conftest import error_of


class Payload:
    """Unpickling this runs os.system(touch <marker>)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / f"pwned-{uuid.uuid4().hex[:8]}"
    yield path
    assert not path.exists(), "a hostile pickle was unpickled"


def test_unsigned_and_hostile_artifacts_are_refused_never_unpickled(healthy, marker):
    stack = healthy
    client = stack.client()
    reg = Registry(client, stack.prefix)
    good = reg.current()
    meta = reg.meta(good)
    evil = pickle.dumps(Payload(str(marker)))
    key = stack.settings.require_secret_key()
    # (1) hostile bytes signed with a wrong key, (2) the signature removed, (3) empty signature
    forged = reg.publish(evil, meta, b"attacker-key", activate=False)
    unsigned = reg.publish(evil, meta, key, activate=False)
    client.hdel(f"{stack.prefix}model:{unsigned}", "sig")
    empty = reg.publish(evil, meta, key, activate=False)
    client.hset(f"{stack.prefix}model:{empty}", mapping={"sig": "", "bundle": evil + b"x"})
    try:
        for version in (forged, unsigned, empty):
            resp = stack.api.post(f"/models/{version}/activate")
            assert error_of(resp, 500) == "MODEL_SIGNATURE_INVALID", version
            assert reg.current() == good
            # pointed at straight in Redis, past the API: every worker still refuses it
            client.set(reg.current_key, version)
            for _ in range(2):  # both replicas (each loads per process)
                resp = stack.api.post("/predict?wait=20", json={"filename": "clips/calm.wav"})
                assert resp.status_code == 500, resp.text
                body = resp.json()
                assert body["JOB_STATUS"] == "FAILED", body
                # reported: the job's error names the refused version
                assert body["ERROR"]["CODE"] == "MODEL_SIGNATURE_INVALID", body
                assert version in body["ERROR"]["MESSAGE"], body
            client.set(reg.current_key, good)
    finally:
        client.set(reg.current_key, good)
    assert not marker.exists()
    ok = stack.api.post("/predict?wait=20", json={"filename": "clips/calm.wav"})
    assert ok.status_code == 200 and ok.json()["MODEL_VERSION"] == good


def _publish_raw(stack, body: bytes, content_type: str, task: str, task_id: str) -> None:
    """Put a hand-made Celery (protocol 2) message on the prediction queue."""
    import base64

    message = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "binary" if content_type != "application/json" else "utf-8",
        "content-type": content_type,
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id},
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": "ser.predict"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    stack.client().lpush("ser.predict", json.dumps(message))


def test_hostile_task_messages_are_refused_and_the_worker_lives(healthy, marker):
    from ser.service.jobs import JobStore

    stack = healthy
    store = JobStore(stack.client(), stack.prefix, 600)
    pids = {name: node.proc.pid for name, node in stack.nodes.items()}
    pickled = store.create("predict", {"filename": "clips/calm.wav"})
    body = pickle.dumps(((pickled["id"], Payload(str(marker))), {}, {}))
    _publish_raw(stack, body, "application/x-python-serialize", "ser.predict", pickled["id"])
    yaml_job = store.create("predict", {"filename": "clips/calm.wav"})
    _publish_raw(
        stack,
        b"!!python/object/apply:os.system ['true']",
        "application/x-yaml",
        "ser.predict",
        yaml_job["id"],
    )
    unknown = str(uuid.uuid4())
    _publish_raw(
        stack, json.dumps([["x"], {}, {}]).encode(), "application/json", "os.system", unknown
    )
    bad_args = store.create("predict", {})
    for args in ([bad_args["id"]], [bad_args["id"], "not-a-dict"], [None, None, None], "junk"):
        _publish_raw(
            stack,
            json.dumps([args, {}, {}]).encode(),
            "application/json",
            "ser.predict",
            str(uuid.uuid4()),
        )
    _publish_raw(stack, b"{not json", "application/json", "ser.predict", str(uuid.uuid4()))
    # the queue drains behind them: a normal prediction still succeeds on each replica
    for _ in range(3):
        resp = stack.api.post("/predict?wait=20", json={"filename": "clips/calm.wav"})
        assert resp.status_code == 200, resp.text
    assert store.get(pickled["id"])["status"] == "QUEUED"  # never executed
    assert store.get(yaml_job["id"])["status"] == "QUEUED"
    for name, node in stack.nodes.items():
        assert node.alive() and node.proc.pid == pids[name]
    logs = "".join(n.logs() for n in stack.nodes.values())
    assert "untrusted content of type pickle" in logs
    assert not marker.exists()
    for rec in (pickled, yaml_job, bad_args):  # hand-made records: not the API's to list
        store.discard(rec["id"])
