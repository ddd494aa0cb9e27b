"""Shared fixtures: generated datasets and the optional EMO-DB corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser.config import emodb_dir
from tests import audiogen


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
