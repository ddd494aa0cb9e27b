"""ser.ml: leak-free protocols, metrics, training, the bundle round trip, prediction."""

from __future__ import annotations

import numpy as np
import pytest

from ser.errors import AudioError, DatasetError
from ser.features import FeatureSpecError, warm_up
from ser.ml import evaluation, pipeline, report, training
from ser.ml.bundle import Bundle
from tests import audiogen


def test_ece_perfect_and_overconfident():
    y = np.array([0, 1, 0, 1])
    perfect = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert evaluation.expected_calibration_error(perfect, y) == pytest.approx(0.0)
    wrong = perfect[:, ::-1]
    assert evaluation.expected_calibration_error(wrong, y) == pytest.approx(1.0)


def test_reliability_bins_count_confidence_and_accuracy():
    y = np.array([0, 1, 0, 1])
    proba = np.array([[0.95, 0.05], [0.9, 0.1], [0.62, 0.38], [0.35, 0.65]])
    bins = evaluation.reliability(proba, y, n_bins=5)
    assert [b["count"] for b in bins] == [0, 0, 0, 2, 2]  # confidences 0.62, 0.65 | 0.9, 0.95
    assert bins[0] == {"lower": 0.0, "upper": 0.2, "count": 0, "confidence": None,
                       "accuracy": None}  # fmt: skip
    assert bins[3]["confidence"] == pytest.approx(0.635) and bins[3]["accuracy"] == 1.0
    assert bins[4]["confidence"] == pytest.approx(0.925) and bins[4]["accuracy"] == 0.5
    # the bins are the ECE's: its weighted gap
    gaps = sum(b["count"] / 4 * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
    assert evaluation.expected_calibration_error(proba, y, n_bins=5) == pytest.approx(gaps)


def test_per_speaker_figures_of_out_of_fold_predictions():
    y = np.array([0, 1, 0, 1, 0, 1])
    pred = np.array([0, 1, 1, 1, 0, 1])
    out = evaluation.per_speaker(y, pred, ["b", "b", "a", "a", "c", "c"])
    assert list(out) == ["a", "b", "c"]
    assert out["b"] == {"f1": 1.0, "accuracy": 1.0, "support": 2}
    assert out["a"]["accuracy"] == 0.5 and out["a"]["f1"] == pytest.approx(1 / 3)


def test_cross_validation_keeps_reliability_and_per_speaker_figures():
    X = np.repeat(np.eye(3) * 5, 12, axis=0) + np.random.default_rng(0).normal(0, 0.3, (36, 3))
    y = np.repeat(np.arange(3), 12)
    groups = [f"s{i % 4}" for i in range(36)]
    m, _ = evaluation.cross_validate(
        X, y, groups, "speaker", pipeline.build_model(adapt="off"), "abc"
    )
    assert sum(b["count"] for b in m["reliability"]) == 36
    assert set(m["per_speaker"]) == {"s0", "s1", "s2", "s3"}
    assert sum(s["support"] for s in m["per_speaker"].values()) == 36
    plain, _ = evaluation.cross_validate(X, y, None, "stratified", pipeline.build_model(), "abc")
    assert plain["per_speaker"] is None and len(plain["reliability"]) == evaluation.ECE_BINS


def test_stratified_splits_are_the_prototypes():
    from sklearn.model_selection import StratifiedKFold

    y = np.repeat(np.arange(3), 8)
    ours = evaluation.make_splits("stratified", y, None)
    ref = StratifiedKFold(4, shuffle=True, random_state=42).split(np.zeros((24, 1)), y)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(ours, ref))


def test_speaker_splits_never_share_a_speaker():
    y = np.tile(np.arange(2), 10)
    groups = [f"s{i % 5}" for i in range(20)]
    splits = evaluation.make_splits("speaker", y, groups)
    assert len(splits) == 5  # leave-one-speaker-out
    for train, test in splits:
        assert not {groups[i] for i in train} & {groups[i] for i in test}
    many = [f"s{i}" for i in range(20)]
    assert len(evaluation.make_splits("speaker", y, many)) == 5  # grouped k-fold when many speakers
    assert len(evaluation.make_splits("speaker", y, many, repeats=2)) == 10
    assert len(evaluation.make_splits("speaker", y, groups, repeats=3)) == 5  # LOSO: one answer


