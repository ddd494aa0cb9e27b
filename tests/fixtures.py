"""Session fixtures of the redis and stack layers (a pytest plugin of tests/conftest.py):
one redis-server, the data root, and the environment of every service process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import audiogen
from tests.harness import RedisServer, stack_env

API_KEY = "test-api-key-" + uuid.uuid4().hex[:8]
SECRET = "test-secret-" + uuid.uuid4().hex
MAX_UPLOAD_MB = 1


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A bundled redis-server (AOF off: nothing restarts it) on a free loopback port."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), aof=False).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_client(redis_url):
    import redis

    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """The data root: small generated datasets, clips, bad files and escaping symlinks."""
    root = tmp_path_factory.mktemp("data")
    audiogen.make_dataset(root / "ds", "labels_csv", n_per_class=8)
    audiogen.make_dataset(root / "ds_emodb", "emodb", n_per_class=8)
    audiogen.make_dataset(root / "ds_big", "folders", n_per_class=24, seconds=1.5)
    audiogen.make_dataset(root / "ds_cancel", "folders", n_per_class=40, seconds=2.0)
    for i, label in enumerate(audiogen.CLASSES):
        audiogen.write(
            root / "clips" / f"{label}.wav", audiogen.voice_like(label, 3.0, seed=77 + i)
        )
    audiogen.write(root / "clips" / "silent.wav", audiogen.tone(seconds=2.0, amp=0.0))
    (root / "clips" / "notes.wav").write_text("this is not audio\n")
    outside = tmp_path_factory.mktemp("outside")
    audiogen.write(outside / "secret.wav", audiogen.voice_like("calm", 2.0))
    (root / "escape.wav").symlink_to(outside / "secret.wav")
    (root / "escape_dir").symlink_to(outside)
    (root / "inside_link.wav").symlink_to(root / "clips" / "calm.wav")
    return root


@pytest.fixture(scope="session")
def service_env(redis_url, data_dir, tmp_path_factory) -> dict:
    """Environment of every service process of this test session."""
    return stack_env(
        redis_url,
        data_dir,
        tmp_path_factory.mktemp("state"),
        SER_SECRET_KEY=SECRET,
        SER_API_KEY=API_KEY,
        SER_KEY_PREFIX=f"sertest{uuid.uuid4().hex[:6]}:",
        SER_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
    )


@pytest.fixture(scope="session")
def settings(service_env):
    from ser import config

    return config.load(service_env)


@pytest.fixture(scope="session")
def logdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@contextmanager
def quiet_database(redis_url: str, db: int) -> Iterator[tuple[str, object]]:
    """(URL, client) of database ``db`` of the session's Redis, which no worker reads:
    emptied before and after use."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + f"/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url, client
    finally:
        client.flushdb()
        client.close()
