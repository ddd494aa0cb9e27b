"""The classifier pipeline, leak-free evaluation protocols, metrics, and the model bundle."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import platform
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
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
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ser import adapt as adaptation
from ser import audio
from ser.datasets import Dataset, check_protocol, load_dataset
from ser.errors import DatasetError, SerError
from ser.features import FeatureSpec, get_spec, spec_for_version
from ser.features.batch import Progress, featurize
from ser.features.cache import DiskCache, content_hash

PROTOCOLS = ("stratified", "speaker")
N_SPLITS = 4  # the prototype's stratified 4-fold
RANDOM_STATE = 42
MAX_LOSO_SPEAKERS = 12  # above this many speakers, grouped k-fold instead of one fold each
ECE_BINS = 15
REPEATS = 10  # stratified CV is averaged over this many shuffles (seeds 42, 43, ...)
CONFOUNDED_AT = 0.5  # a speaker-majority baseline F1 this high: the labels follow the speakers


CLASSIFIERS = ("logreg", "svc")

# The seed pipeline keeps the prototype's libsvm Platt scaling (SVC(probability=True)), which
# scikit-learn 1.9 deprecates for removal in 1.11; requirements.txt pins 1.9.
warnings.filterwarnings("ignore", message="The `probability` parameter", category=FutureWarning)


def default_classifier(features: str) -> str:
    """The prototype's SVC for the seed features; the calibrated linear model otherwise."""
    return "svc" if features == "seed" else "logreg"


def build_pipeline(features: str = "default", classifier: str | None = None) -> Pipeline:
    """Scaling and the classifier as one Pipeline (cloned per CV fold).

    ``logreg`` (the default for the default features) is a multinomial logistic regression
    with strong L2 regularisation: on EMO-DB it beats the RBF SVC on F1 under both protocols
    and its probabilities are calibrated as they come (ECE 0.04 where the SVC's Platt scaling
    gives 0.085; see README). ``svc`` is the prototype's SVC(C=10, balanced) with Platt scaling.
    """
    classifier = classifier or default_classifier(features)
    if classifier == "svc":
        clf = SVC(C=10, class_weight="balanced", probability=True, random_state=RANDOM_STATE)
    elif classifier == "logreg":
        clf = LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000)
    else:
        raise SerError(
            "UNKNOWN_CLASSIFIER", f"unknown classifier {classifier!r}; use {CLASSIFIERS}"
        )
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


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


def compute_metrics(
    y: np.ndarray,
    proba: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    classes: Sequence[str],
) -> dict:
    """Fold and pooled metrics of out-of-fold probabilities (labels are class indices)."""
    pred = proba.argmax(axis=1)
    labels = np.arange(len(classes))
    fold_f1 = [_f1(y[te], pred[te]) for _, te in splits]
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    return {
        "f1_macro_mean": float(np.mean(fold_f1)),
        "f1_macro_std": float(np.std(fold_f1)),
        "f1_macro_folds": [float(v) for v in fold_f1],
        "uar": float(balanced_accuracy_score(y, pred)),
        "accuracy": float(accuracy_score(y, pred)),
        "log_loss": float(log_loss(y, proba, labels=labels)),
        "ece": expected_calibration_error(proba, y),
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
        "n_folds": len(splits),
    }


def _f1(y_true: np.ndarray, pred: np.ndarray) -> float:
    """F1-macro of one fold over the classes it holds or predicts: a class that a test fold
    lacks (a held-out speaker who never voices it) is no error of the model's, while a class
    predicted there is a false positive and counts."""
    return float(f1_score(y_true, pred, average="macro", zero_division=0))


