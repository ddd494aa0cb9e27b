"""Training: featurize a dataset, evaluate it under its protocols, fit the final model."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.contract import PROTOCOLS, REPEATS
from ser.datasets import Dataset, check_protocol, load_dataset
from ser.errors import DatasetError, SerError
from ser.features import FeatureSpec, get_spec
from ser.features.batch import Progress, featurize
from ser.features.cache import DiskCache, content_hash
from ser.ml import adapt as adaptation
from ser.ml.bundle import Bundle, library_versions
from ser.ml.evaluation import N_SPLITS, cross_validate
from ser.ml.pipeline import build_model, default_classifier


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
    dataset_dir: Path | str | Dataset,
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
    it), then fit the model on every usable recording of ``dataset_dir`` (a folder, or a
    Dataset already loaded: the service loads it naming it relative to the data root).

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
    metrics["protocols"] = {  # each with its confusion matrix (the model page draws them)
        name: {k: v for k, v in m.items() if k != "failed_files"} for name, m in every.items()
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
