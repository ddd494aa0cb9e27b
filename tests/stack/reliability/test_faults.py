"""Faults injected for real: Redis stopped and restarted (AOF), worker nodes SIGKILLed mid-task,
the API restarted under load, two clients training at once. Every accepted job must end."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.harness import wait_until
from tests.stack.reliability.conftest import API_KEY, VISIBILITY, Api, error_of

# A lost task comes back after the visibility timeout plus one restore sweep of a live worker.
REDELIVERY_BOUND = VISIBILITY + 45
ACTIVE = ("QUEUED", "RUNNING")


def submit(api: Api, n: int, filename: str = "clips/calm.wav") -> list[str]:
    ids = []
    for _ in range(n):
        resp = api.post("/predict", json={"filename": filename})
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["JOB_ID"])
    return ids


def finish_all(api: Api, ids: list[str], timeout: float) -> dict[str, dict]:
    """Poll until every job ends (or ``timeout``); returns id -> last body."""
    deadline = time.monotonic() + timeout
    last: dict[str, dict] = {}
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            body = api.get(f"/jobs/{job_id}", timeout=10).json()
            last[job_id] = body
            if body["JOB_STATUS"] not in ACTIVE:
                pending.remove(job_id)
        if pending:
            time.sleep(0.5)
    return last


def statuses(bodies: dict[str, dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for body in bodies.values():
        out[body["JOB_STATUS"]] = out.get(body["JOB_STATUS"], 0) + 1
    return out


def running_on(api: Api, job_id: str, timeout: float = 60) -> dict:
    """The job body once a worker has started it."""

    def started():
        body = api.get(f"/jobs/{job_id}").json()
        return body if body["JOB_STATUS"] != "QUEUED" else None

    body = wait_until(started, timeout, f"job {job_id} start")
    assert body["JOB_STATUS"] == "RUNNING", body
    return body


def node_of(stack, body: dict):
    worker = body["WORKER"]
    return next(n for n in stack.nodes.values() if worker.startswith(n.name + "@"))


# -- Redis stopped and restarted --------------------------------------------------------------
def test_redis_restart_keeps_queued_jobs_and_api_says_503(healthy):
    stack = healthy
    api = stack.api
    pids = {name: node.proc.pid for name, node in stack.nodes.items()}
    ids = submit(api, 16)
    stack.redis_server.stop()  # SIGTERM: Redis writes its AOF and exits
    try:
        probes = [
            ("GET", "/jobs/" + ids[-1], None),
            ("POST", "/predict", {"filename": "clips/calm.wav"}),
            ("POST", "/train", {"dataset": "ds"}),
            ("GET", "/jobs", None),
            ("GET", "/models", None),
            ("DELETE", "/jobs/" + ids[-1], None),
        ]
        for method, path, body in probes:
            t0 = time.monotonic()
            resp = getattr(api, method.lower())(path, json=body, timeout=15)
            took = time.monotonic() - t0
            assert error_of(resp, 503) == "BROKER_UNAVAILABLE", (method, path)
            assert took < 5, f"{method} {path} took {took:.1f}s while Redis was down"
        health = requests.get(stack.api_server.base + "/health", timeout=15)
        assert health.status_code == 503 and health.json()["REDIS"] is False
        upload = api.post("/predict", files={"file": ("c.wav", b"RIFF" + b"\0" * 100)})
        assert error_of(upload, 503) == "BROKER_UNAVAILABLE"
        time.sleep(2)
    finally:
        stack.redis_server.start()
    t0 = time.monotonic()
    bodies = finish_all(api, ids, REDELIVERY_BOUND + 30)
    took = time.monotonic() - t0
    failed = [b for b in bodies.values() if b["JOB_STATUS"] != "SUCCEEDED"]
    assert not failed, (statuses(bodies), took, json.dumps(failed))
    # the same worker processes reconnected by themselves (none was restarted)
    for name, node in stack.nodes.items():
        assert node.alive() and node.proc.pid == pids[name]
    wait_until(
        lambda: requests.get(stack.api_server.base + "/health", timeout=5).status_code == 200,
        30,
        "health back to 200",
    )
    # and new work flows at once
    resp = api.post("/predict?wait=20", json={"filename": "clips/tense.wav"})
    assert resp.status_code == 200, resp.text


# -- worker replicas SIGKILLed ----------------------------------------------------------------
def test_node_killed_mid_prediction_job_finishes_on_the_other(healthy):
    stack = healthy
    api = stack.api
    # a ten-minute clip keeps the worker busy long enough to be killed mid-task
    job_id = submit(api, 1, "long/five_minutes.wav")[0]
    body = running_on(api, job_id)
    victim = node_of(stack, body)
    victim.kill()
    done = finish_all(api, [job_id], REDELIVERY_BOUND + PREDICT_SLACK)[job_id]
    assert done["JOB_STATUS"] == "SUCCEEDED", json.dumps(done)
    assert not done["WORKER"].startswith(victim.name + "@"), done
    rec = stack.client().hgetall(f"{stack.prefix}job:{job_id}")
    assert int(rec[b"attempts"]) == 2


PREDICT_SLACK = 30


def test_pool_process_killed_mid_prediction_is_redelivered_at_once(healthy):
    """Only the pool child dies (the node lives): Celery requeues it without waiting."""
    import psutil

    stack = healthy
    api = stack.api
    job_id = submit(api, 1, "long/five_minutes.wav")[0]
    body = running_on(api, job_id)
    node = node_of(stack, body)
    children = psutil.Process(node.proc.pid).children()
    assert children, "the node has no pool process"
    for child in children:
        child.kill()
    t0 = time.monotonic()
    done = finish_all(api, [job_id], 60)[job_id]
    assert done["JOB_STATUS"] == "SUCCEEDED", json.dumps(done)
    assert time.monotonic() - t0 < 45
    assert node.alive(), "the node itself must survive the loss of a pool process"


def test_node_killed_mid_training_job_finishes_on_the_other(healthy):
    stack = healthy
    api = stack.api
    before = api.get("/models").json()["COUNT"]
    resp = api.post("/train", json={"dataset": "ds_kill"})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["JOB_ID"]
    body = running_on(api, job_id)
    victim = node_of(stack, body)
    victim.kill()
    done = finish_all(api, [job_id], REDELIVERY_BOUND + 60)[job_id]
    assert done["JOB_STATUS"] == "SUCCEEDED", json.dumps(done)
    assert not done["WORKER"].startswith(victim.name + "@"), done
    assert api.get("/models").json()["COUNT"] == before + 1  # published once
    # the single-flight lock was released: a new request is a new training
    again = api.post("/train", json={"dataset": "ds_kill"})
    assert again.json()["JOB_ID"] != job_id
    assert api.wait_job(again.json()["JOB_ID"], 120)["JOB_STATUS"] == "SUCCEEDED"


def test_running_job_whose_worker_vanished_is_failed_not_running_forever(healthy):
    """The message is gone (acknowledged elsewhere, or purged) and the worker died: the job
    record reports JOB_TIMEOUT once its deadline passes, instead of RUNNING forever."""
    from ser.service.jobs import DEADLINE_MARGIN, JobStore

    stack = healthy
    store = JobStore(stack.client(), stack.prefix, 600)
    rec = store.create("predict", {"filename": "clips/calm.wav"})
    # what a worker writes when it starts a job, with a limit that has already passed
    assert store.start(rec["id"], time_limit=-DEADLINE_MARGIN - 1, worker="gone@nowhere")
    body = stack.api.get(f"/jobs/{rec['id']}").json()
    assert body["JOB_STATUS"] == "FAILED" and body["ERROR"]["CODE"] == "JOB_TIMEOUT", body


def test_job_killed_three_times_fails_with_worker_lost(healthy):
    """A job that kills its worker on every delivery is given up after 3 attempts."""
    stack = healthy
    api = stack.api
    job_id = submit(api, 1, "long/five_minutes.wav")[0]
    import psutil

    for attempt in range(1, 4):

        def on_attempt(n=attempt):
            rec = stack.client().hgetall(f"{stack.prefix}job:{job_id}")
            ok = rec.get(b"status") == b"RUNNING" and int(rec.get(b"attempts", 0)) == n
            return rec if ok else None

        rec = wait_until(on_attempt, 60, f"attempt {attempt}")
        node = node_of(stack, {"WORKER": rec[b"worker"].decode()})
        for child in psutil.Process(node.proc.pid).children():
            child.kill()
    done = finish_all(api, [job_id], 60)[job_id]
    assert done["JOB_STATUS"] == "FAILED" and done["ERROR"]["CODE"] == "WORKER_LOST", done


# -- the API restarted under load -------------------------------------------------------------
def test_api_restart_under_load_loses_no_accepted_job(healthy):
    stack = healthy
    accepted: list[str] = []
    refused: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(i: int) -> None:
        api = Api(stack.api_server.base, API_KEY)
        n = 0
        while not stop.is_set() and n < 200:
            n += 1
            try:
                resp = api.post("/predict", json={"filename": "clips/excited.wav"}, timeout=10)
            except requests.RequestException as exc:
                with lock:
                    refused.append(type(exc).__name__)
                time.sleep(0.05)
                continue
            with lock:
                if resp.status_code == 202:
                    accepted.append(resp.json()["JOB_ID"])
                else:
                    assert resp.status_code in (502, 503), resp.text
                    refused.append(str(resp.status_code))
            time.sleep(0.02)

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(client, i) for i in range(6)]
        time.sleep(1.5)
        stack.api_server.stop()  # SIGTERM: gunicorn finishes in-flight requests
        stack.api_server.start()
        time.sleep(1.5)
        stop.set()
        for f in futures:
            f.result()
    assert len(accepted) > 20 and len(set(accepted)) == len(accepted)
    bodies = finish_all(stack.api, accepted, 120)
    assert statuses(bodies) == {"SUCCEEDED": len(accepted)}, statuses(bodies)


# -- two clients train at once ----------------------------------------------------------------
def test_two_clients_training_at_once_run_one_training(healthy):
    stack = healthy
    before = stack.api.get("/models").json()["COUNT"]
    barrier = threading.Barrier(4)

    def train(_):
        api = Api(stack.api_server.base, API_KEY)
        barrier.wait()
        return api.post("/train", json={"dataset": "ds", "protocol": "stratified"})

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(train, range(4)))
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    ids = {r.json()["JOB_ID"] for r in responses}
    assert len(ids) == 1, ids
    joined = [r.headers.get("X-Single-Flight") for r in responses]
    assert joined.count("joined") == 3, joined
    done = stack.api.wait_job(ids.pop(), 120)
    assert done["JOB_STATUS"] == "SUCCEEDED", json.dumps(done)
    assert stack.api.get("/models").json()["COUNT"] == before + 1
    trains = stack.api.get("/jobs?kind=train&limit=500").json()["JOBS"]
    assert sum(j["JOB_ID"] == done["JOB_ID"] for j in trains) == 1