def chance_f1(y: np.ndarray, splits) -> float:
    """F1-macro of stratified random guessing (the training fold's class frequencies)."""
    f1 = []
    for k, (tr, te) in enumerate(splits):
        guess = DummyClassifier(strategy="stratified", random_state=k).fit(tr[:, None], y[tr])
        f1.append(_f1(y[te], guess.predict(te[:, None])))
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
        f1.append(_f1(y[te], np.array([majority.get(s, overall) for s in groups[te]])))
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

    ``estimator`` is a scikit-learn classifier, or a :class:`ser.adapt.SpeakerAdaptive`
    (given each row's speaker: the test speakers' statistics come from their test clips).
    F1 is averaged over every fold of every repetition; the pooled figures (UAR, accuracy,
    log-loss, ECE) are averaged over the repetitions; the confusion matrix and per-class
    figures are the first repetition's (the prototype's seed 42). Returns the metrics and
    the first repetition's out-of-fold probabilities.
    """
    from joblib import Parallel, delayed

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
        reports.append(compute_metrics(y, proba, [splits[k] for k in block], classes))
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


@dataclass
class Bundle:
    """A fitted model and everything needed to use and audit it.

    ``pipeline`` is a :class:`ser.adapt.SpeakerAdaptive` (scaler + classifier on raw and,
    when adapted, speaker-normalised features); bundles from before speaker adaptation hold
    the scaler + classifier Pipeline itself and predict as before.
    """

    pipeline: Pipeline | adaptation.SpeakerAdaptive
    classes: list[str]
    feature_spec: str
    metrics: dict
    dataset: str = ""
    fingerprint: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    versions: dict = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Serialized with joblib (unsigned: the registry signs and verifies)."""
        import joblib

        buf = io.BytesIO()
        joblib.dump(self, buf, compress=3)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        """Load bytes from a TRUSTED source (verify the signature first)."""
        import joblib

        obj = joblib.load(io.BytesIO(data))
        if not isinstance(obj, cls):
            raise SerError("MODEL_INVALID", "the artifact is not a model bundle")
        return obj

    @property
    def spec(self) -> FeatureSpec:
        return spec_for_version(self.feature_spec)

    @property
    def adapt(self) -> str:
        """The adaptation mode the model uses (``off``, ``speaker`` or ``both``)."""
        return getattr(self.pipeline, "mode_", "off")

    def features(
        self, source: audio.Source, max_seconds: float | None = audio.DEFAULT_MAX_SECONDS
    ) -> np.ndarray:
        """The feature vector this model reads from one recording (raises AudioError)."""
        return self.spec.from_source(source, max_seconds=max_seconds)

    def classify(self, X: np.ndarray, stats: Sequence[adaptation.Stats | None] | None = None):
        """One result per feature row; ``stats[i]`` is row i's speaker statistics (None:
        unknown speaker). ``adapted`` says whether the speaker-adapted model answered."""
        X = np.atleast_2d(X)
        if isinstance(self.pipeline, adaptation.SpeakerAdaptive):
            rows = list(stats) if stats is not None else [None] * len(X)
            proba, adapted = self.pipeline.proba_for_rows(X, rows)
        else:
            proba, adapted = self.pipeline.predict_proba(X), np.zeros(len(X), dtype=bool)
        out = []
        for row, was_adapted in zip(proba, adapted):
            best = int(np.argmax(row))
            out.append(
                {
                    "emotion": self.classes[best],
                    "probability": float(row[best]),
                    "probabilities": {c: float(p) for c, p in zip(self.classes, row)},
                    "adapted": bool(was_adapted),
                }
            )
        return out

    def predict(
        self,
        source: audio.Source,
        max_seconds: float | None = audio.DEFAULT_MAX_SECONDS,
        stats: adaptation.Stats | None = None,
    ) -> dict:
        """The emotion of one recording, its probability and the full distribution.

        ``stats``: its speaker's statistics, this recording's features included."""
        return self.classify(self.features(source, max_seconds), [stats])[0]

    def predict_many(
        self,
        sources: Sequence[Path | str | bytes],
        *,
        cache=None,
        n_jobs: int = 1,
        progress: Progress | None = None,
        max_seconds: float | None = audio.DEFAULT_MAX_SECONDS,
        speakers: Sequence[str | None] | None = None,
        stats: dict[str, adaptation.Stats] | None = None,
    ) -> list[dict | SerError]:
        """One prediction or one error per source, in order.

        ``speakers`` names each source's speaker (None: unknown); their statistics come
        from ``stats`` or, without it, from these sources' own features."""
        feats = featurize(
            sources,
            self.spec,
            cache=cache,
            n_jobs=n_jobs,
            progress=progress,
            max_seconds=max_seconds,
        )
        ok = [i for i, f in enumerate(feats) if isinstance(f, np.ndarray)]
        results: list[dict | SerError] = list(feats)  # errors stay in place
        if ok:
            X = np.stack([feats[i] for i in ok])
            rows = None
            if speakers is not None:
                names = [speakers[i] for i in ok]
                if stats is None:
                    known = [k for k, s in enumerate(names) if s is not None]
                    stats = adaptation.by_speaker(X[known], [names[k] for k in known])
                rows = [stats.get(s) if s is not None else None for s in names]
            for i, res in zip(ok, self.classify(X, rows)):
                results[i] = res
        return results


