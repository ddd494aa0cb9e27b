"""Model lifecycle through the service: a training kept aside (activate false), DELETE of a
version, and a worker's cached copy of a deleted version. Real API, Redis and workers."""

from __future__ import annotations

import json
import uuid

import pytest

from ser.ml.bundle import Bundle
from ser.service.registry import BundleCache, Registry, UnknownVersion
from tests.harness import ser
from tests.stack.test_http import error_of

pytestmark = pytest.mark.usefixtures("restore_current")


def train_aside(api, **extra) -> dict:
    resp = api.post("/train", json={"dataset": "ds", "activate": False, "repeats": 1, **extra})
    assert resp.status_code == 202, resp.text
    assert resp.json()["ACTIVATE"] is False
    body = api.wait_job(resp.json()["JOB_ID"])
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    return body


def test_a_training_kept_aside_leaves_current_alone(api, trained):
    before = api.get("/models").json()["CURRENT"]
    body = train_aside(api)
    assert body["ACTIVATED"] is False and body["MODEL_VERSION"] != before
    listing = api.get("/models").json()
    assert listing["CURRENT"] == before
    listed = {m["MODEL_VERSION"]: m for m in listing["MODELS"]}
    assert listed[body["MODEL_VERSION"]]["CURRENT"] is False
    png = api.get(f"/models/{body['MODEL_VERSION']}/confusion.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    # a prediction is still served by the current model
    pred = api.post("/predict?wait=30", json={"filename": "clips/calm.wav"}).json()
    assert pred["MODEL_VERSION"] == before
    # and it can be activated later
    assert api.post(f"/models/{body['MODEL_VERSION']}/activate").status_code == 200
    assert api.get("/models").json()["CURRENT"] == body["MODEL_VERSION"]
    assert api.post(f"/models/{before}/activate").status_code == 200


def test_a_default_training_activates_and_says_so(api, trained):
    body = api.train()
    assert body["ACTIVATED"] is True
    assert api.get("/models").json()["CURRENT"] == body["MODEL_VERSION"]


def test_get_train_takes_activate_in_the_query(api, trained):
    before = api.get("/models").json()["CURRENT"]
    resp = api.get("/train?dataset=ds&repeats=1&activate=0")
    assert resp.status_code == 202, resp.text
    body = api.wait_job(resp.json()["JOB_ID"])
    assert body["JOB_STATUS"] == "SUCCEEDED" and body["ACTIVATED"] is False, body
    assert api.get("/models").json()["CURRENT"] == before


@pytest.mark.parametrize("value", ["no", 0, 1, "false", [True]])
def test_train_refuses_a_non_boolean_activate(api, value):
    assert error_of(api.post("/train", json={"dataset": "ds", "activate": value}), 400) == (
        "INVALID_ACTIVATE"
    )


def test_get_train_refuses_a_bad_activate(api):
    assert error_of(api.get("/train?dataset=ds&activate=maybe"), 400) == "INVALID_ACTIVATE"


def test_delete_a_version_that_is_not_current(api, trained, redis_client, settings):
    aside = train_aside(api)
    version = aside["MODEL_VERSION"]
    resp = api.delete(f"/models/{version}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"MODEL_VERSION": version, "DELETED": True}
    listing = api.get("/models").json()
    assert version not in {m["MODEL_VERSION"] for m in listing["MODELS"]}
    assert error_of(api.get(f"/models/{version}"), 404) == "MODEL_NOT_FOUND"
    assert error_of(api.get(f"/models/{version}/confusion.png"), 404) == "MODEL_NOT_FOUND"
    assert error_of(api.delete(f"/models/{version}"), 404) == "MODEL_NOT_FOUND"
    assert error_of(api.post(f"/models/{version}/activate"), 404) == "MODEL_NOT_FOUND"
    assert not redis_client.exists(f"{settings.key_prefix}model:{version}")  # bytes, PNG gone


def test_delete_the_current_version_is_409(api, trained):
    current = api.get("/models").json()["CURRENT"]
    assert error_of(api.delete(f"/models/{current}"), 409) == "MODEL_IS_CURRENT"
    assert api.get(f"/models/{current}").status_code == 200


@pytest.mark.parametrize("version", ["v999999", "latest"])
def test_delete_an_unknown_version_is_404(api, version):
    assert error_of(api.delete(f"/models/{version}"), 404) == "MODEL_NOT_FOUND"


def test_ser_train_no_activate_and_ser_models_delete(client_env, api, trained):
    before = api.get("/models").json()["CURRENT"]
    out = ser(client_env, "train", "ds", "--repeats", "1", "--no-activate", "--wait", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    body = json.loads(out.stdout)
    assert body["ACTIVATED"] is False and api.get("/models").json()["CURRENT"] == before
    out = ser(client_env, "models", body["MODEL_VERSION"], "--delete", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["DELETED"] is True
    out = ser(client_env, "models", before, "--delete")
    assert out.returncode != 0 and "MODEL_IS_CURRENT" in out.stdout + out.stderr


def test_a_cached_copy_of_a_deleted_version_is_not_served(redis_client):
    """A worker holding a pinned version in its BundleCache refuses it once it is deleted, so
    a bulk job pinned to it fails its remaining chunks with MODEL_NOT_FOUND."""
    reg = Registry(redis_client, f"test-lifecycle-{uuid.uuid4().hex[:8]}:")
    key = b"k" * 32
    kept = reg.publish(b"bundle bytes", {}, key, png=lambda v: f"png {v}".encode())
    assert reg.confusion_png(kept) == f"png {kept}".encode()  # drawn knowing its version
    other = reg.publish(b"other", {}, key)
    assert reg.current() == other
    aside = reg.publish(b"aside", {}, key, activate=False)
    assert reg.current() == other and reg.versions() == [kept, other, aside]
    cache = BundleCache(reg, key, Bundle.from_bytes)
    sentinel = object()
    cache._others = {kept: sentinel}  # as a chunk pinned to it left it
    assert cache.get(kept) == (kept, sentinel)
    reg.delete(kept)
    with pytest.raises(UnknownVersion) as err:
        cache.get(kept)
    assert err.value.code == "MODEL_NOT_FOUND" and "deleted" in err.value.message
