"""Emotion over time: a long recording cut into speech segments, each classified by a bundle.

Memory stays bounded whatever the length: the recording is decoded in blocks (soundfile) and
resampled with soxr's streaming resampler, twice. Pass 1 keeps one energy value per 20 ms
frame (0.7 MB for 2 hours) to find the speech regions against the recording's own level;
pass 2 decodes again and featurizes each analysis window as soon as its samples have arrived,
holding at most one block plus one window of audio, and classifies the windows in batches.

Speech regions: frames louder than a threshold set between the recording's noise floor (its
10th-percentile frame) and its loud speech (99th percentile); pauses shorter than
``min_pause`` do not split, regions shorter than ``min_region`` are dropped.

Windows: a region up to ``window`` seconds long is one window. A longer one is covered by
windows of ``window`` seconds whose starts are evenly spaced at most ``hop`` apart (default
3 s every 2 s: each second of speech is seen with at least 1 s of context on each side of a
boundary, for 1.5 times the featurization cost of windows without overlap). Segments tile the
region without overlap: each window reports the stretch nearest its centre (boundaries halfway
between consecutive windows' centres), so the segments' durations add up to the speech time.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser import audio
from ser.ml.bundle import Bundle

DEFAULT_MAX_SECONDS = 4 * 3600.0
BLOCK_SECONDS = 10.0  # decoded per read: 0.6 MB of float32 at 16 kHz
FRAME_SECONDS = 0.02  # voice-activity frame
BATCH = 256  # windows classified together
Progress = Callable[[float, float], None]  # (seconds of audio done, seconds in all)


@dataclass(frozen=True)
class Segmenter:
    """How a recording is cut: voice-activity and windowing parameters, in seconds."""

    window: float = 3.0
    hop: float = 2.0
    min_pause: float = 0.3
    min_region: float = 0.3
    min_rise_db: float = 6.0  # the threshold stands at least this far above the floor
    rise_share: float = 0.3  # ... and this share of the way from the floor to loud speech
    max_range_db: float = 50.0  # ... and no further than this below loud speech

    def threshold(self, frame_db: np.ndarray) -> float:
        """The speech threshold (dB) of a recording from its frame energies."""
        floor, peak = np.percentile(frame_db, [10, 99])
        rise = max(self.min_rise_db, self.rise_share * (peak - floor))
        return float(max(floor + rise, peak - self.max_range_db))

    def regions(self, frame_db: np.ndarray) -> list[tuple[float, float]]:
        """Speech regions ``(start, end)`` in seconds from the frame energies."""
        if frame_db.size == 0:
            return []
        active = frame_db > self.threshold(frame_db)
        edges = np.flatnonzero(np.diff(np.concatenate(([0], active.astype(np.int8), [0]))))
        runs = edges.reshape(-1, 2) * FRAME_SECONDS
        merged: list[list[float]] = []
        for start, end in runs:
            if merged and start - merged[-1][1] < self.min_pause:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        return [(s, e) for s, e in merged if e - s >= self.min_region]

    def windows(self, start: float, end: float) -> list[tuple[float, float, float, float]]:
        """``(window start, window end, segment start, segment end)`` covering one region."""
        length = end - start
        if length <= self.window:
            return [(start, end, start, end)]
        n = math.ceil((length - self.window) / self.hop) + 1
        starts = np.linspace(start, end - self.window, n)
        centres = starts + self.window / 2
        cuts = [start, *((centres[:-1] + centres[1:]) / 2), end]
        return [
            (float(s), float(s) + self.window, cuts[i], cuts[i + 1]) for i, s in enumerate(starts)
        ]


def blocks(
    source: audio.Source,
    sr: int,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    block_seconds: float = BLOCK_SECONDS,
) -> tuple[float, Iterator[np.ndarray]]:
    """The recording's duration and its mono samples at ``sr``, block by block
    (:func:`ser.audio.stream`)."""
    return audio.stream(source, sr, max_seconds, block_seconds)


def frame_energies(chunks: Iterator[np.ndarray], frame: int) -> tuple[np.ndarray, int, float]:
    """Energy (dB re full scale) of each ``frame`` samples, the sample count and the peak."""
    energies: list[np.ndarray] = []
    carry = np.zeros(0, dtype=np.float32)
    n = 0
    peak = 0.0
    for y in chunks:
        n += y.size
        if y.size:
            peak = max(peak, float(np.max(np.abs(y))))
        y = np.concatenate((carry, y)) if carry.size else y
        whole = y.size // frame * frame
        power = np.mean(np.square(y[:whole], dtype=np.float64).reshape(-1, frame), axis=1)
        energies.append((10 * np.log10(power + 1e-12)).astype(np.float32))
        carry = y[whole:]
    return (np.concatenate(energies) if energies else np.zeros(0, np.float32)), n, peak


def segment(
    bundle: Bundle,
    source: audio.Source,
    *,
    filename: str = "",
    segmenter: Segmenter | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    progress: Progress | None = None,
) -> dict:
    """Emotion over time of one recording: its speech segments, each classified by ``bundle``,
    and the dominant emotion by speech time (see the module's docstring)."""
    seg = segmenter or Segmenter()
    spec = bundle.spec
    sr = spec.sr
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, Path):
        source = str(source)
    frame = int(round(FRAME_SECONDS * sr))

    duration, chunks = blocks(source, sr, max_seconds)
    frame_db, n, peak = frame_energies(chunks, frame)
    audio.check_signal(n, sr, peak)
    plan = [w for start, end in seg.regions(frame_db) for w in seg.windows(start, end)]
    del frame_db

    segments: list[dict] = []
    batch: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []

    def flush() -> None:
        if batch:
            for (s, e), res in zip(spans, bundle.classify(np.stack(batch))):
                segments.append(_segment(s, e, res))
            batch.clear()
            spans.clear()

    if plan:
        _, chunks = blocks(source, sr, max_seconds)
        buf = np.zeros(0, dtype=np.float32)
        buf_start = 0  # sample index of buf[0]
        k = 0
        for y in chunks:
            buf = np.concatenate((buf, y))
            buf_end = buf_start + buf.size
            while k < len(plan):
                w0, w1, s0, s1 = plan[k]
                a, b = int(round(w0 * sr)), int(round(w1 * sr))
                if b > buf_end:
                    break
                batch.append(spec.from_waveform(buf[a - buf_start : b - buf_start]))
                spans.append((s0, s1))
                k += 1
                if len(batch) >= BATCH:
                    flush()
            keep_from = int(round(plan[k][0] * sr)) if k < len(plan) else buf_end
            drop = min(max(0, keep_from - buf_start), buf.size)
            buf, buf_start = buf[drop:], buf_start + drop
            if progress is not None:
                progress(min(buf_end / sr, duration), duration)
            if k == len(plan):
                break
        while k < len(plan):  # a window ending past the last sample (rounding): cut short
            w0, w1, s0, s1 = plan[k]
            a = int(round(w0 * sr)) - buf_start
            piece = buf[max(0, a) :]
            if piece.size >= audio.MIN_SECONDS * sr:
                batch.append(spec.from_waveform(piece))
                spans.append((s0, s1))
            k += 1
        flush()
    return summarize(filename, n / sr, segments, bundle.classes)


