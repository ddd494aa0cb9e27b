"""The app factory in process (Flask test client) against the real Redis: configurations the
shared API process does not have (no model yet, Redis down, no workers), and the import
layering. (That a worker refuses a pickled message: tests/stack/test_messages.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.harness import ROOT, free_port, make_client


def test_predict_before_any_training_is_409(service_env):
    client = make_client(
        service_env, SER_KEY_PREFIX=f"fresh{uuid.uuid4().hex[:6]}:", SER_API_KEY=""
    )
    resp = client.post("/predict", json={"filename": "clips/calm.wav"})
    assert resp.status_code == 409
    assert resp.get_json()["ERROR"]["CODE"] == "NO_MODEL"
    assert "train" in resp.get_json()["ERROR"]["MESSAGE"].lower()
    assert client.get("/models").get_json() == {"CURRENT": None, "MODELS": [], "COUNT": 0}


def test_redis_down_is_503_everywhere(service_env):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = make_client(service_env, SER_REDIS_URL=url, SER_API_KEY="")
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["REDIS"] is False
    for resp in (
        client.post("/train", json={"dataset": "ds"}),
        client.post("/predict", json={"filename": "clips/calm.wav"}),
        client.get("/jobs/" + "0" * 32),
        client.get("/models"),
    ):
        assert resp.status_code == 503, resp.get_data(as_text=True)
        assert resp.get_json()["ERROR"]["CODE"] == "BROKER_UNAVAILABLE"


def test_health_without_workers_is_503(service_env):
    client = make_client(service_env, SER_KEY_PREFIX=f"noworkers{uuid.uuid4().hex[:6]}:")
    resp = client.get("/health")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["REDIS"] is True and body["WORKERS"] == 0 and body["ERROR"]["CODE"] == "NO_WORKERS"


@pytest.mark.parametrize("api_key", ["", "s3cret"])
def test_the_api_rehearses_a_prediction_and_leaves_no_trace(
    service_env, redis_client, monkeypatch, caplog, api_key
):
    """Each API process answers one rehearsed upload before it serves (api.warmup): a real
    POST /predict and GET /jobs/<id> through the app, with the API key when one is set, on
    keys of its own that expire on their own and are gone after; no job, counter, log line or
    HTTP count of the service sees it (its Prometheus series exist, at 0)."""
    import logging

    from api import warmup
    from ser.contract import QUEUES
    from ser.service.jobs import JobStore
    from worker.producer import queue_key

    prefix = f"rehearse{uuid.uuid4().hex[:6]}:"
    answers, ttls = [], []
    real_rehearse, real_wait = warmup.rehearse, JobStore.wait

    def rehearse(*args, **kwargs):
        answers.append(real_rehearse(*args, **kwargs))
        return answers[-1]

    def wait(store, *args, **kwargs):  # by then the rehearsal has written everything
        keys = redis_client.scan_iter(match=f"{prefix}warm-up:*")
        ttls.extend((k, redis_client.ttl(k)) for k in keys)
        return real_wait(store, *args, **kwargs)

    def queued() -> dict:  # the real queues' messages (their lists are not under the prefix)
        return {q: redis_client.llen(queue_key(q)) for q in QUEUES}

    monkeypatch.setattr(warmup, "rehearse", rehearse)
    monkeypatch.setattr(JobStore, "wait", wait)
    before = queued()
    with caplog.at_level(logging.INFO):
        client = make_client(service_env, SER_KEY_PREFIX=prefix, SER_API_KEY=api_key)
    assert answers == [True]
    assert queued() == before
    assert len(ttls) >= 9 and all(0 < t <= 60 for _, t in ttls), ttls
    assert list(redis_client.scan_iter(match=f"{prefix}*")) == []
    store = JobStore(redis_client, prefix)
    assert store.list() == [] and store.metrics() == ({}, {})
    assert not [r for r in caplog.records if r.name.startswith("ser.service")]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    text = client.get("/metrics", headers=headers).get_data(as_text=True)
    counts = [line for line in text.splitlines() if line.startswith("ser_http_requests_total{")]
    assert any('route="/predict"' in line and line.endswith(" 0.0") for line in counts), counts
    assert all(line.endswith(" 0.0") for line in counts), counts


def test_no_rehearsal_when_warm_up_is_skipped(service_env, redis_client, monkeypatch):
    from api import warmup

    calls = []
    monkeypatch.setattr(warmup, "rehearse", lambda *a, **k: calls.append(a))
    make_client(service_env, SER_KEY_PREFIX=f"skip{uuid.uuid4().hex[:6]}:", SER_SKIP_WARMUP="1")
    assert calls == []


def test_openapi_without_key_has_no_global_security(service_env):
    client = make_client(service_env, SER_API_KEY="")
    doc = client.get("/openapi.json").get_json()
    assert "security" not in doc


def test_api_never_imports_audio_or_learning_libraries(service_env):
    code = (
        "import json, sys, api\n"
        "app = api.create_app({'SER_REDIS_URL': 'redis://127.0.0.1:1/0'})\n"
        "app.test_client().get('/health')\n"
        "heavy = ['librosa', 'sklearn', 'soundfile', 'soxr', 'numba', 'ser.features',"
        " 'ser.ml', 'ser.audio', 'worker.tasks', 'worker.train', 'worker.predict',"
        " 'worker.score']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=service_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_library_never_imports_service_frameworks():
    code = (
        "import json, sys\n"
        "import ser.cli, ser.service.registry, ser.service.jobs, ser.paths, ser.config\n"
        "ser.cli.build_parser()\n"
        "bad = ['flask', 'celery', 'kombu', 'api', 'worker']\n"
        "print(json.dumps([m for m in bad if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_celery_config_refuses_pickle_and_keeps_limits_below_visibility(settings):
    from worker.celeryconfig import make_config

    conf = make_config(settings)
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    vis = conf["broker_transport_options"]["visibility_timeout"]
    train = conf["task_annotations"]["ser.train"]
    assert train["soft_time_limit"] < train["time_limit"] < vis
    assert conf["task_soft_time_limit"] < conf["task_time_limit"] < vis
    assert conf["task_routes"]["ser.train"]["queue"] != conf["task_routes"]["ser.predict"]["queue"]

    with pytest.raises(ValueError, match="VISIBILITY"):
        make_config(settings.model_copy(update={"visibility_timeout": 10}))


def _metrics(protocol: str, *, figures: bool) -> dict:
    """Training metrics as a version keeps them; ``figures=False``: as versions trained before
    the per-speaker figures, the reliability bins and every protocol's matrix were kept."""
    classes = ["calm", "excited"]
    one = {
        "protocol": protocol,
        "f1_macro_mean": 0.75,
        "f1_macro_std": 0.05,
        "f1_macro_folds": [0.7, 0.8],
        "n_folds": 2,
        "repeats": 1,
        "uar": 0.75,
        "accuracy": 0.75,
        "log_loss": 0.5,
        "ece": 0.1,
        "chance_f1": 0.5,
        "per_class": {
            c: {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4} for c in classes
        },
        "confusion_matrix": [[3, 1], [1, 3]],
    }
    if figures:
        one["per_speaker"] = {"s1": {"f1": 1.0, "accuracy": 1.0, "support": 4}}
        one["reliability"] = [
            {"lower": 0.5, "upper": 1.0, "count": 8, "confidence": 0.85, "accuracy": 0.75},
            {"lower": 0.0, "upper": 0.5, "count": 0, "confidence": None, "accuracy": None},
        ]
    other = dict(one, protocol="speaker", f1_macro_mean=0.6)
    if not figures:
        other.pop("confusion_matrix")
    return dict(one, classes=classes, protocols={protocol: dict(one), "speaker": other})


