"""Speaker adaptation: features z-scored by the speaker's own statistics, fitted inside folds.

Emotion is a change from a speaker's own baseline, so each feature can be measured against
that speaker's mean and spread (computed from the speaker's clips, never their labels). A
speaker with few clips has noisy statistics; they are shrunk towards the training
population's (its mean, and the pooled within-speaker variance) with the weight of
``shrink`` pseudo-clips.

Modes: ``off`` (raw features), ``speaker`` (normalised features), ``both`` (raw and
normalised side by side), and ``auto``: the mode chosen by speaker-grouped validation inside
the training data (:class:`AutoAdaptive`). Normalisation erases the emotion where each
speaker voices one emotion; ``auto`` then finds ``off`` better and keeps it.

An adapted model keeps a raw-feature model beside it: a clip whose speaker has no statistics
(or fewer than ``min_clips``) is classified by that one, never normalised with nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupKFold

from ser.contract import ADAPT_CHOICES as CHOICES
from ser.contract import ADAPT_MODES as MODES
from ser.ml.stats import Stats, by_speaker  # noqa: F401 - by_speaker is read as adapt.by_speaker

SHRINK = 5.0  # pseudo-clips of the population's statistics mixed into a speaker's
# A speaker with fewer clips is classified by the raw-feature model: with statistics from 1-2
# clips the adapted model does worse than the raw one on both corpora, with 3 about the same,
# from 5 clearly better (python bench/adaptation_clips.py).
MIN_CLIPS = 5
INNER_SPLITS = 2  # speaker-grouped folds of the validation that chooses the mode
# The validation only ranks modes, by predictions: an iterative classifier's looser tolerance
# ranks them alike for a tenth of the fitting time (logistic regression on EMO-DB: 18 L-BFGS
# iterations instead of 111), and no probability calibration is fitted (see _with).
SELECTION_TOL = 1e-3
_EPS = 1e-8


def population(per_speaker: Mapping[str, Stats]) -> Stats:
    """The prior a speaker's statistics are shrunk towards: the mean of all clips, and the
    pooled within-speaker variance (not the total variance, which holds the speakers'
    differences that normalisation removes)."""
    total = None
    for s in per_speaker.values():
        total = s if total is None else total.merge(s)
    assert total is not None
    within = sum(s.m2 for s in per_speaker.values())
    return Stats(total.n, total.mean, within)


def normalize(X: np.ndarray, stats: Stats, prior: Stats, shrink: float = SHRINK) -> np.ndarray:
    """``X`` z-scored by the speaker's statistics, shrunk towards ``prior``."""
    w = stats.n / (stats.n + shrink)
    mean = w * stats.mean + (1 - w) * prior.mean
    var = w * stats.var + (1 - w) * prior.var
    return (np.asarray(X, dtype=np.float64) - mean) / np.sqrt(var + _EPS)


def _float64(X) -> np.ndarray:
    return np.asarray(X, dtype=np.float64)