def test_repeated_stratified_splits_start_with_the_prototypes():
    y = np.repeat(np.arange(3), 8)
    one = evaluation.make_splits("stratified", y, None)
    three = evaluation.make_splits("stratified", y, None, repeats=3)
    assert len(three) == 12
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(one, three[:4]))
    # Each repetition is another shuffle, and tests every sample exactly once.
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(three[:4], three[4:8]))
    for r in range(3):
        tested = np.sort(np.concatenate([te for _, te in three[4 * r : 4 * r + 4]]))
        assert np.array_equal(tested, np.arange(24))


def test_f1_is_averaged_over_every_fold_of_every_repeat():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5)) + np.repeat(np.eye(3, 5) * 2, 20, axis=0)
    y = np.repeat(np.arange(3), 20)
    m, _ = evaluation.cross_validate(
        X, y, None, "stratified", pipeline.build_model(), "abc", repeats=3
    )
    assert m["repeats"] == 3 and m["n_folds"] == 12 and len(m["f1_macro_folds"]) == 12
    assert m["f1_macro_mean"] == pytest.approx(np.mean(m["f1_macro_folds"]))
    assert m["adapt_folds"] == ["off"] * 12  # no speakers: nothing to adapt to


def test_chance_and_speaker_baselines():
    y = np.repeat(np.arange(4), 30)
    splits = evaluation.make_splits("stratified", y, None, repeats=3)
    assert evaluation.chance_f1(y, splits) == pytest.approx(0.25, abs=0.07)
    # Speakers that each voice one class: their majority label is always right.
    confounded = [f"s{c}{i % 2}" for c, i in zip(y, range(120))]
    assert evaluation.speaker_baseline_f1(y, confounded, splits, 4) == pytest.approx(1.0)
    mixed = [f"s{i % 5}" for i in range(120)]
    assert evaluation.speaker_baseline_f1(y, mixed, splits, 4) < 0.5


def test_a_fold_is_scored_on_the_classes_it_holds():
    # Leave-one-speaker-out where each speaker voices one class: a perfect model scores 1 in
    # every fold, not 1/3 (the classes a held-out speaker never voices are not its errors).
    X = np.repeat(np.eye(3) * 5, 12, axis=0) + np.random.default_rng(0).normal(0, 0.3, (36, 3))
    y = np.repeat(np.arange(3), 12)
    groups = [f"c{c}s{i % 2}" for c, i in zip(y, range(36))]
    m, _ = evaluation.cross_validate(
        X, y, groups, "speaker", pipeline.build_model(adapt="off"), "abc"
    )
    assert m["n_folds"] == 6 and m["f1_macro_mean"] == pytest.approx(1.0)


def test_nothing_is_fitted_outside_the_folds():
    # Pure-noise features: a leak (scaling/selection on all data) would inflate the score;
    # leak-free CV stays near chance for 3 balanced classes.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 200))
    y = np.repeat(np.arange(3), 40)
    metrics, proba = evaluation.cross_validate(
        X, y, None, "stratified", pipeline.build_pipeline("default"), ["a", "b", "c"], repeats=3
    )
    assert metrics["f1_macro_mean"] < 0.5
    assert proba.shape == (120, 3) and np.allclose(proba.sum(axis=1), 1)


def test_metrics_keys(csv_dataset):
    metrics, data, proba = training.evaluate_dataset(csv_dataset, features="seed", repeats=2)
    for key in ("f1_macro_mean", "f1_macro_std", "uar", "accuracy", "log_loss", "ece"):
        assert 0 <= metrics[key] <= (10 if key == "log_loss" else 1)
    for key in ("chance_f1", "speaker_baseline_f1"):
        assert 0 <= metrics[key] <= 1
    assert metrics["repeats"] == 2 and metrics["adapt"] == "auto"
    assert metrics["speaker_confounded"] is False
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 24
    assert set(metrics["per_class"]) == {"calm", "excited", "tense"}
    assert metrics["f1_macro_mean"] > 0.9  # the generated classes are separable