def library_versions() -> dict[str, str]:
    """Versions of what shapes a bundle's behaviour."""
    import joblib
    import librosa
    import sklearn

    import ser

    return {
        "python": platform.python_version(),
        "ser": ser.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "librosa": librosa.__version__,
        "joblib": joblib.__version__,
    }


@dataclass
class Featurized:
    """A dataset's feature matrix (failed files dropped and listed)."""

    dataset: Dataset
    X: np.ndarray
    y: np.ndarray
    groups: list[str] | None
    kept: list[int]
    failures: dict[str, dict]
    fingerprint: str
    seconds: float


def featurize_dataset(
    ds: Dataset,
    spec: FeatureSpec,
    *,
    cache=None,
    n_jobs: int = 1,
    progress: Progress | None = None,
) -> Featurized:
    """Features for every recording of ``ds``; unreadable recordings are reported, not fatal."""
    t0 = time.perf_counter()
    feats = featurize(list(ds.paths), spec, cache=cache, n_jobs=n_jobs, progress=progress)
    seconds = time.perf_counter() - t0
    kept = [i for i, f in enumerate(feats) if isinstance(f, np.ndarray)]
    failures = {
        str(ds.paths[i].relative_to(ds.root)): f.to_dict()
        for i, f in enumerate(feats)
        if isinstance(f, SerError)
    }
    if not kept:
        raise DatasetError(
            "DATASET_NO_USABLE_AUDIO", f"none of the {len(ds)} recordings could be used"
        )
    index = {c: i for i, c in enumerate(ds.classes)}
    y = np.array([index[ds.labels[i]] for i in kept])
    X = np.stack([feats[i] for i in kept])
    return Featurized(
        dataset=ds,
        X=X,
        y=y,
        groups=[ds.speakers[i] for i in kept] if ds.speakers else None,
        kept=kept,
        failures=failures,
        fingerprint=_fingerprint(ds, kept),
        seconds=seconds,
    )


def _fingerprint(ds: Dataset, kept: list[int]) -> str:
    """Identifies the training set: the content and label of every recording used."""
    items = sorted(f"{content_hash(ds.paths[i].read_bytes())}:{ds.labels[i]}" for i in kept)
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def build_model(
    features: str = "default", classifier: str | None = None, adapt: str = "auto"
) -> adaptation.SpeakerAdaptive:
    """The scaler + classifier pipeline inside the speaker adaptation step ``adapt``."""
    if adapt not in adaptation.CHOICES:
        raise SerError(
            "UNKNOWN_ADAPTATION", f"unknown adaptation {adapt!r}; use {adaptation.CHOICES}"
        )
    return adaptation.make_adaptive(build_pipeline(features, classifier), adapt)


def default_protocols(ds: Dataset) -> tuple[str, ...]:
    """Both protocols where the dataset's speakers allow a speaker-independent one."""
    try:
        check_protocol(ds, "speaker", N_SPLITS)
    except DatasetError:
        return ("stratified",)
    return PROTOCOLS


def evaluate_features(
    data: Featurized,
    protocol: str = "stratified",
    *,
    features: str = "default",
    classifier: str | None = None,
    adapt: str = "auto",
    repeats: int = REPEATS,
    n_jobs: int = 1,
) -> tuple[dict, np.ndarray]:
    """Cross-validate featurized data under ``protocol``; metrics and OOF probabilities."""
    ds = data.dataset
    check_protocol(ds, protocol, N_SPLITS)
    classifier = classifier or default_classifier(features)
    t0 = time.perf_counter()
    metrics, proba = cross_validate(
        data.X,
        data.y,
        data.groups,
        protocol,
        build_model(features, classifier, adapt),
        ds.classes,
        n_jobs=n_jobs,
        repeats=repeats,
    )
    metrics.update(
        protocol=protocol,
        adapt=adapt,
        features=get_spec(features).version,
        classifier=classifier,
        n_samples=int(len(data.y)),
        classes=list(ds.classes),
        layout=ds.layout,
        failed_files=data.failures,
        featurize_seconds=round(data.seconds, 3),
        fit_seconds=round(time.perf_counter() - t0, 3),
    )
    return metrics, proba