def test_a_model_page_has_typed_evaluations_and_old_versions_degrade(
    service_env, settings, redis_client
):
    from ser.service.registry import Registry

    prefix = f"evals{uuid.uuid4().hex[:6]}:"
    registry = Registry(redis_client, prefix)
    key = settings.require_secret_key()
    new = registry.publish(b"bundle", {"metrics": _metrics("stratified", figures=True)}, key)
    old = registry.publish(b"bundle", {"metrics": _metrics("stratified", figures=False)}, key)
    bare = registry.publish(b"bundle", {"protocol": "speaker"}, key)  # no metrics at all
    client = make_client(service_env, SER_KEY_PREFIX=prefix, SER_API_KEY="")

    body = client.get(f"/models/{new}").get_json()
    evals = body["EVALUATIONS"]
    assert list(evals) == ["stratified", "speaker"]  # the version's own protocol first
    first = evals["stratified"]
    assert first["CONFUSION_MATRIX"] == [[3, 1], [1, 3]] and first["F1_FOLDS"] == [0.7, 0.8]
    assert first["PER_CLASS"]["calm"] == {"PRECISION": 0.75, "RECALL": 0.75, "F1": 0.75,
                                          "SUPPORT": 4}  # fmt: skip
    assert first["PER_SPEAKER"] == {"s1": {"F1": 1.0, "ACCURACY": 1.0, "SUPPORT": 4}}
    assert first["RELIABILITY"][0]["COUNT"] == 8 and first["RELIABILITY"][1]["CONFIDENCE"] is None
    assert first["ECE"] == 0.1 and first["UAR"] == 0.75
    assert evals["speaker"]["F1_MACRO_MEAN"] == 0.6 and evals["speaker"]["CONFUSION_MATRIX"]

    old_evals = client.get(f"/models/{old}").get_json()["EVALUATIONS"]
    assert old_evals["stratified"]["CONFUSION_MATRIX"] == [[3, 1], [1, 3]]
    assert old_evals["stratified"]["PER_SPEAKER"] is None
    assert old_evals["stratified"]["RELIABILITY"] is None
    assert old_evals["speaker"]["CONFUSION_MATRIX"] is None
    assert old_evals["speaker"]["F1_MACRO_MEAN"] == 0.6

    resp = client.get(f"/models/{bare}")
    assert resp.status_code == 200 and resp.get_json()["EVALUATIONS"] is None

    doc = client.get("/openapi.json").get_json()
    detail = doc["components"]["schemas"]["ModelDetail"]["properties"]
    assert "EVALUATIONS" in detail
    assert {"RELIABILITY", "PER_SPEAKER", "CONFUSION_MATRIX"} <= set(
        doc["components"]["schemas"]["ProtocolEvaluation"]["properties"]
    )
