"""The session stack of the stack layer: the session's redis-server (tests/fixtures.py), a
worker node and the API under gunicorn, each a process started by tests/harness.py. Nothing is
mocked. Every stack test is in xdist group "service" (tests/conftest.py), so one pytest process
runs them all and these session fixtures start once.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager

import pytest

from tests.fixtures import API_KEY
from tests.harness import Api, ApiServer, Worker, answers_ok, drop_prefix


@pytest.fixture(scope="session")
def worker1(service_env, redis_client, settings, logdir):
    """The main worker: consumes both queues with one process."""
    w = Worker(service_env, "w1", logdir)
    w.wait_ready(redis_client, settings.key_prefix)
    yield w
    w.stop()


@pytest.fixture(scope="session")
def api_url(service_env, worker1, logdir):
    """The API under gunicorn (`ser api`) on a free port, answering /health with 200."""
    server = ApiServer(service_env, logdir).start()
    try:
        server.wait_for(lambda: answers_ok(server.base + "/health"), 60, "API healthy")
        yield server.base
    finally:
        server.stop()
    assert API_KEY not in server.logs(), "the API key must never be logged"


@pytest.fixture(scope="module")
def client_env(service_env, api_url) -> dict:
    """The environment of `ser` client commands against the session's API."""
    return dict(service_env, SER_API_URL=api_url, SER_API_KEY=API_KEY)


@pytest.fixture(scope="session")
def api(api_url) -> Api:
    return Api(api_url, API_KEY)


@pytest.fixture(scope="session")
def trained(api) -> dict:
    """A finished training on the small labels.csv dataset."""
    return api.train("ds")


@pytest.fixture(scope="module")
def restore_current(api, trained):
    """The model current before a module's trainings is current again after them."""
    before = api.get("/models").json()["CURRENT"]
    yield
    assert api.post(f"/models/{before}/activate").status_code == 200


@contextmanager
def isolated_runner(settings, redis_client, model_bytes: bytes, name: str):
    """(Context, sent, send): a worker Context on a fresh key prefix of the shared Redis with
    ``model_bytes`` current, for calling the work functions directly; messages go to ``sent``
    (no worker sees them). Its keys are removed afterwards."""
    from worker.context import Context

    prefix = f"{name}{uuid.uuid4().hex[:8]}:"
    ctx = Context(settings.model_copy(update={"key_prefix": prefix}))
    ctx.registry.publish(model_bytes, {"metrics": {}}, settings.require_secret_key())
    sent: list = []

    def send(name, args, pipe=None):
        sent.append((name, json.loads(json.dumps(args))))

    try:
        yield ctx, sent, send
    finally:
        drop_prefix(redis_client, prefix)