def _segment(start: float, end: float, res: dict) -> dict:
    return {
        "START": round(start, 2),
        "END": round(end, 2),
        "EMOTION": res["emotion"],
        "PROBABILITY": round(res["probability"], 4),
        "PROBABILITIES": {c: round(p, 4) for c, p in res["probabilities"].items()},
    }


def summarize(filename: str, duration: float, segments: list[dict], classes: list[str]) -> dict:
    """The result of a segmented recording: ``EMOTION`` dominates by speech time and
    ``PROBABILITY`` is its probability averaged over all speech, weighted by duration
    (both None when no speech was found)."""
    seconds = {c: 0.0 for c in classes}
    weighted = {c: 0.0 for c in classes}
    speech = 0.0
    for s in segments:
        d = s["END"] - s["START"]
        speech += d
        seconds[s["EMOTION"]] += d
        for c, p in s["PROBABILITIES"].items():
            weighted[c] += d * p
    emotion = max(classes, key=lambda c: seconds[c]) if speech > 0 else None
    return {
        "FILENAME": filename,
        "EMOTION": emotion,
        "PROBABILITY": round(weighted[emotion] / speech, 4) if emotion else None,
        "DURATION": round(duration, 2),
        "SPEECH_SECONDS": round(speech, 2),
        "SUMMARY": {
            c: {"SECONDS": round(seconds[c], 2), "SHARE": round(seconds[c] / speech, 4)}
            for c in classes
            if seconds[c] > 0
        },
        "SEGMENTS": segments,
    }
