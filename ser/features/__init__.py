"""Versioned feature specs: a name and its parameters give a stable version string.

The version is the cache key (with the file's content hash) and is stored in every model
bundle, so a bundle is never fed features computed another way.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
from dataclasses import dataclass
from functools import cache
from types import ModuleType

import numpy as np
import soundfile as sf

from ser import audio
from ser.errors import SerError

# Bump a spec's revision whenever its code changes its output without a parameter change.
_MODULES = {"seed": ("ser.features.seed", 1), "default": ("ser.features.default", 1)}
NAMES = tuple(_MODULES)


class FeatureSpecError(SerError):
    """An unknown feature spec name."""

    code = "UNKNOWN_FEATURES"
    http_status = 400


@dataclass(frozen=True)
class FeatureSpec:
    """A feature extractor with its parameters and version string."""

    name: str
    module: ModuleType
    revision: int

    @property
    def params(self) -> dict:
        return dict(self.module.PARAMS)

    @property
    def sr(self) -> int:
        return int(self.module.PARAMS["sr"])

    @property
    def version(self) -> str:
        blob = json.dumps({"params": self.params, "rev": self.revision}, sort_keys=True)
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def names(self) -> list[str]:
        """Feature names, one per vector element."""
        return list(self.module.names())

    def from_waveform(self, y: np.ndarray) -> np.ndarray:
        """Features of a decoded mono waveform at :attr:`sr`."""
        return np.asarray(self.module.extract(y, self.sr), dtype=np.float32)

    def from_windows(self, y: np.ndarray, bounds: list[tuple[int, int]]) -> np.ndarray:
        """Features of each window ``y[a:b]`` of ``bounds`` (overlapping windows of one
        stretch; the spec may share their frames' work: ``extract_windows``), one row each."""
        many = getattr(self.module, "extract_windows", None)
        if many is None:
            rows = [self.module.extract(y[a:b], self.sr) for a, b in bounds]
        else:
            rows = many(y, self.sr, bounds)
        return np.asarray(np.stack(rows), dtype=np.float32)

    def from_source(
        self, source: audio.Source, max_seconds: float | None = audio.DEFAULT_MAX_SECONDS
    ) -> np.ndarray:
        """Decode, validate and featurize one recording (raises AudioError)."""
        return self.from_waveform(audio.decode(source, sr=self.sr, max_seconds=max_seconds))


@cache
def get_spec(name: str) -> FeatureSpec:
    """The spec called ``name`` (``seed`` or ``default``)."""
    if name not in _MODULES:
        raise FeatureSpecError(message=f"unknown feature spec {name!r}; choose from {NAMES}")
    module_name, revision = _MODULES[name]
    return FeatureSpec(name, importlib.import_module(module_name), revision)


def spec_for_version(version: str) -> FeatureSpec:
    """The spec whose current version string is ``version``, or FeatureSpecError."""
    name = version.rsplit("-", 1)[0]
    spec = get_spec(name)
    if spec.version != version:
        raise FeatureSpecError(
            "FEATURE_SPEC_MISMATCH",
            f"features {version} are not what this code computes ({spec.version}); retrain",
        )
    return spec


WARM_UP_SR = 22050  # not the analysis rate: the warm-up pays the resampler's first call too
# Longer than most clips people send (EMO-DB's average is 2.8 s): the arrays a clip needs are
# then allocated once already, and the first real clip does not pay for their first page
# faults (≈1.5 ms of a first prediction, measured in-process).
WARM_UP_SECONDS = 4.0


def warm_up_clip() -> bytes:
    """The warm-up recording: :data:`WARM_UP_SECONDS` of a 150 Hz tone in faint noise, as the
    bytes of a 16-bit WAV file at :data:`WARM_UP_SR`."""
    rng = np.random.default_rng(0)
    t = np.arange(int(WARM_UP_SECONDS * WARM_UP_SR)) / WARM_UP_SR
    y = (0.2 * np.sin(2 * np.pi * 150 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    wav = io.BytesIO()
    sf.write(wav, y, WARM_UP_SR, format="WAV", subtype="PCM_16")
    return wav.getvalue()


def warm_up(features: str = "default") -> np.ndarray:
    """Pay the first-call costs of a recording's whole path once per process, before real work
    arrives: decoding a WAV from bytes (libsndfile), resampling (soxr) and the features
    (librosa/numba for the seed features). Returns the warm-up clip's features."""
    return get_spec(features).from_source(warm_up_clip())
