"""Decode, validate and resample recordings to one analysis rate.

Everything goes through soundfile (libsndfile: WAV of any PCM width or float, FLAC, OGG/Vorbis,
and more) and soxr. Each failure is an :class:`~ser.errors.AudioError` with a stable code.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from ser.errors import AudioError

ANALYSIS_SR = 16000
MIN_SECONDS = 0.1  # shorter than a few analysis frames: nothing to measure
DEFAULT_MAX_SECONDS = 600.0
SILENCE_PEAK = 1e-4  # about -80 dBFS: below this peak a recording holds no usable signal

# Stable error codes (the API, the CLI and the result files carry them verbatim).
UNREADABLE = "AUDIO_UNREADABLE"
EMPTY = "AUDIO_EMPTY"
TOO_SHORT = "AUDIO_TOO_SHORT"
TOO_LONG = "AUDIO_TOO_LONG"
SILENT = "AUDIO_SILENT"
NONFINITE = "AUDIO_NONFINITE"

Source = str | Path | bytes | BinaryIO


def _open(source: Source) -> sf.SoundFile:
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(source))
    try:
        return sf.SoundFile(source if not isinstance(source, Path) else str(source))
    except FileNotFoundError:  # the file's name only: where it lives is the caller's business
        raise AudioError(UNREADABLE, f"no such file: {Path(str(source)).name}") from None
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(UNREADABLE, f"not a readable audio file: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """What went wrong, without the file's path (libsndfile's message names it in full)."""
    if isinstance(exc, sf.LibsndfileError):
        return exc.error_string.strip() or type(exc).__name__
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def decode(
    source: Source,
    sr: int | None = ANALYSIS_SR,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    min_seconds: float = MIN_SECONDS,
) -> np.ndarray:
    """Decode ``source`` to validated mono float32 at ``sr`` (None keeps the native rate)."""
    with _open(source) as f:
        native_sr, frames = f.samplerate, f.frames
        if native_sr <= 0:
            raise AudioError(UNREADABLE, "the file declares no sample rate")
        if max_seconds is not None and frames > max_seconds * native_sr:
            raise AudioError(
                TOO_LONG,
                f"recording lasts {frames / native_sr:.1f} s; the limit is {max_seconds:g} s",
            )
        try:
            data = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError, MemoryError) as exc:
            raise AudioError(UNREADABLE, f"cannot decode the samples: {_reason(exc)}") from None
    if data.shape[0] == 0:
        raise AudioError(EMPTY, "the recording holds no samples")
    if not np.isfinite(data).all():
        raise AudioError(NONFINITE, "the recording holds NaN or infinite samples")
    y = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if y.shape[0] < min_seconds * native_sr:
        raise AudioError(
            TOO_SHORT,
            f"recording lasts {y.shape[0] / native_sr:.3f} s; at least {min_seconds:g} s needed",
        )
    if float(np.max(np.abs(y))) < SILENCE_PEAK:
        raise AudioError(SILENT, "the recording is silent")
    if sr is not None and sr != native_sr:
        y = resample(y, native_sr, sr)
    return np.ascontiguousarray(y, dtype=np.float32)


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with soxr (high quality), length fixed to ceil(n * ratio) as librosa does."""
    out = soxr.resample(y, orig_sr, target_sr, quality="HQ")
    n = math.ceil(y.shape[0] * target_sr / orig_sr)
    if out.shape[0] > n:
        out = out[:n]
    elif out.shape[0] < n:
        out = np.pad(out, (0, n - out.shape[0]))
    return out.astype(np.float32, copy=False)
