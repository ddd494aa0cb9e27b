"""ser.audio: formats, rates, channels, resampling, and every AudioError code."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from ser import audio
from ser.errors import AudioError
from tests import audiogen


@pytest.mark.parametrize(
    "suffix,subtype",
    [
        (".wav", "PCM_U8"),
        (".wav", "PCM_16"),
        (".wav", "PCM_24"),
        (".wav", "PCM_32"),
        (".wav", "FLOAT"),
        (".wav", "DOUBLE"),
        (".flac", "PCM_16"),
        (".flac", "PCM_24"),
        (".ogg", "VORBIS"),
    ],
)
def test_decodes_formats_to_mono_16k_float32(tmp_path, suffix, subtype):
    y = audiogen.tone(440.0, 1.0, sr=16000)
    path = audiogen.write(tmp_path / f"clip{suffix}", y, 16000, subtype)
    out = audio.decode(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 16000) <= 1
    # Same tone back: the correlation with the original is near 1 for every format.
    n = min(len(out), len(y))
    assert np.corrcoef(out[:n], y[:n])[0, 1] > 0.95


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 96000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_any_rate_and_channel_count(tmp_path, sr, channels):
    y = audiogen.tone(300.0, 0.5, sr=sr)
    frames = np.stack([y] * channels, axis=1) if channels > 1 else y
    path = audiogen.write(tmp_path / "multi.wav", frames, sr, "PCM_16")
    out = audio.decode(path, sr=16000)
    assert out.shape == (8000,)
    # The tone survives mixing and resampling: the spectral peak stays at 300 Hz.
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16000 / len(out) - 300.0) < 5


def test_native_rate_kept_when_sr_none(tmp_path):
    path = audiogen.write(tmp_path / "a.wav", audiogen.tone(sr=22050), 22050)
    assert len(audio.decode(path, sr=None)) == 22050


def test_decodes_bytes_and_file_objects(tmp_path):
    path = audiogen.write(tmp_path / "a.flac", audiogen.tone(), 16000)
    data = path.read_bytes()
    with open(path, "rb") as fh:
        from_file = audio.decode(fh)
    assert np.array_equal(audio.decode(data), from_file)


def test_errors_never_name_the_directory_a_file_lives_in(tmp_path):
    secret = tmp_path / "srv-private-dir"
    secret.mkdir()
    fake = secret / "fake.wav"
    fake.write_text("not audio at all")
    for source in (fake, str(fake), secret / "missing.wav"):
        with pytest.raises(AudioError) as err:
            audio.decode(source)
        assert "srv-private-dir" not in err.value.message, err.value.message
    with pytest.raises(AudioError, match="not a readable audio file: Format not recognised"):
        audio.decode(fake)


def _wav_with_pad_chunk(y: np.ndarray, sr: int) -> bytes:
    pcm = (y * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, sr, sr * 2, 2, 16)
    pad = b"\0" * 12
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"PAD "
        + struct.pack("<I", len(pad))
        + pad
        + b"data"
        + struct.pack("<I", len(pcm))
        + pcm
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_wav_with_extra_pad_chunk_loads(tmp_path):
    y = audiogen.tone(200.0, 0.5)
    out = audio.decode(_wav_with_pad_chunk(y, 16000))
    assert len(out) == len(y)
    assert np.max(np.abs(out - y)) < 1e-3


def test_emodb_pad_chunk_files_load(emodb):
    for name in ("14a07Aa", "14a07Fd", "14a07Na", "14a07Wc"):
        y = audio.decode(emodb / f"{name}.wav")
        assert len(y) > 16000 * 0.5


def _code(source, **kw) -> str:
    with pytest.raises(AudioError) as err:
        audio.decode(source, **kw)
    assert err.value.message  # a readable sentence, not just a code
    return err.value.code


def test_error_unreadable_text_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 50)
    assert _code(path) == audio.UNREADABLE


def test_error_missing_file(tmp_path):
    assert _code(tmp_path / "nope.wav") == audio.UNREADABLE


def test_error_truncated_header():
    data = _wav_with_pad_chunk(audiogen.tone(), 16000)[:30]
    assert _code(data) == audio.UNREADABLE


def test_error_empty(tmp_path):
    path = audiogen.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    assert _code(path) == audio.EMPTY


def test_error_too_short(tmp_path):
    path = audiogen.write(tmp_path / "one.wav", np.array([0.5], np.float32), 16000)
    assert _code(path) == audio.TOO_SHORT


def test_error_too_long(tmp_path):
    path = audiogen.write(tmp_path / "long.flac", audiogen.tone(seconds=3.0), 16000)
    assert _code(path, max_seconds=2.0) == audio.TOO_LONG
    assert len(audio.decode(path, max_seconds=5.0)) == 48000


def test_error_silent(tmp_path):
    path = audiogen.write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)
    assert _code(path) == audio.SILENT


def test_error_nonfinite(tmp_path):
    y = audiogen.tone()
    y[100] = np.nan
    y[200] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(str(path), y, 16000, subtype="FLOAT")
    assert _code(path) == audio.NONFINITE


def test_resample_matches_librosa_length():
    y = np.random.default_rng(0).standard_normal(12345).astype(np.float32)
    assert len(audio.resample(y, 16000, 22050)) == int(np.ceil(12345 * 22050 / 16000))
