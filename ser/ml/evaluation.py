"""Leak-free evaluation: the protocols' splits, cross-validation with everything fitted inside
the folds, metrics, and the baselines a score must be read against."""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)
from sklearn.model_selection import (
    LeaveOneGroupOut,
    StratifiedGroupKFold,
    StratifiedKFold,
)

from ser.contract import PROTOCOLS
from ser.errors import DatasetError
from ser.ml import adapt as adaptation
from ser.ml.pipeline import RANDOM_STATE

N_SPLITS = 4  # the prototype's stratified 4-fold
MAX_LOSO_SPEAKERS = 12  # above this many speakers, grouped k-fold instead of one fold each
ECE_BINS = 15
CONFOUNDED_AT = 0.5  # a speaker-majority baseline F1 this high: the labels follow the speakers


def make_splits(
    protocol: str, y: np.ndarray, groups: Sequence[str] | None, repeats: int = 1
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test index pairs for ``protocol``: stratified 4-fold (``repeats`` shuffles, the
    first the prototype's seed 42), or speaker-independent (leave-one-speaker-out, which has
    one answer and is not repeated; grouped 5-fold above 12 speakers)."""
    X_dummy = np.zeros((len(y), 1))
    if protocol == "stratified":
        return [
            split
            for r in range(repeats)
            for split in StratifiedKFold(
                n_splits=N_SPLITS, shuffle=True, random_state=RANDOM_STATE + r
            ).split(X_dummy, y)
        ]
    if protocol == "speaker":
        if groups is None:
            raise DatasetError("DATASET_NO_SPEAKERS", "the speaker protocol needs speakers")
        groups = np.asarray(groups)
        if len(set(groups)) <= MAX_LOSO_SPEAKERS:
            return list(LeaveOneGroupOut().split(X_dummy, y, groups))
        return [
            split
            for r in range(repeats)
            for split in StratifiedGroupKFold(
                n_splits=5, shuffle=True, random_state=RANDOM_STATE + r
            ).split(X_dummy, y, groups)
        ]
    raise DatasetError("UNKNOWN_PROTOCOL", f"unknown protocol {protocol!r}; use {PROTOCOLS}")


def effective_repeats(protocol: str, groups: Sequence[str] | None, repeats: int) -> int:
    """How many repetitions ``make_splits`` really makes (leave-one-speaker-out: one)."""
    if protocol == "speaker" and groups is not None and len(set(groups)) <= MAX_LOSO_SPEAKERS:
        return 1
    return max(1, repeats)


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of the top-class probability over equal-width bins."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def reliability(proba: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> list[dict]:
    """The reliability diagram of the top-class probability, over the bins of
    :func:`expected_calibration_error`: each bin's bounds, count, mean confidence and
    accuracy (None for an empty bin)."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = bins == b
        out.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": int(mask.sum()),
                "confidence": float(conf[mask].mean()) if mask.any() else None,
                "accuracy": float(correct[mask].mean()) if mask.any() else None,
            }
        )
    return out


def per_speaker(y: np.ndarray, pred: np.ndarray, groups: Sequence[str]) -> dict[str, dict]:
    """F1-macro (:func:`f1_macro`), accuracy and clip count of out-of-fold predictions, per
    speaker (labels and predictions are class indices)."""
    groups = np.asarray(groups)
    out = {}
    for speaker in sorted(set(groups.tolist())):
        mask = groups == speaker
        out[str(speaker)] = {
            "f1": f1_macro(y[mask], pred[mask]),
            "accuracy": float(accuracy_score(y[mask], pred[mask])),
            "support": int(mask.sum()),
        }
    return out


def compute_metrics(
    y: np.ndarray,
    proba: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    classes: Sequence[str],
    groups: Sequence[str] | None = None,
) -> dict:
    """Fold and pooled metrics of out-of-fold probabilities (labels are class indices), with
    the reliability diagram's bins and, given each row's speaker, per-speaker figures."""
    pred = proba.argmax(axis=1)
    labels = np.arange(len(classes))
    fold_f1 = [f1_macro(y[te], pred[te]) for _, te in splits]
    pooled = pooled_metrics(y, pred, classes)
    return {
        "f1_macro_mean": float(np.mean(fold_f1)),
        "f1_macro_std": float(np.std(fold_f1)),
        "f1_macro_folds": [float(v) for v in fold_f1],
        "uar": pooled["uar"],
        "accuracy": pooled["accuracy"],
        "log_loss": float(log_loss(y, proba, labels=labels)),
        "ece": expected_calibration_error(proba, y),
        "confusion_matrix": pooled["confusion_matrix"],
        "per_class": pooled["per_class"],
        "reliability": reliability(proba, y),
        "per_speaker": per_speaker(y, pred, groups) if groups is not None else None,
        "n_folds": len(splits),
    }


def pooled_metrics(y: np.ndarray, pred: np.ndarray, classes: Sequence[str]) -> dict:
    """F1-macro (:func:`f1_macro`), UAR, accuracy, the confusion matrix (rows: true class)
    and per-class precision, recall, F1 and support of predictions over ``classes`` (labels
    and predictions are class indices; at least one of each)."""
    labels = np.arange(len(classes))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    with warnings.catch_warnings():  # a class predicted but never true: no recall, left out
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        uar = float(balanced_accuracy_score(y, pred))
    return {
        "f1_macro": f1_macro(y, pred),
        "uar": uar,
        "accuracy": float(accuracy_score(y, pred)),
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "per_class": {
            c: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, c in enumerate(classes)
        },
    }


