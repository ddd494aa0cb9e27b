"""Every malformed or odd recording gets a result or its own clear error; none stops a batch."""

from __future__ import annotations

import numpy as np
import pytest

from ser import audio
from ser.errors import AudioError
from ser.features.batch import featurize
from tests import hostile

CODES = {
    audio.UNREADABLE,
    audio.EMPTY,
    audio.TOO_SHORT,
    audio.TOO_LONG,
    audio.SILENT,
    audio.NONFINITE,
}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return root, hostile.write_corpus(root)


def test_corpus_is_large_and_varied(corpus_dir):
    _, expected = corpus_dir
    assert len(expected) >= 30
    assert set(expected.values()) == CODES | {"ok"}


def test_each_file_gets_its_expected_outcome(corpus_dir):
    root, expected = corpus_dir
    for name, outcome in expected.items():
        try:
            y = audio.decode(root / name)
            got = "ok"
            assert y.dtype == np.float32 and np.isfinite(y).all() and y.ndim == 1
        except AudioError as exc:
            got = exc.code
            assert exc.code in CODES and exc.message
        assert got == outcome, name


def test_the_whole_batch_is_featurized_in_parallel(corpus_dir):
    root, expected = corpus_dir
    names = sorted(expected)
    out = featurize([root / n for n in names], "default", n_jobs=2)
    assert len(out) == len(names)
    for name, res in zip(names, out):
        if expected[name] == "ok":
            assert isinstance(res, np.ndarray) and np.isfinite(res).all(), name
        else:
            assert isinstance(res, AudioError) and res.code == expected[name], name
