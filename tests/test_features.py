"""ser.features: spec versions, determinism, batch extraction, per-item errors, cache hits."""

from __future__ import annotations

import numpy as np
import pytest

from ser.errors import AudioError, SerError
from ser.features import NAMES, FeatureSpecError, get_spec, spec_for_version
from ser.features import batch as batch_mod
from ser.features.batch import featurize
from ser.features.cache import DiskCache
from tests import audiogen


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    paths = []
    for i, label in enumerate(["calm", "excited", "tense"] * 3):
        y = audiogen.voice_like(label, seconds=1.0 + 0.1 * i, seed=i)
        paths.append(audiogen.write(root / f"c{i}.wav", y, 16000))
    return paths


@pytest.mark.parametrize("name", NAMES)
def test_spec_vector_is_finite_fixed_length_and_named(name, clips):
    spec = get_spec(name)
    vectors = [spec.from_source(p) for p in clips[:3]]
    assert all(v.shape == (len(spec.names()),) for v in vectors)
    assert all(np.isfinite(v).all() for v in vectors)
    assert len(set(spec.names())) == len(spec.names())


@pytest.mark.parametrize("name", NAMES)
def test_features_are_deterministic(name, clips):
    spec = get_spec(name)
    assert np.array_equal(spec.from_source(clips[0]), spec.from_source(clips[0]))


@pytest.mark.parametrize("name", NAMES)
def test_odd_inputs_give_finite_features(name):
    spec = get_spec(name)
    sr = spec.sr
    for y in (
        audiogen.noise(0.15, sr=sr),  # just above the shortest accepted
        audiogen.chirp(seconds=2.0, sr=sr),
        np.clip(audiogen.tone(200, 1.0, sr=sr, amp=3.0), -1, 1),  # hard clipping
        audiogen.tone(50, 1.0, sr=sr, amp=1e-3),  # quiet, below any pitch range
    ):
        assert np.isfinite(spec.from_waveform(y.astype(np.float32))).all()


def test_version_is_stable_and_changes_with_parameters(monkeypatch):
    spec = get_spec("seed")
    v1 = spec.version
    assert v1 == get_spec("seed").version and v1.startswith("seed-")
    assert spec_for_version(v1) is spec
    monkeypatch.setitem(spec.module.PARAMS, "n_mfcc", 13)
    assert spec.version != v1
    with pytest.raises(FeatureSpecError):
        spec_for_version(v1)


def test_unknown_spec():
    with pytest.raises(FeatureSpecError):
        get_spec("nope")


def test_seed_reproduces_the_prototype_exactly(clips):
    librosa = pytest.importorskip("librosa")
    y, sr = librosa.load(clips[1])
    expected = np.mean(librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40).T, axis=0)
    assert np.allclose(get_spec("seed").from_source(clips[1]), expected, atol=1e-5)


def test_batch_returns_per_item_errors(tmp_path, clips):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    silent = audiogen.write(tmp_path / "silent.wav", np.zeros(16000, np.float32))
    sources = [clips[0], bad, clips[1], silent, tmp_path / "missing.wav", clips[2].read_bytes()]
    out = featurize(sources, "seed", n_jobs=1)
    assert [type(r).__name__ for r in out] == [
        "ndarray",
        "AudioError",
        "ndarray",
        "AudioError",
        "AudioError",
        "ndarray",
    ]
    assert out[1].code == "AUDIO_UNREADABLE" and out[3].code == "AUDIO_SILENT"


def test_parallel_equals_serial_and_reports_progress(clips):
    seen = []
    serial = featurize(clips, "seed", n_jobs=1)
    parallel = featurize(clips, "seed", n_jobs=2, progress=lambda d, t: seen.append((d, t)))
    # Same numbers whichever process computes them (BLAS threading may move the last bits).
    assert all(np.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(serial, parallel))
    assert seen[-1] == (len(clips), len(clips))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_extractor_bug_fails_its_row_only(monkeypatch, clips):
    spec = get_spec("seed")
    real = spec.module.extract

    def flaky(y, sr):
        if len(y) > 23000:  # clips[1] (1.1 s at 22050 Hz), not clips[0]
            raise ValueError("boom")
        return real(y, sr)

    monkeypatch.setattr(spec.module, "extract", flaky)
    out = featurize(clips[:2], spec, n_jobs=1)
    assert isinstance(out[0], np.ndarray)
    assert isinstance(out[1], SerError) and out[1].code == "FEATURE_ERROR"


def test_cache_hit_decodes_nothing(tmp_path, clips, monkeypatch):
    cache = DiskCache(tmp_path / "cache")
    first = featurize(clips, "seed", cache=cache, n_jobs=1)
    calls = []
    real = batch_mod.extract_one
    monkeypatch.setattr(batch_mod, "extract_one", lambda *a: calls.append(a) or real(*a))
    second = featurize(clips, "seed", cache=cache, n_jobs=1)
    assert calls == []
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    # A changed file is a miss (content-addressed), the others still hit.
    audiogen.write(clips[0], audiogen.voice_like("tense", 1.3, seed=99), 16000)
    featurize(clips, "seed", cache=cache, n_jobs=1)
    assert len(calls) == 1


def test_cache_ignores_corrupt_entries(tmp_path):
    cache = DiskCache(tmp_path)
    cache.put("v", "abcd", np.arange(3, dtype=np.float32))
    assert np.array_equal(cache.get("v", "abcd"), [0, 1, 2])
    (tmp_path / "v" / "ab" / "abcd.npy").write_bytes(b"garbage")
    assert cache.get("v", "abcd") is None
    assert cache.get("v", "ffff") is None


def test_errors_survive_process_boundaries(tmp_path, clips):
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(b"OggS" + b"\0" * 100)
    out = featurize([bad] + clips * 3, "seed", n_jobs=2)
    assert isinstance(out[0], AudioError) and out[0].code == "AUDIO_UNREADABLE"
    assert all(isinstance(r, np.ndarray) for r in out[1:])
