"""The model bundle: a fitted model and everything needed to use and audit it."""

from __future__ import annotations

import importlib
import io
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import joblib
import numpy as np
from sklearn.pipeline import Pipeline

import ser
from ser import audio
from ser.errors import SerError
from ser.features import FeatureSpec, spec_for_version
from ser.features.batch import Progress, featurize
from ser.ml import adapt as adaptation

# Where the classes of a bundle lived before the ser.ml package: models trained then (kept in
# a deployment's registry) name these modules in their pickles and still load.
LEGACY_MODULES = {"ser.model": "ser.ml.bundle", "ser.adapt": "ser.ml.adapt"}


@dataclass
class Bundle:
    """A fitted model and everything needed to use and audit it.

    ``pipeline`` is a :class:`ser.ml.adapt.SpeakerAdaptive` (scaler + classifier on raw and,
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
        buf = io.BytesIO()
        joblib.dump(self, buf, compress=3)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        """Load bytes from a TRUSTED source (verify the signature first)."""
        for old, new in LEGACY_MODULES.items():
            sys.modules.setdefault(old, importlib.import_module(new))
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

    def featurize(
        self,
        sources: Sequence[Path | str | bytes],
        *,
        cache=None,
        n_jobs: int = 1,
        progress: Progress | None = None,
        max_seconds: float | None = audio.DEFAULT_MAX_SECONDS,
    ) -> list[np.ndarray | SerError]:
        """The feature vector this model reads from each source, or its error, in order."""
        return featurize(
            sources,
            self.spec,
            cache=cache,
            n_jobs=n_jobs,
            progress=progress,
            max_seconds=max_seconds,
        )

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
        feats = self.featurize(
            sources, cache=cache, n_jobs=n_jobs, progress=progress, max_seconds=max_seconds
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
    # From the installed distributions: no need to import librosa (a second) to name it.
    return {
        "python": platform.python_version(),
        "ser": ser.__version__,
        **{name: metadata.version(name) for name in ("numpy", "scikit-learn", "librosa", "joblib")},
    }
