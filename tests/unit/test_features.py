"""ser.features: spec versions, determinism, batch extraction, per-item errors, cache hits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ser.errors import AudioError, SerError
from ser.features import NAMES, FeatureSpecError, get_spec, spec_for_version
from ser.features import batch as batch_mod
from ser.features.batch import featurize
from ser.features.cache import DiskCache
from tests import audiogen

ROOT = Path(__file__).resolve().parents[2]


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
    import librosa

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


# --- the default spec without librosa; threaded batches ---------------------------------------


def _spectra(seconds: float = 1.3, seed: int = 3):
    """Power and magnitude spectra (frames, bins) of a voice-like clip, as default.py makes them."""
    from ser.features import default

    c = default._consts(16000, 1024, 40, 50.0, 8000.0, 4000.0)
    y = audiogen.voice_like("excited", seconds=seconds, seed=seed).astype(np.float32)
    spec = np.fft.rfft(default._frames(y, 1024, 160) * c["w"], axis=1).astype(np.complex64)
    power = spec.real * spec.real + spec.imag * spec.imag
    return power, np.sqrt(power), c


def test_default_reproduces_librosa_bit_for_bit():
    import librosa

    from ser.features import default

    power, mag, c = _spectra()
    mel = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=40, fmin=50.0, fmax=8000.0)
    assert np.array_equal(default._mel_filters(16000, 1024, 40, 50.0, 8000.0), mel)
    centers = librosa.mel_frequencies(42, fmin=50.0, fmax=8000.0)
    assert np.array_equal(default._mel_frequencies(42, 50.0, 8000.0), centers)
    logmel = (10.0 * np.log10(power @ c["mel"] + 1e-10)).T
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=20)
    assert np.array_equal(scipy_dct_mfcc(logmel), mfcc)
    for x in (mfcc, logmel[:1]):
        for order in (1, 2):
            expected = librosa.feature.delta(x, width=9, order=order, mode="nearest", axis=-1)
            assert np.array_equal(default._delta(x, 9, order), expected)
    contrast = librosa.feature.spectral_contrast(
        S=mag.T, sr=16000, n_fft=1024, fmin=100.0, n_bands=5
    )
    ours = default._spectral_contrast(mag.T, c["freqs64"], 16000, 100.0, 5)
    assert np.array_equal(ours, contrast)


def scipy_dct_mfcc(logmel: np.ndarray) -> np.ndarray:
    import scipy.fft

    return scipy.fft.dct(logmel, axis=-2, type=2, norm="ortho")[..., :20, :]


def test_default_spec_does_not_import_librosa(clips):
    # librosa (numba, scipy.signal) costs more than a second per process: featurising with the
    # default spec must not pay it.
    code = (
        "import sys; from ser.features.batch import featurize; "
        f"out = featurize([{str(clips[0])!r}, {str(clips[1])!r}], 'default', n_jobs=2); "
        "assert all(v.shape for v in out); "
        "heavy = ('librosa', 'numba', 'scipy.signal', 'joblib'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", NAMES)
def test_threads_equal_serial_bit_for_bit(name, clips):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # what the threads run with
        serial = featurize(clips, name, n_jobs=1)
    threaded = featurize(clips * 2, name, n_jobs=3)
    assert all(np.array_equal(a, b) for a, b in zip(serial * 2, threaded))


def test_threads_keep_order_and_errors_in_place(tmp_path, clips):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    silent = audiogen.write(tmp_path / "silent.wav", np.zeros(16000, np.float32))
    sources = [bad, *clips, silent, tmp_path / "missing.wav", clips[4].read_bytes(), clips[0]]
    serial = featurize(sources, "default", n_jobs=1)
    threaded = featurize(sources, "default", n_jobs=2)
    assert [type(r).__name__ for r in threaded] == [type(r).__name__ for r in serial]
    codes = [r.code for r in threaded if isinstance(r, SerError)]
    assert codes == ["AUDIO_UNREADABLE", "AUDIO_SILENT", "AUDIO_UNREADABLE"]
    for a, b in zip(serial, threaded):
        if isinstance(a, np.ndarray):
            assert np.allclose(a, b, rtol=1e-5, atol=1e-5)  # BLAS threads may move last bits
    assert np.array_equal(threaded[-1], threaded[1])  # clips[0] twice: same vector


def test_threaded_extractor_bug_fails_its_row_only(monkeypatch, clips):
    from ser import audio

    spec = get_spec("default")
    real = spec.module.extract
    lengths = [len(audio.decode(p, sr=spec.sr)) for p in clips]
    cut = float(np.median(lengths))

    def flaky(y, sr):
        if len(y) > cut:
            raise ValueError("boom")
        return real(y, sr)

    monkeypatch.setattr(spec.module, "extract", flaky)
    out = featurize(clips, spec, n_jobs=2)
    for n, r in zip(lengths, out):
        if n > cut:
            assert isinstance(r, SerError) and r.code == "FEATURE_ERROR"
        else:
            assert isinstance(r, np.ndarray)


def test_threads_fill_the_cache_and_report_progress(tmp_path, clips, monkeypatch):
    cache = DiskCache(tmp_path / "cache")
    seen = []
    first = featurize(clips, "default", cache=cache, n_jobs=2, progress=lambda *a: seen.append(a))
    assert seen[0] == (0, len(clips)) and seen[-1] == (len(clips), len(clips))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    calls = []
    real = batch_mod.extract_one
    monkeypatch.setattr(batch_mod, "extract_one", lambda *a: calls.append(a) or real(*a))
    second = featurize(clips, "default", cache=cache, n_jobs=2)
    assert calls == []
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_failing_progress_stops_the_threads_and_restores_blas(clips):
    from threadpoolctl import threadpool_info

    before = [i["num_threads"] for i in threadpool_info()]

    def cancel(done, total):
        if done:
            raise KeyboardInterrupt  # e.g. JobCancelled from a worker's progress callback

    with pytest.raises(KeyboardInterrupt):
        featurize(clips * 4, "default", n_jobs=2, progress=cancel)
    assert [i["num_threads"] for i in threadpool_info()] == before


def test_an_unreadable_recording_is_named_without_its_directory(tmp_path):
    """A training's failed files keep their errors: never the server's absolute path."""
    (tmp_path / "take.wav").mkdir()  # read_bytes fails (IsADirectoryError), even for root
    [err] = featurize([tmp_path / "take.wav"], "default", cache=DiskCache(tmp_path / "cache"))
    assert isinstance(err, AudioError) and err.code == "AUDIO_UNREADABLE"
    assert err.message.startswith("cannot read take.wav:") and str(tmp_path) not in err.message