@pytest.mark.parametrize("features", ["seed", "default"])
def test_train_bundle_round_trip_and_predict(tmp_path, csv_dataset, features):
    bundle = training.train(csv_dataset, features=features, cache_dir=tmp_path / "cache", repeats=1)
    assert bundle.classes == ["calm", "excited", "tense"]
    assert bundle.feature_spec.startswith(features + "-")
    assert len(bundle.fingerprint) == 16 and bundle.versions["scikit-learn"]
    # Both protocols are evaluated where the dataset has speakers.
    assert set(bundle.metrics["protocols"]) == {"stratified", "speaker"}
    for figures in bundle.metrics["protocols"].values():  # what the model page draws
        assert np.array(figures["confusion_matrix"]).sum() == 24
        assert figures["reliability"] and set(figures["per_speaker"]) == {"10", "11", "12", "13"}
    assert bundle.metrics["protocol"] == "stratified"
    assert bundle.metrics["adapt_chosen"] == bundle.adapt
    loaded = Bundle.from_bytes(bundle.to_bytes())
    clip = audiogen.write(tmp_path / "q.wav", audiogen.voice_like("excited", 1.4, seed=777))
    out = loaded.predict(clip)
    assert out["emotion"] == "excited"
    assert out["probability"] == max(out["probabilities"].values())
    assert sum(out["probabilities"].values()) == pytest.approx(1.0)
    assert out == bundle.predict(clip.read_bytes())


def test_predict_many_keeps_errors_in_place(tmp_path, csv_dataset):
    bundle = training.train(csv_dataset, features="seed", repeats=1)
    good = audiogen.write(tmp_path / "g.wav", audiogen.voice_like("calm", 1.2, seed=5))
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    out = bundle.predict_many([good, bad, good])
    assert out[0]["emotion"] == "calm" and out[2] == out[0]
    assert isinstance(out[1], AudioError)


def test_fingerprint_tracks_content(tmp_path):
    root = audiogen.make_dataset(tmp_path / "d", "labels_csv", n_per_class=4)
    a = training.train(root, features="seed", repeats=1).fingerprint
    audiogen.write(root / "audio" / "calm_000.flac", audiogen.voice_like("calm", 1.0, seed=4242))
    assert training.train(root, features="seed", repeats=1).fingerprint != a


def test_bundle_from_bytes_rejects_other_objects():
    import io

    import joblib

    buf = io.BytesIO()
    joblib.dump({"not": "a bundle"}, buf)
    with pytest.raises(Exception) as err:
        Bundle.from_bytes(buf.getvalue())
    assert getattr(err.value, "code", "") == "MODEL_INVALID"


def test_bundles_saved_before_the_ml_package_still_load(tmp_path, csv_dataset, monkeypatch):
    """A registry keeps models pickled when Bundle lived in ser.model and the adaptation in
    ser.adapt; they load and predict the same after the move to ser.ml."""
    import sys

    from ser.ml import adapt
    from ser.ml import bundle as bundle_module

    model = training.train(csv_dataset, features="seed", repeats=1)
    # any Bundle.from_bytes earlier in this process left the aliases: start without them
    for old in bundle_module.LEGACY_MODULES:
        monkeypatch.delitem(sys.modules, old, raising=False)
    with monkeypatch.context() as m:  # pickled as before the move
        for cls in (Bundle, adapt.SpeakerAdaptive, adapt.AutoAdaptive, adapt.Stats):
            m.setattr(cls, "__module__", "ser.model" if cls is Bundle else "ser.adapt")
        m.setitem(sys.modules, "ser.model", bundle_module)
        m.setitem(sys.modules, "ser.adapt", adapt)
        data = model.to_bytes()
    assert "ser.model" not in sys.modules
    with monkeypatch.context() as m:  # the pickle names the old modules: no alias, no load
        m.setattr(bundle_module, "LEGACY_MODULES", {})
        with pytest.raises(ModuleNotFoundError, match="ser.model"):
            Bundle.from_bytes(data)
    clip = audiogen.write(tmp_path / "q.wav", audiogen.voice_like("tense", 1.3, seed=91))
    assert Bundle.from_bytes(data).predict(clip) == model.predict(clip)


