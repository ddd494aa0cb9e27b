"""Accuracy floors on EMO-DB and the second corpus (each skipped, saying why, where absent).

The floors guard against regressions below what `python bench/accuracy.py` measures; the
README gives the measured figures and the issue's targets (some of which they miss)."""

from __future__ import annotations

import pytest

from ser.config import second_corpus_dir
from ser.datasets import load_dataset
from ser.features import get_spec
from ser.features.cache import DiskCache
from ser.ml import training

# In the stack tests' xdist group, so never beside them: these fits keep both cores busy for a
# minute or two, and the fault tests' redeliveries (12 s visibility) then came too late.
pytestmark = [pytest.mark.emodb, pytest.mark.xdist_group("service")]

MAX_ECE = 0.05


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return DiskCache(tmp_path_factory.mktemp("corpus_cache"))


def featurized(root, cache, features="default"):
    return training.featurize_dataset(load_dataset(root), get_spec(features), cache=cache, n_jobs=2)


@pytest.fixture(scope="module")
def emodb_default(emodb, cache):
    return featurized(emodb, cache)


@pytest.fixture(scope="module")
def corpus2(cache):
    root = second_corpus_dir()
    if root is None:
        pytest.skip("second corpus not found: set SER_CORPUS2_DIR or ../shared/data/ravdess13-24")
    return featurized(root, cache)


def f1(data, protocol, adapt, repeats=1, features="default"):
    m, _ = training.evaluate_features(
        data, protocol, features=features, adapt=adapt, repeats=repeats, n_jobs=2
    )
    return m


def test_emodb_speaker_independent_with_adaptation(emodb_default):
    m = f1(emodb_default, "speaker", "auto")
    assert m["n_samples"] == 535 and m["repeats"] == 1
    assert m["f1_macro_mean"] >= 0.85, m["f1_macro_mean"]  # target 0.83, measured 0.866
    assert m["ece"] <= MAX_ECE, m["ece"]


def test_emodb_speaker_independent_without_adaptation(emodb_default):
    m = f1(emodb_default, "speaker", "off")
    assert m["f1_macro_mean"] >= 0.75, m["f1_macro_mean"]  # no lower than before adaptation
    assert set(m["adapt_folds"]) == {"off"}


def test_emodb_stratified_over_ten_shuffles(emodb_default):
    m = f1(emodb_default, "stratified", "auto", repeats=10)
    assert m["repeats"] == 10 and len(m["f1_macro_folds"]) == 40
    assert m["f1_macro_mean"] >= 0.91, m["f1_macro_mean"]  # the target (measured 0.916)
    assert m["ece"] <= MAX_ECE, m["ece"]
    assert not m["speaker_confounded"] and m["speaker_baseline_f1"] < 0.2


def test_seed_reproduces_the_prototype(emodb, cache):
    m = f1(featurized(emodb, cache, "seed"), "stratified", "off", features="seed")
    assert m["f1_macro_mean"] >= 0.78, m["f1_macro_mean"]


def test_second_corpus_adaptation_lifts_new_speakers(corpus2):
    auto = f1(corpus2, "speaker", "auto")
    off = f1(corpus2, "speaker", "off")
    assert auto["n_samples"] == 720
    # Measured +0.107 (0.625 vs 0.518; the logistic regression's off was 0.548, README).
    assert auto["f1_macro_mean"] - off["f1_macro_mean"] >= 0.08, (auto, off)
    assert auto["f1_macro_mean"] >= 0.60, auto["f1_macro_mean"]
