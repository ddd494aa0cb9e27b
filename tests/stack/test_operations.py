"""What an operator meets: readiness (/ready) and Prometheus metrics (/metrics)."""

from __future__ import annotations

import uuid

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import make_client, upload


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text page."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_ready_once_every_queue_has_a_warm_process(api_url, worker1):
    resp = requests.get(api_url + "/ready", timeout=10)  # no API key: a probe
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["READY"] is True and body["REDIS"] is True and body["WORKERS"] >= 1
    assert body["QUEUES"]["ser.train"] >= 1 and body["QUEUES"]["ser.predict"] >= 1


def test_not_ready_without_warm_workers_even_when_redis_answers(service_env):
    client = make_client(service_env, SER_KEY_PREFIX=f"lonely-{uuid.uuid4().hex[:8]}:")
    resp = client.get("/ready")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["READY"] is False and body["REDIS"] is True
    assert body["QUEUES"] == {"ser.train": 0, "ser.predict": 0}
    # liveness stays the cheap check it was: no worker online is its own answer
    assert client.get("/health").status_code == 503


def test_not_ready_when_redis_is_down(service_env):
    client = make_client(service_env, SER_REDIS_URL="redis://127.0.0.1:1/0")
    resp = client.get("/ready")
    assert resp.status_code == 503
    assert resp.get_json()["REDIS"] is False
    assert resp.get_json()["ERROR"]["CODE"] == "BROKER_UNAVAILABLE"


def test_metrics_count_jobs_queues_workers_model_and_requests(api, api_url, trained, data_dir):
    before = samples(api.get("/metrics").text)
    n = 4
    for _ in range(n):
        assert upload(api, data_dir / "clips" / "calm.wav").status_code == 200
    resp = api.get("/metrics")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
    after = samples(resp.text)

    def grew(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    # Jobs, counted in Redis by every process that moved them: the API queued, the worker ran.
    assert grew("ser_jobs_total", kind="predict", status="QUEUED") >= n
    assert grew("ser_jobs_total", kind="predict", status="SUCCEEDED") >= n
    assert after[("ser_jobs_total", (("kind", "train"), ("status", "SUCCEEDED")))] >= 1
    for phase in ("queued", "running"):
        count = ("ser_job_duration_seconds_count", (("kind", "predict"), ("phase", phase)))
        inf = (
            "ser_job_duration_seconds_bucket",
            (("kind", "predict"), ("le", "+Inf"), ("phase", phase)),
        )
        assert after[count] >= n and after[inf] == after[count]
    assert ("ser_queue_depth", (("queue", "ser.predict"),)) in after
    assert after[("ser_workers", (("queue", "ser.predict"),))] >= 1
    assert after[("ser_workers_warm", (("queue", "ser.train"),))] >= 1
    assert after[("ser_ready", ())] == 1
    current = api.get("/models").json()["CURRENT"]
    assert after[("ser_model_info", (("version", current),))] == 1
    # HTTP requests by route, pooled over the API's gunicorn processes.
    route = ("method", "POST"), ("route", "/predict"), ("status", "200")
    assert grew("ser_http_requests_total", **dict(route)) >= n
    latency = (
        "ser_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "/predict")),
    )
    assert after[latency] - before.get(latency, 0) >= n


def test_metrics_need_the_key_and_can_be_turned_off(api_url, service_env):
    assert requests.get(api_url + "/metrics", timeout=10).status_code == 401
    client = make_client(service_env, SER_METRICS="false")
    assert client.get("/metrics").status_code == 404
