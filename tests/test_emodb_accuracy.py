"""Accuracy floors on EMO-DB (skipped, saying why, where the corpus is absent)."""

from __future__ import annotations

import pytest

from ser import model

pytestmark = [pytest.mark.emodb, pytest.mark.xdist_group("emodb")]

# The targets for the default spec; the seed rows guard the prototype reproduction.
FLOORS = {
    ("default", "stratified"): 0.88,
    ("default", "speaker"): 0.75,
    ("seed", "stratified"): 0.78,
}
MAX_ECE = 0.05


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("emodb_cache")


@pytest.mark.parametrize("features,protocol", list(FLOORS))
def test_f1_floor(emodb, cache_dir, features, protocol):
    metrics, _, _ = model.evaluate_dataset(
        emodb, protocol=protocol, features=features, cache_dir=cache_dir, n_jobs=2
    )
    assert metrics["n_samples"] == 535
    assert metrics["f1_macro_mean"] >= FLOORS[(features, protocol)], metrics["f1_macro_mean"]
    if features == "default":
        assert metrics["ece"] <= MAX_ECE, metrics["ece"]