def fit_model(
    data: Featurized,
    *,
    features: str = "default",
    classifier: str | None = None,
    adapt: str = "auto",
) -> adaptation.SpeakerAdaptive:
    """The model fitted on every usable recording (``auto`` chooses its mode here too)."""
    classifier = classifier or default_classifier(features)
    return build_model(features, classifier, adapt).fit(data.X, data.y, data.groups)


def _load_featurized(
    dataset_dir, protocol: str, features: str, cache_dir, cache, n_jobs, progress
) -> Featurized:
    """The dataset (checked for ``protocol``) and its features, through the cache."""
    ds = dataset_dir if isinstance(dataset_dir, Dataset) else load_dataset(dataset_dir)
    check_protocol(ds, protocol, N_SPLITS)
    if cache is None and cache_dir:
        cache = DiskCache(cache_dir)
    spec = get_spec(features)
    return featurize_dataset(ds, spec, cache=cache, n_jobs=n_jobs or 1, progress=progress)


def evaluate_dataset(
    dataset_dir: Path | str | Dataset,
    *,
    protocol: str = "stratified",
    features: str = "default",
    classifier: str | None = None,
    adapt: str = "auto",
    repeats: int = REPEATS,
    cache_dir: Path | None = None,
    cache=None,
    n_jobs: int = 1,
    progress: Progress | None = None,
) -> tuple[dict, Featurized, np.ndarray]:
    """Featurize and cross-validate a dataset; returns metrics, features and OOF probabilities.

    ``cache`` (a DiskCache or RedisCache) wins over ``cache_dir`` (a DiskCache there).
    """
    data = _load_featurized(dataset_dir, protocol, features, cache_dir, cache, n_jobs, progress)
    metrics, proba = evaluate_features(
        data,
        protocol,
        features=features,
        classifier=classifier,
        adapt=adapt,
        repeats=repeats,
        n_jobs=n_jobs,
    )
    return metrics, data, proba


def train(
    dataset_dir: Path | str,
    *,
    protocol: str = "stratified",
    features: str = "default",
    classifier: str | None = None,
    adapt: str = "auto",
    repeats: int = REPEATS,
    cache_dir: Path | None = None,
    cache=None,
    n_jobs: int | None = None,
    progress: Progress | None = None,
) -> Bundle:
    """Evaluate with ``protocol`` (and with the speaker protocol too, where speakers allow
    it), then fit the model on every usable recording.

    The bundle's metrics are ``protocol``'s, with every protocol's under ``protocols``."""
    data = _load_featurized(dataset_dir, protocol, features, cache_dir, cache, n_jobs, progress)
    ds, spec = data.dataset, get_spec(features)
    names = [protocol] + [p for p in default_protocols(ds) if p != protocol]
    every = {}
    for name in names:
        every[name], _ = evaluate_features(
            data,
            name,
            features=features,
            classifier=classifier,
            adapt=adapt,
            repeats=repeats,
            n_jobs=n_jobs or 1,
        )
    t0 = time.perf_counter()
    fitted = fit_model(data, features=features, classifier=classifier, adapt=adapt)
    metrics = dict(every[protocol])
    metrics["protocols"] = {
        name: {k: v for k, v in m.items() if k not in ("confusion_matrix", "failed_files")}
        for name, m in every.items()
    }
    metrics.update(adapt_chosen=fitted.mode_, final_fit_seconds=round(time.perf_counter() - t0, 3))
    return Bundle(
        pipeline=fitted,
        classes=list(ds.classes),
        feature_spec=spec.version,
        metrics=metrics,
        dataset=str(ds.root),
        fingerprint=data.fingerprint,
        versions=library_versions(),
    )


def warm_up(features: str = "default") -> None:
    """Pay librosa/numba first-call costs once per process, before real work arrives."""
    rng = np.random.default_rng(0)
    spec = get_spec(features)
    t = np.arange(spec.sr) / spec.sr
    y = (0.2 * np.sin(2 * np.pi * 150 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    spec.from_waveform(y)