class SpeakerAdaptive(ClassifierMixin, BaseEstimator):
    """A classifier on raw, speaker-normalised, or both kinds of features.

    ``estimator`` (a scaler + classifier Pipeline) is cloned for the adapted model and, when
    the mode is not ``off``, once more for the raw-feature fallback. ``fit`` and
    ``predict_proba`` take the speaker of each row (``groups``); at prediction the speakers'
    statistics come from the rows given (a test speaker's clips, without labels), or from
    ``stats`` (a mapping speaker -> :class:`Stats`, e.g. what a service has gathered).

    ``fallback=False`` skips the raw-feature model where every row to predict has a speaker
    (cross-validation folds): half the fitting, and rows are normalised by whatever
    statistics their speaker has.
    """

    def __init__(
        self,
        estimator=None,
        mode: str = "speaker",
        shrink: float = SHRINK,
        min_clips: int = MIN_CLIPS,
        fallback: bool = True,
    ):
        self.estimator = estimator
        self.mode = mode
        self.shrink = shrink
        self.min_clips = min_clips
        self.fallback = fallback

    def _features(self, X: np.ndarray, rows: list[Stats | None]) -> np.ndarray:
        Z = np.stack([normalize(x, s, self.prior_, self.shrink) for x, s in zip(X, rows)])
        return np.hstack([X, Z]) if self.mode_ == "both" else Z

    def fit(self, X: np.ndarray, y: np.ndarray, groups: Sequence[str] | None = None):
        if self.mode not in MODES:
            raise ValueError(f"unknown adaptation mode {self.mode!r}; use {MODES}")
        X = _float64(X)  # float32 features give float32 probabilities that do not sum to 1
        self.mode_ = self.mode if groups is not None else "off"
        if self.mode_ == "off" or self.fallback:
            self.raw_ = clone(self.estimator).fit(X, y)
            self.classes_ = self.raw_.classes_
        if self.mode_ != "off":
            per = by_speaker(X, groups)
            self.prior_ = population(per)
            rows = [per[g] for g in np.asarray(groups)]
            self.adapted_ = clone(self.estimator).fit(self._features(X, rows), y)
            self.classes_ = self.adapted_.classes_
        return self

    def row_stats(
        self, X: np.ndarray, groups: Sequence[str | None] | None, stats=None
    ) -> list[Stats | None]:
        """Each row's speaker statistics (None: no speaker): from ``stats`` or, without it,
        from the rows of each speaker given here."""
        if self.mode_ == "off" or groups is None:
            return [None] * len(X)
        if stats is None:
            known = [g for g in groups if g is not None]
            idx = np.array([g is not None for g in groups])
            stats = by_speaker(X[idx], known) if known else {}
        return [stats.get(g) if g is not None else None for g in groups]

    def predict_proba(
        self, X: np.ndarray, groups: Sequence[str | None] | None = None, stats=None
    ) -> np.ndarray:
        X = _float64(np.atleast_2d(X))
        return self.proba_for_rows(X, self.row_stats(X, groups, stats))[0]

    def proba_for_rows(
        self, X: np.ndarray, rows: Sequence[Stats | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities given each row's speaker statistics, and per row whether the adapted
        model gave them: rows without statistics, or with fewer than ``min_clips`` clips, go
        to the raw-feature model (without one, any statistics are used)."""
        X = _float64(np.atleast_2d(X))
        least = self.min_clips if hasattr(self, "raw_") else 1
        if self.mode_ == "off":
            rows = [None] * len(X)
        rows = [s if s is not None and s.n >= least else None for s in rows]
        adapted = np.array([s is not None for s in rows], dtype=bool)
        proba = np.zeros((len(X), len(self.classes_)))
        if (~adapted).any():
            if not hasattr(self, "raw_"):
                raise ValueError("rows without speaker statistics, and no raw-feature model")
            proba[~adapted] = self.raw_.predict_proba(X[~adapted])
        if adapted.any():
            sel = [s for s in rows if s is not None]
            proba[adapted] = self.adapted_.predict_proba(self._features(X[adapted], sel))
        return proba, adapted

    def predict(self, X, groups=None, stats=None):
        return self.classes_[self.predict_proba(X, groups, stats).argmax(axis=1)]


# The classifier's C times each factor is tried beside the modes. A grid of (1, 3, 10) chose no
# better than the default C on either corpus (EMO-DB, RAVDESS) at three times the cost.
C_FACTORS = (1.0,)
# ``both`` scored within 0.01 of ``speaker`` on both corpora at twice the fitting cost, and
# adding it to the choice made the validation pick it in folds where it then did worse.
AUTO_MODES = ("off", "speaker")


def choose(
    X: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str] | None,
    make: Callable[[str, float], SpeakerAdaptive],
    factors: Sequence[float] = C_FACTORS,
    n_splits: int = INNER_SPLITS,
) -> tuple[tuple[str, float], dict[str, float]]:
    """The (mode, C factor) with the best speaker-grouped F1-macro on (X, y), and every
    candidate's score. ``("off", 1.0)`` without speakers or with too few to hold some out;
    ties go to the simpler mode, then the smaller factor."""
    if groups is None or len(np.unique(groups)) < 3:
        return ("off", 1.0), {}
    groups = np.asarray(groups)
    cv = GroupKFold(n_splits=min(n_splits, len(np.unique(groups))))
    splits = list(cv.split(X, y, groups))
    grid = [(mode, f) for mode in AUTO_MODES for f in factors]
    scores: dict[tuple[str, float], float] = {}
    for mode, factor in grid:
        f1 = []
        for tr, te in splits:
            m = make(mode, factor).fit(X[tr], y[tr], groups[tr])
            pred = m.predict(X[te], groups[te])
            labels = np.unique(y)
            f1.append(f1_score(y[te], pred, labels=labels, average="macro", zero_division=0))
        scores[(mode, factor)] = float(np.mean(f1))
    best = max(grid, key=lambda c: (scores[c], -grid.index(c)))
    return best, {f"{mode}@{factor:g}": v for (mode, factor), v in scores.items()}


def _with(estimator, factor: float = 1.0, tol: float | None = None):
    """A clone of the scaler + classifier pipeline with its C scaled and, for the validation
    (``tol`` given), a looser tol and no probability calibration (it ranks by predictions)."""
    est = clone(estimator)
    params = est.get_params()
    if "clf__C" in params:
        est.set_params(clf__C=params["clf__C"] * factor)
    if tol is not None and "clf__tol" in params:
        est.set_params(clf__tol=max(tol, params["clf__tol"]))
    if tol is not None and "clf__calibrate" in params:
        est.set_params(clf__calibrate=False)
    return est


class AutoAdaptive(SpeakerAdaptive):
    """:class:`SpeakerAdaptive` whose mode and regularisation are chosen on its own training
    data by speaker-grouped validation (so inside the folds when cross-validated)."""

    def __init__(
        self,
        estimator=None,
        mode: str = "auto",
        shrink: float = SHRINK,
        min_clips: int = MIN_CLIPS,
        fallback: bool = True,
    ):
        super().__init__(estimator, mode, shrink, min_clips, fallback)

    def fit(self, X: np.ndarray, y: np.ndarray, groups: Sequence[str] | None = None):
        def make(mode: str, factor: float, tol: float | None = SELECTION_TOL, fallback=False):
            est = _with(self.estimator, factor, tol)
            return SpeakerAdaptive(est, mode, self.shrink, self.min_clips, fallback)

        (mode, factor), self.scores_ = choose(X, y, groups, make)
        fitted = make(mode, factor, tol=None, fallback=self.fallback).fit(X, y, groups)
        self.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
        self.c_factor_ = factor
        return self


def make_adaptive(estimator, adapt: str) -> SpeakerAdaptive:
    """The estimator for an ``adapt`` choice (``auto`` or one of :data:`MODES`)."""
    if adapt == "auto":
        return AutoAdaptive(estimator)
    if adapt not in MODES:
        raise ValueError(f"unknown adaptation {adapt!r}; use {CHOICES}")
    return SpeakerAdaptive(estimator, adapt)
