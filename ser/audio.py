"""Decode, validate and resample recordings to one analysis rate.

Everything goes through soundfile (libsndfile: WAV of any PCM width or float, FLAC, OGG/Vorbis,
and more) and soxr. Each failure is an :class:`~ser.errors.AudioError` with a stable code.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from ser.errors import AudioError

ANALYSIS_SR = 16000
MIN_SECONDS = 0.1  # shorter than a few analysis frames: nothing to measure
DEFAULT_MAX_SECONDS = 600.0
RESAMPLE_LEAD = 0.1  # seconds decoded before a range, for the resampler's filter to settle
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


def _checked(f: sf.SoundFile, max_seconds: float | None) -> int:
    """The native rate of an open file whose header passes (a rate, not too long)."""
    native_sr, frames = f.samplerate, f.frames
    if native_sr <= 0:
        raise AudioError(UNREADABLE, "the file declares no sample rate")
    if max_seconds is not None and frames > max_seconds * native_sr:
        raise AudioError(
            TOO_LONG,
            f"recording lasts {frames / native_sr:.1f} s; the limit is {max_seconds:g} s",
        )
    return native_sr


def _mono(data: np.ndarray) -> np.ndarray:
    """Decoded frames (always 2-D) as finite mono float32."""
    if not np.isfinite(data).all():
        raise AudioError(NONFINITE, "the recording holds NaN or infinite samples")
    return data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)


def check_signal(n: int, sr: int, peak: float, min_seconds: float = MIN_SECONDS) -> None:
    """Raise the AudioError of a decoded signal of ``n`` samples at ``sr`` with this ``peak``
    that holds nothing to analyse (empty, too short, silent)."""
    if n == 0:
        raise AudioError(EMPTY, "the recording holds no samples")
    if n < min_seconds * sr:
        raise AudioError(
            TOO_SHORT, f"recording lasts {n / sr:.3f} s; at least {min_seconds:g} s needed"
        )
    if peak < SILENCE_PEAK:
        raise AudioError(SILENT, "the recording is silent")


def decode(
    source: Source,
    sr: int | None = ANALYSIS_SR,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    min_seconds: float = MIN_SECONDS,
) -> np.ndarray:
    """Decode ``source`` to validated mono float32 at ``sr`` (None keeps the native rate)."""
    with _open(source) as f:
        native_sr = _checked(f, max_seconds)
        try:
            data = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError, MemoryError) as exc:
            raise AudioError(UNREADABLE, f"cannot decode the samples: {_reason(exc)}") from None
    y = _mono(data)
    check_signal(y.shape[0], native_sr, float(np.max(np.abs(y))) if y.size else 0.0, min_seconds)
    if sr is not None and sr != native_sr:
        y = resample(y, native_sr, sr)
    return np.ascontiguousarray(y, dtype=np.float32)


def duration(source: Source, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> float:
    """The recording's length in seconds from its header (AUDIO_TOO_LONG above
    ``max_seconds``, AUDIO_UNREADABLE when it is not audio); nothing is decoded."""
    if hasattr(source, "seek"):
        source.seek(0)  # type: ignore[union-attr]
    with _open(source) as f:
        return f.frames / _checked(f, max_seconds)


def stream(
    source: Source,
    sr: int,
    max_seconds: float | None,
    block_seconds: float,
    start: float = 0.0,
    end: float | None = None,
) -> tuple[float, Iterator[np.ndarray]]:
    """The recording's duration and its mono float32 samples at ``sr``, block by block, in
    bounded memory (soundfile blocks through soxr's streaming resampler). The header is checked
    at once (AUDIO_TOO_LONG before anything is decoded); AUDIO_NONFINITE or AUDIO_UNREADABLE
    come while iterating. The caller checks the whole signal (:func:`check_signal`).

    ``start``/``end`` (seconds) yield only the samples ``round(start * sr)`` up to
    ``round(end * sr)`` of the whole stream: the file is sought to the range (less
    :data:`RESAMPLE_LEAD` when resampling, whose output before the range is dropped), so the
    ranges of a recording decoded apart join into its whole stream (exactly at the native
    rate; within the resampler's precision otherwise)."""
    if hasattr(source, "seek"):
        source.seek(0)  # type: ignore[union-attr]
    f = _open(source)
    try:
        native = _checked(f, max_seconds)
    except AudioError:
        f.close()
        raise
    duration = f.frames / native
    first = int(round(start * sr))  # output samples of the whole stream
    last = None if end is None else int(round(end * sr))
    if native == sr:
        seek, skip = first, 0
    else:
        seek = max(0, int(math.floor((start - RESAMPLE_LEAD) * native))) if first else 0
        skip = first - int(round(seek * sr / native))

    def gen() -> Iterator[np.ndarray]:
        resampler = soxr.ResampleStream(native, sr, 1, dtype="float32", quality="HQ")
        todo_skip = skip
        left = None if last is None else max(0, last - first)

        def emit(y: np.ndarray) -> np.ndarray:
            nonlocal todo_skip, left
            if todo_skip:
                cut = min(todo_skip, y.size)
                y, todo_skip = y[cut:], todo_skip - cut
            if left is not None:
                y = y[:left]
                left -= y.size
            return y

        with f:
            try:
                if seek:
                    f.seek(min(seek, f.frames))
                for data in f.blocks(int(block_seconds * native), dtype="float32", always_2d=True):
                    y = _mono(data)
                    y = np.ascontiguousarray(y) if native == sr else resampler.resample_chunk(y)
                    yield emit(y)
                    if left == 0:
                        return
            except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                raise AudioError(UNREADABLE, f"cannot decode the samples: {_reason(exc)}") from None
            if native != sr:
                yield emit(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))

    return duration, gen()


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with soxr (high quality), length fixed to ceil(n * ratio) as librosa does."""
    out = soxr.resample(y, orig_sr, target_sr, quality="HQ")
    n = math.ceil(y.shape[0] * target_sr / orig_sr)
    if out.shape[0] > n:
        out = out[:n]
    elif out.shape[0] < n:
        out = np.pad(out, (0, n - out.shape[0]))
    return out.astype(np.float32, copy=False)