def f1_macro(y_true: np.ndarray, pred: np.ndarray) -> float:
    """F1-macro over the classes the labels hold or the predictions name: a class that a test
    set lacks (a held-out speaker who never voices it) is no error of the model's, while a
    class predicted there is a false positive and counts."""
    return float(f1_score(y_true, pred, average="macro", zero_division=0))


def chance_f1(y: np.ndarray, splits) -> float:
    """F1-macro of stratified random guessing (the training fold's class frequencies)."""
    f1 = []
    for k, (tr, te) in enumerate(splits):
        guess = DummyClassifier(strategy="stratified", random_state=k).fit(tr[:, None], y[tr])
        f1.append(f1_macro(y[te], guess.predict(te[:, None])))
    return float(np.mean(f1))


def speaker_baseline_f1(y: np.ndarray, groups: Sequence[str], splits, n_classes: int) -> float:
    """F1-macro of labelling each test clip with its speaker's majority training label.

    Under a stratified protocol a high figure means the labels follow the speakers: the
    stratified score then measures speaker identification, not emotion."""
    groups = np.asarray(groups)
    f1 = []
    for tr, te in splits:
        overall = np.bincount(y[tr], minlength=n_classes).argmax()
        majority = {
            g: np.bincount(y[tr][groups[tr] == g], minlength=n_classes).argmax()
            for g in np.unique(groups[tr])
        }
        f1.append(f1_macro(y[te], np.array([majority.get(s, overall) for s in groups[te]])))
    return float(np.mean(f1))


def cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str] | None,
    protocol: str,
    estimator,
    classes: Sequence[str],
    n_jobs: int = 1,
    repeats: int = 1,
) -> tuple[dict, np.ndarray]:
    """Metrics of ``estimator`` under ``protocol``, fitting everything inside the folds.

    ``estimator`` is a scikit-learn classifier, or a :class:`ser.ml.adapt.SpeakerAdaptive`
    (given each row's speaker: the test speakers' statistics come from their test clips).
    F1 is averaged over every fold of every repetition; the pooled figures (UAR, accuracy,
    log-loss, ECE) are averaged over the repetitions; the confusion matrix, per-class and
    per-speaker figures and the reliability bins are the first repetition's (the prototype's
    seed 42). Returns the metrics and
    the first repetition's out-of-fold probabilities.
    """
    repeats = effective_repeats(protocol, groups, repeats)
    splits = make_splits(protocol, y, groups, repeats)
    adaptive = isinstance(estimator, adaptation.SpeakerAdaptive)
    g = np.asarray(groups) if groups is not None else None

    def fold(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, tuple[str, float]]:
        out = np.zeros((len(test), len(classes)))
        if adaptive:  # every test clip has its speaker: no raw-feature fallback to fit
            model = clone(estimator).set_params(fallback=False)
            model.fit(X[train], y[train], None if g is None else g[train])
            part = model.predict_proba(X[test], None if g is None else g[test])
            choice = (model.mode_, getattr(model, "c_factor_", 1.0))
        else:
            model, choice = clone(estimator).fit(X[train], y[train]), ("off", 1.0)
            part = model.predict_proba(X[test])
        out[:, model.classes_] = part
        return out, choice

    # A Celery pool process is daemonic and cannot start loky's processes (joblib would fall
    # back to one job, with a warning); threads still use the cores there.
    prefer = "threads" if multiprocessing.current_process().daemon else None
    parts = Parallel(n_jobs=n_jobs, prefer=prefer)(delayed(fold)(tr, te) for tr, te in splits)
    per_repeat = len(splits) // repeats
    probas, reports = [], []
    for r in range(repeats):
        proba = np.zeros((len(y), len(classes)))
        block = range(r * per_repeat, (r + 1) * per_repeat)
        for k in block:
            proba[splits[k][1]] = parts[k][0]
        probas.append(proba)
        reports.append(compute_metrics(y, proba, [splits[k] for k in block], classes, groups))
    metrics = reports[0]
    fold_f1 = [f for rep in reports for f in rep["f1_macro_folds"]]
    metrics.update(
        f1_macro_mean=float(np.mean(fold_f1)),
        f1_macro_std=float(np.std(fold_f1)),
        f1_macro_folds=fold_f1,
        repeats=repeats,
        n_folds=len(splits),
        chance_f1=chance_f1(y, splits),
        adapt_folds=[mode for _, (mode, _) in parts],
        c_factor_folds=[factor for _, (_, factor) in parts],
    )
    for key in ("uar", "accuracy", "log_loss", "ece"):
        metrics[key] = float(np.mean([rep[key] for rep in reports]))
    if groups is not None:
        base = speaker_baseline_f1(y, groups, make_splits("stratified", y, None), len(classes))
        metrics.update(speaker_baseline_f1=base, speaker_confounded=bool(base >= CONFOUNDED_AT))
    else:
        metrics.update(speaker_baseline_f1=None, speaker_confounded=False)
    return metrics, probas[0]
