"""A private, breakable stack for the reliability tests: its own redis-server (AOF on, restartable
on the same port), two worker replicas (each its own process group, so a test can SIGKILL one
whole node) and the API under gunicorn (two processes). Nothing is mocked.

Short limits make lost work visible quickly: a task whose node died is redelivered after
SER_VISIBILITY_TIMEOUT, and a RUNNING job whose worker vanished is reported past its deadline.

Every test here is in xdist group "service" (tests/conftest.py, one pytest process): the stack
starts once.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from tests import audiogen
from tests.harness import Api, ApiServer, RedisServer, Worker, stack_env

API_KEY = "rel-api-key-" + uuid.uuid4().hex
SECRET = "rel-secret-" + uuid.uuid4().hex
MAX_UPLOAD_MB = 8
VISIBILITY = 12  # seconds; above both limits below
TRAIN_LIMIT = 11
PREDICT_LIMIT = 10


class Stack:
    """The whole breakable service: redis, nodes ``a`` and ``b``, the API."""

    def __init__(self, env, redis_server, nodes, api_server, data_dir, settings):
        self.env = env
        self.redis_server = redis_server
        self.nodes = nodes
        self.api_server = api_server
        self.data_dir = data_dir
        self.settings = settings
        self.api = Api(api_server.base, API_KEY)

    @property
    def prefix(self) -> str:
        return self.settings.key_prefix

    def client(self):
        return self.redis_server.client()

    def ensure_nodes(self) -> None:
        """Restart any node a test killed, and wait until every node serves."""
        client = self.client()
        for node in self.nodes.values():
            if not node.alive():
                node.start()
        for node in self.nodes.values():
            node.wait_ready(client, self.prefix)

    def restore(self) -> None:
        """Every part up again (after a fault a test injected)."""
        if not self.redis_server.ping():
            self.redis_server.start()
        if self.api_server.proc.poll() is not None:
            self.api_server.start()
        self.ensure_nodes()

    def all_logs(self) -> str:
        return self.api_server.logs() + "".join(n.logs() for n in self.nodes.values())


@pytest.fixture(scope="session")
def rel_data_dir(tmp_path_factory) -> Path:
    """Data root: a small training set, clips, and paths that try to escape it."""
    root = tmp_path_factory.mktemp("reldata")
    audiogen.make_dataset(root / "ds", "labels_csv", n_per_class=8)
    audiogen.make_dataset(root / "ds_kill", "folders", n_per_class=30, seconds=1.5)
    for i, label in enumerate(audiogen.CLASSES):
        audiogen.write(
            root / "clips" / f"{label}.wav", audiogen.voice_like(label, 3.0, seed=77 + i)
        )
    five_min = (0.3 * np.sin(2 * np.pi * 180 * np.arange(300 * 8000) / 8000)).astype(np.float32)
    audiogen.write(root / "long" / "five_minutes.wav", five_min, 8000, subtype="PCM_U8")
    outside = tmp_path_factory.mktemp("reloutside")
    audiogen.write(outside / "secret.wav", audiogen.voice_like("calm", 2.0))
    (root / "escape.wav").symlink_to(outside / "secret.wav")
    (root / "escape_dir").symlink_to(outside)
    (root / "clips" / "up_link.wav").symlink_to("../../" + outside.name + "/secret.wav")
    (root / "loop_a").symlink_to(root / "loop_b")
    (root / "loop_b").symlink_to(root / "loop_a")
    (root / "abs_link.wav").symlink_to("/etc/passwd")
    return root


@pytest.fixture(scope="session")
def stack(tmp_path_factory, rel_data_dir):
    """The running stack (restored by each fault test before it ends)."""
    from ser import config

    workdir = tmp_path_factory.mktemp("relredis")
    logdir = tmp_path_factory.mktemp("rellogs")
    server = RedisServer(workdir).start()  # AOF on, as `ser up` runs it
    env = stack_env(
        server.url,
        rel_data_dir,
        tmp_path_factory.mktemp("relstate"),
        SER_SECRET_KEY=SECRET,
        SER_API_KEY=API_KEY,
        SER_KEY_PREFIX=f"serrel{uuid.uuid4().hex[:6]}:",
        SER_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
        SER_VISIBILITY_TIMEOUT=str(VISIBILITY),
        SER_TRAIN_TIME_LIMIT=str(TRAIN_LIMIT),
        SER_PREDICT_TIME_LIMIT=str(PREDICT_LIMIT),
    )
    settings = config.load(env)
    nodes = {name: Worker(env, name, logdir) for name in ("ra", "rb")}
    api_server = ApiServer(env, logdir, workers=2)
    st = Stack(env, server, nodes, api_server, rel_data_dir, settings)
    try:
        st.ensure_nodes()
        api_server.start()
        yield st
    finally:
        api_server.stop()
        for node in nodes.values():
            node.stop()
        server.stop()
        logs = st.all_logs()
        assert API_KEY not in logs, "the API key must never be logged"


@pytest.fixture(scope="session")
def rel_trained(stack) -> dict:
    """A finished training on the small dataset (a current model for predictions)."""
    return stack.api.train("ds", timeout=120)


@pytest.fixture
def healthy(stack, rel_trained):
    """The stack with every part up before and after the test."""
    stack.restore()
    yield stack
    stack.restore()


def error_of(resp, status: int) -> str:
    """The stable error code of a JSON error response with ``status``."""
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body["ERROR"]) == {"CODE", "MESSAGE"}, body
    return body["ERROR"]["CODE"]