def test_dataset_errors_surface(tmp_path):
    root = audiogen.make_dataset(tmp_path, "folders", n_per_class=4)
    with pytest.raises(DatasetError):
        training.train(root, protocol="speaker")


def test_unusable_files_are_reported_not_fatal(tmp_path):
    root = audiogen.make_dataset(tmp_path, "folders", n_per_class=5)
    (root / "calm" / "broken.wav").write_bytes(b"RIFF")
    metrics, data, _ = training.evaluate_dataset(root, features="seed", repeats=1)
    assert list(metrics["failed_files"]) == ["calm/broken.wav"]
    assert metrics["n_samples"] == 15


def test_report_files(tmp_path, csv_dataset):
    metrics, data, _ = training.evaluate_dataset(csv_dataset, features="seed", repeats=1)
    paths = report.write_report(tmp_path, metrics, data.X, data.y, metrics["classes"])
    for key in ("confusion", "pca"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"f1_macro_mean"' in paths["metrics"].read_text()


WARM_UP = """
import json, sys
import numpy as np
from ser.features import get_spec, warm_up
spec = get_spec(sys.argv[1])
y = (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(spec.sr * 1.7)) / spec.sr)).astype(np.float32)
before = set(sys.modules)
warm_up(sys.argv[1])
warmed = set(sys.modules)
spec.from_waveform(y)
print(json.dumps([len(warmed - before), sorted(set(sys.modules) - warmed)]))
"""


@pytest.mark.parametrize("features", ["seed", "default"])
def test_warm_up_pays_the_first_call_costs(features):
    """In a fresh process, warm_up loads what featurization needs (librosa imports its parts
    lazily, on first use), so the first real clip afterwards loads no module at all."""
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", WARM_UP, features], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    loaded_by_warm_up, loaded_by_first_clip = json.loads(out.stdout.strip().splitlines()[-1])
    if features == "seed":  # librosa imports its parts on first use: warm_up pays for them
        assert loaded_by_warm_up > 0
    assert loaded_by_first_clip == [], loaded_by_first_clip


def test_warm_up_refuses_an_unknown_spec():
    with pytest.raises(FeatureSpecError, match="no-such-spec"):
        warm_up("no-such-spec")


@pytest.mark.parametrize("n_classes", [2, 3])
def test_platt_svc_calibrates_with_a_class_of_one_example(n_classes):
    """Too few examples of a class for folds: the sigmoids come from the training fit itself,
    for two classes (one column of decision values) as for more."""
    rng = np.random.default_rng(0)
    y = np.array([0] * 6 + [1] * 6 + [2] * 6)[: 6 * (n_classes - 1)].tolist() + [n_classes - 1]
    X = rng.standard_normal((len(y), 4)) + np.array(y)[:, None]
    model = pipeline.PlattSVC(C=10, class_weight="balanced").fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (len(y), n_classes)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert list(model.classes_) == list(range(n_classes))


def test_shrinkage_lda_is_scikit_learns_discriminant():
    """The Cholesky solve gives scikit-learn's lsqr discriminant (coefficients, intercepts,
    probabilities), also with more features than clips; calibration keeps the predictions."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(3)
    y = np.repeat([0, 1, 2, 3], 15)
    for shrinkage, d in [(0.1, 90), (0.5, 90), (0.9, 90), (0.5, 20), (0.0, 20)]:
        # 90 features for 60 clips: the Woodbury path; 20: the d x d one
        X = rng.standard_normal((60, d)) + 0.7 * y[:, None] * rng.standard_normal(d)
        ours = pipeline.ShrinkageLDA(shrinkage, calibrate=False, debias=False).fit(X, y)
        ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage).fit(X, y)
        assert np.allclose(ours.coef_, ref.coef_, atol=1e-8)
        assert np.allclose(ours.intercept_, ref.intercept_, atol=1e-8)
        assert np.allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-8)
        calibrated = pipeline.ShrinkageLDA(shrinkage, debias=False).fit(X, y)
        assert calibrated.calibrated_ is not None
        assert (calibrated.predict(X) == ref.predict(X)).all()
        proba = calibrated.predict_proba(X)
        assert np.allclose(proba.sum(axis=1), 1.0)
        assert (proba.argmax(axis=1) == ref.predict_proba(X).argmax(axis=1)).all()


def _debias_by_hand(X, y, shrinkage):
    """tr(C^-1 S) / (2 n_k) with C^-1 formed: C scikit-learn's shrunk pooled covariance, S the
    pooled within-class covariance over n - K degrees of freedom."""
    from sklearn.covariance import shrunk_covariance

    classes, counts = np.unique(y, return_counts=True)
    within = sum(
        (X[y == k] - X[y == k].mean(axis=0)).T @ (X[y == k] - X[y == k].mean(axis=0))
        for k in classes
    )
    cov = shrunk_covariance(within / len(y), shrinkage)
    trace = np.trace(np.linalg.inv(cov) @ (within / (len(y) - len(classes))))
    return 0.5 * trace / counts


@pytest.mark.parametrize(
    "shrinkage, d, n_classes",
    [
        (0.5, 20, 3),
        (0.5, 90, 3),
        (0.1, 90, 4),
        (0.9, 20, 4),
        (1.0, 90, 3),
        (0.0, 20, 3),
        (0.5, 90, 2),
        (0.5, 20, 2),
    ],
)
def test_shrinkage_lda_debias_adds_the_trace_term(shrinkage, d, n_classes):
    """debias: the coefficients are unchanged and each intercept gains tr(C^-1 S) / (2 n_k),
    as a direct numpy computation gives it (the d x d path with 20 features, Woodbury with 90,
    no shrinkage and full shrinkage); two classes keep one column of decision values."""
    rng = np.random.default_rng(11)
    counts = [30, 15, 5, 8][:n_classes]
    y = np.repeat(np.arange(n_classes), counts)
    X = rng.standard_normal((len(y), d)) * rng.uniform(0.5, 2.0, d) + y[
        :, None
    ] * rng.standard_normal(d)
    off = pipeline.ShrinkageLDA(shrinkage, calibrate=False).fit(X, y)
    on = pipeline.ShrinkageLDA(shrinkage, calibrate=False, debias=True).fit(X, y)
    assert np.allclose(on.coef_, off.coef_, atol=1e-10)
    expected = _debias_by_hand(X, y, shrinkage)
    assert np.all(expected > 0)
    assert np.allclose(on.intercept_ - off.intercept_, expected, rtol=1e-8, atol=1e-10)
    shift = expected[1] - expected[0]
    if n_classes == 2:
        assert on.decision_function(X).shape == (len(y),)
        assert np.allclose(on.decision_function(X), off.decision_function(X) + shift)
    calibrated = pipeline.ShrinkageLDA(shrinkage, debias=True).fit(X, y)
    # the temperature is fitted on the debiased decision values; it keeps the predictions
    assert calibrated.calibrated_.calibrated_classifiers_[0].estimator.debias
    assert np.allclose(calibrated.intercept_, on.intercept_)
    assert (calibrated.predict_proba(X).argmax(axis=1) == on.predict_proba(X).argmax(axis=1)).all()


def test_shrinkage_lda_debias_recovers_a_rare_class():
    """Imbalanced training (150, 150, 150 and 8 clips of four Gaussian classes in 100
    dimensions), balanced test: the plug-in intercept all but never predicts the rare class;
    the debiased one recalls it far more often, and balanced accuracy rises on every seed."""
    from sklearn.metrics import balanced_accuracy_score, recall_score

    gains = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        d = 100
        centers = rng.standard_normal((4, d)) * 3.0 / np.sqrt(2 * d)
        y = np.repeat(np.arange(4), [150, 150, 150, 8])
        X = rng.standard_normal((len(y), d)) + centers[y]
        y_test = np.repeat(np.arange(4), 300)
        X_test = rng.standard_normal((len(y_test), d)) + centers[y_test]
        scores = []
        for debias in (False, True):
            pred = pipeline.ShrinkageLDA(debias=debias).fit(X, y).predict(X_test)
            scores.append(
                (recall_score(y_test, pred, average=None)[3], balanced_accuracy_score(y_test, pred))
            )
        (recall_off, bacc_off), (recall_on, bacc_on) = scores
        assert recall_on >= recall_off + 0.15  # at least 0.28 on these seeds
        assert bacc_on >= bacc_off + 0.02  # at least 0.044
        gains.append((recall_on - recall_off, bacc_on - bacc_off))
    recall_gain, bacc_gain = np.mean(gains, axis=0)
    assert recall_gain > 0.25 and bacc_gain > 0.04  # 0.36 and 0.057


def test_shrinkage_lda_temperature_softens_an_overconfident_fit():
    """Many features, few clips: the raw discriminant is nearly certain of everything on
    held-out clips; the temperature brings its confidence down towards its accuracy."""
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1, 2], 40)
    X = rng.standard_normal((120, 300)) + 0.25 * y[:, None]
    test = rng.standard_normal((300, 300)) + 0.25 * np.repeat([0, 1, 2], 100)[:, None]
    raw = pipeline.ShrinkageLDA(0.2, calibrate=False).fit(X, y)
    cal = pipeline.ShrinkageLDA(0.2).fit(X, y)
    assert cal.predict_proba(test).max(axis=1).mean() < raw.predict_proba(test).max(axis=1).mean()


def test_shrinkage_lda_with_a_class_of_one_clip_is_uncalibrated():
    X = np.random.default_rng(5).standard_normal((13, 4))
    y = [0] * 6 + [1] * 6 + [2]
    model = pipeline.ShrinkageLDA().fit(X, y)
    assert model.calibrated_ is None
    assert np.allclose(model.predict_proba(X).sum(axis=1), 1.0)


def test_shrinkage_lda_with_two_classes():
    """Two classes: one column of decision values (the calibration's shape), probabilities and
    predictions as scikit-learn's discriminant gives them."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(6)
    y = np.repeat([0, 1], 20)
    X = rng.standard_normal((40, 30)) + 0.8 * y[:, None]
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.5).fit(X, y)
    raw = pipeline.ShrinkageLDA(calibrate=False).fit(X, y)
    assert raw.decision_function(X).shape == (40,)
    assert np.allclose(raw.decision_function(X), ref.decision_function(X), atol=1e-8)
    assert np.allclose(raw.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    model = pipeline.build_pipeline("default").fit(X, y)  # calibrated, in the pipeline
    proba = model.predict_proba(X)
    assert proba.shape == (40, 2) and np.allclose(proba.sum(axis=1), 1.0)
    Xs = model.named_steps["scale"].transform(X)
    scaled = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.5).fit(Xs, y)
    assert (model.predict(X) == scaled.predict(Xs)).all()


def test_a_two_class_dataset_trains_and_predicts(tmp_path):
    """The default classifier on two classes, through training (both protocols, adaptation
    chosen in the folds) to a bundle that predicts (a regression: the calibration was given
    two columns of decision values for one of labels)."""
    from ser.ml import training
    from tests import audiogen

    root = audiogen.make_dataset(
        tmp_path / "ds", "labels_csv", n_per_class=8, classes=("calm", "tense")
    )
    bundle = training.train(root, repeats=1)
    assert bundle.classes == ["calm", "tense"]
    assert bundle.metrics["f1_macro_mean"] > 0.9
    res = bundle.classify(bundle.spec.from_waveform(audiogen.voice_like("tense", 2.0))[None])[0]
    assert res["emotion"] == "tense" and abs(sum(res["probabilities"].values()) - 1) < 1e-9


def test_a_shrinkage_lda_saved_before_debias_still_lists_its_parameters():
    """A model pickled before ``debias`` existed has no such attribute: get_params, clone and
    repr must still work (the class's default stands in)."""
    import pickle

    from sklearn.base import clone

    from ser.ml.pipeline import ShrinkageLDA

    old = ShrinkageLDA()
    del old.__dict__["debias"]  # as unpickled from a model saved before the option
    old = pickle.loads(pickle.dumps(old))
    assert old.get_params()["debias"] is False
    assert clone(old).debias is False and "ShrinkageLDA" in repr(old)
