"""Test layers by folder, and the fixtures every layer may use.

- tests/unit/: no Redis, no servers (a test may still run one `ser` or `python` command);
- tests/redis/: a real redis-server (tests/harness.py), no workers, no API;
- tests/stack/: Redis, Celery workers and the API as processes (tests/stack/conftest.py; the
  breakable stack of the fault tests in tests/stack/reliability/conftest.py);
- tests/browser/: the web console in headless Chromium (Playwright) against a `ser up` stack.

Each test is marked with its folder's layer (`pytest -m unit`), and every stack test is in
xdist group "service": under `pytest -n 2 --dist loadgroup` one pytest process runs them all,
so the session stacks start once and the heavy tests never take both cores from the
timing-sensitive fault tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ser.config import emodb_dir
from tests import audiogen

pytest_plugins = ["tests.fixtures"]

LAYERS = ("unit", "redis", "stack", "browser")
HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks (loadgroup)
def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(item.path).resolve().relative_to(HERE).parts
        layer = parts[0] if parts and parts[0] in LAYERS else None
        if layer is None:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in tests/{'|'.join(LAYERS)}/")
        item.add_marker(layer)
        if layer in ("stack", "browser") and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group("service"))


@pytest.fixture(scope="session")
def emodb() -> Path:
    """The EMO-DB directory; tests using it skip (saying why) where it is absent."""
    path = emodb_dir()
    if path is None:
        pytest.skip("EMO-DB not found: set SER_EMODB_DIR or place it at ../shared/data/emodb")
    return path


@pytest.fixture(scope="session")
def csv_dataset(tmp_path_factory) -> Path:
    """A small separable 3-class dataset in the labels.csv layout (FLAC files, speakers)."""
    return audiogen.make_dataset(tmp_path_factory.mktemp("csv_ds"), "labels_csv", n_per_class=8)
