"""ser.ml.adapt: speaker statistics, normalisation, the adaptive model and the choice of mode."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ser.datasets import load_dataset
from ser.features import get_spec
from ser.ml import adapt, evaluation, training
from tests import audiogen


def pipe():
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=1.0))])


def shifted_speakers(n_speakers=8, per_class=10, n_classes=3, dim=12, seed=0):
    """Features where each speaker adds a large offset and each class a small one: raw
    features mostly tell speakers apart, normalised ones tell classes apart."""
    rng = np.random.default_rng(seed)
    class_shift = rng.normal(0, 1.0, (n_classes, dim))
    X, y, g = [], [], []
    for s in range(n_speakers):
        offset = rng.normal(0, 6.0, dim)
        for c in range(n_classes):
            X.append(offset + class_shift[c] + rng.normal(0, 0.6, (per_class, dim)))
            y += [c] * per_class
            g += [f"s{s}"] * per_class
    return np.vstack(X), np.array(y), np.array(g)


def test_stats_merge_is_exact_and_round_trips():
    rng = np.random.default_rng(1)
    X = rng.normal(3, 2, (50, 7))
    whole = adapt.Stats.of(X)
    parts = adapt.Stats.of(X[:13]).merge(adapt.Stats.of(X[13:31])).merge(adapt.Stats.of(X[31:]))
    assert parts.n == 50
    assert np.allclose(parts.mean, X.mean(axis=0)) and np.allclose(parts.var, X.var(axis=0))
    assert np.allclose(whole.m2, parts.m2)
    back = adapt.Stats.from_bytes(parts.to_bytes())
    assert back.n == 50 and np.array_equal(back.mean, parts.mean)
    assert np.array_equal(back.m2, parts.m2)
    with pytest.raises(ValueError):
        adapt.Stats.from_bytes(parts.to_bytes()[:-8])


def test_normalize_shrinks_few_clips_towards_the_population():
    prior = adapt.Stats(100, np.zeros(3), np.full(3, 100.0))  # mean 0, variance 1
    one = adapt.Stats.of(np.array([[10.0, 10.0, 10.0]]))
    z = adapt.normalize(np.array([10.0, 10.0, 10.0]), one, prior, shrink=5.0)
    # Alone, one clip would normalise to 0 (its own mean); the prior keeps it far from 0.
    assert np.all(z > 1.0)
    many = adapt.Stats.of(np.random.default_rng(2).normal(10.0, 1.0, (1000, 3)))
    assert np.all(np.abs(adapt.normalize(many.mean, many, prior)) < 0.1)  # its own mean


def test_speaker_mode_beats_raw_on_new_speakers():
    X, y, g = shifted_speakers()
    classes = ["a", "b", "c"]
    off, _ = evaluation.cross_validate(
        X, y, g, "speaker", adapt.SpeakerAdaptive(pipe(), "off"), classes
    )
    spk, _ = evaluation.cross_validate(
        X, y, g, "speaker", adapt.SpeakerAdaptive(pipe(), "speaker"), classes
    )
    assert spk["f1_macro_mean"] > off["f1_macro_mean"] + 0.2
    assert spk["adapt_folds"] == ["speaker"] * 8


def test_test_speakers_are_normalised_by_their_own_test_clips_only():
    X, y, g = shifted_speakers()
    train, test = g != "s0", g == "s0"
    m = adapt.SpeakerAdaptive(pipe(), "speaker").fit(X[train], y[train], g[train])
    given = m.predict_proba(X[test], g[test])
    own = adapt.by_speaker(X[test], g[test])
    assert np.allclose(given, m.predict_proba(X[test], g[test], stats=own))
    # Statistics from other clips (here: with the training clips added) change the answer.
    other = {"s0": own["s0"].merge(adapt.Stats.of(X[train]))}
    assert not np.allclose(given, m.predict_proba(X[test], g[test], stats=other))


def test_unknown_or_thin_speakers_get_the_raw_model():
    X, y, g = shifted_speakers()
    m = adapt.SpeakerAdaptive(pipe(), "speaker").fit(X, y, g)
    rows = m.row_stats(X[:3], [None, "s1", "s1"], stats={})  # s1 unknown to this table
    assert rows == [None, None, None]
    proba, adapted = m.proba_for_rows(X[:3], rows)
    assert not adapted.any()
    assert np.allclose(proba, m.raw_.predict_proba(X[:3]))
    thin = adapt.Stats.of(X[: adapt.MIN_CLIPS - 1])  # fewer than MIN_CLIPS clips
    assert not m.proba_for_rows(X[:1], [thin])[1].any()
    enough = adapt.Stats.of(X[: adapt.MIN_CLIPS])
    assert m.proba_for_rows(X[:1], [enough])[1].all()
    # Without a raw-feature model (CV folds), any statistics are used.
    lean = adapt.SpeakerAdaptive(pipe(), "speaker", fallback=False).fit(X, y, g)
    assert not hasattr(lean, "raw_") and lean.proba_for_rows(X[:1], [thin])[1].all()


def test_no_speakers_means_off():
    X, y, _ = shifted_speakers()
    assert adapt.SpeakerAdaptive(pipe(), "speaker").fit(X, y, None).mode_ == "off"
    assert adapt.AutoAdaptive(pipe()).fit(X, y, None).mode_ == "off"


def test_both_mode_doubles_the_features():
    X, y, g = shifted_speakers()
    m = adapt.SpeakerAdaptive(pipe(), "both").fit(X, y, g)
    assert m.adapted_.named_steps["scale"].n_features_in_ == 2 * X.shape[1]
    assert m.predict_proba(X[:5], g[:5]).shape == (5, 3)


def test_auto_chooses_speaker_where_it_helps():
    X, y, g = shifted_speakers()
    m = adapt.AutoAdaptive(pipe()).fit(X, y, g)
    assert m.mode_ == "speaker"
    assert m.scores_["speaker@1"] > m.scores_["off@1"]


def test_auto_chooses_off_where_each_speaker_voices_one_class():
    rng = np.random.default_rng(3)
    X, y, g = [], [], []
    for c in range(3):
        for s in range(3):  # three speakers per class, each with one class only
            X.append(np.eye(6)[c] * 3 + rng.normal(0, 1.0, (12, 6)))
            y += [c] * 12
            g += [f"c{c}s{s}"] * 12
    m = adapt.AutoAdaptive(pipe()).fit(np.vstack(X), np.array(y), np.array(g))
    assert m.mode_ == "off"


def test_confounded_corpus_is_flagged_and_auto_keeps_raw_features(tmp_path):
    root = audiogen.make_dataset(tmp_path, "labels_csv", n_per_class=8, confounded=True)
    metrics, _, _ = training.evaluate_dataset(root, features="default", repeats=2)
    assert metrics["speaker_baseline_f1"] == pytest.approx(1.0)
    assert metrics["speaker_confounded"] is True
    assert set(metrics["adapt_folds"]) == {"off"}
    data = training.featurize_dataset(load_dataset(root), get_spec("default"))
    assert training.fit_model(data, adapt="auto").mode_ == "off"


def test_bundle_reports_which_model_answered(tmp_path, csv_dataset):
    bundle = training.train(csv_dataset, adapt="speaker", repeats=1)
    assert bundle.adapt == "speaker"
    clip = audiogen.write(tmp_path / "q.wav", audiogen.voice_like("tense", 1.3, seed=99))
    x = bundle.features(clip)
    assert bundle.predict(clip)["adapted"] is False  # no statistics: the raw model
    stats = adapt.Stats.of(np.vstack([x + 0.01 * k for k in range(adapt.MIN_CLIPS)]))
    out = bundle.classify(x[None], [stats])[0]
    assert out["adapted"] is True and sum(out["probabilities"].values()) == pytest.approx(1)
    many = bundle.predict_many([clip] * adapt.MIN_CLIPS, speakers=["a"] * adapt.MIN_CLIPS)
    assert all(r["adapted"] for r in many)
    assert not any(r["adapted"] for r in bundle.predict_many([clip, clip], speakers=["a", "a"]))
