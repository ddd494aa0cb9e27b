"""Emotion over time: a long recording cut into speech segments, each classified by a bundle.

Memory stays bounded whatever the length: the recording is decoded in blocks (soundfile) and
resampled with soxr's streaming resampler, twice. Pass 1 keeps one energy value per 20 ms
frame (0.7 MB for 2 hours) to find the speech regions against the recording's own level;
pass 2 decodes again and featurizes each analysis window as soon as its samples have arrived,
holding at most one block plus one window of audio, and keeps each window's feature vector
(float32: 3.9 KB a window, 8.4 MB for the 2160 windows of 2 hours of the benchmark's speech).

A recording is one speaker. Where the model adapts to speakers (``Bundle.adapt`` not
``off``), the windows are classified by its adapted part with the recording's own statistics:
mean and spread of all its windows' features, without labels, shrunk towards the training
population as for any speaker (ser.ml.adapt); a recording of fewer than ``MIN_CLIPS``
windows is classified by the raw-feature part, as a speaker with too few clips is. Hence the
features are kept until the last window is featurized, and classified then (``ADAPTED`` in
the result says which part answered).

The passes are cut apart so a service can spread one recording over several processes by
time ranges (worker/segments.py): :func:`energies` of a range (pass 1: ranges on the 20 ms
frame grid, whose energies join into the whole recording's), :func:`plan` from the joined
energies, :func:`featurize` of a run of windows (pass 2: decoding from the first window's
start), then :func:`classify` and :func:`summarize` of all of them (speech time per emotion:
ser.speech_time, shared with a folder's summary); :func:`segment` runs the
same steps in one process.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser import audio, speech_time
from ser.ml.bundle import Bundle
from ser.ml.stats import Stats

DEFAULT_MAX_SECONDS = 4 * 3600.0
BLOCK_SECONDS = 10.0  # decoded per read: 0.6 MB of float32 at 16 kHz
FRAME_SECONDS = 0.02  # voice-activity frame
BATCH = 256  # windows classified together
GRID = 0.01  # window starts lie on this grid (the default features' hop): see featurize()
GROUP = 8  # overlapping windows featurized together, sharing their frames' work
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
        # on the hop grid of the features, so overlapping windows share their frames
        starts = np.round(np.linspace(start, end - self.window, n) / GRID) * GRID
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
    start: float = 0.0,
    end: float | None = None,
) -> tuple[float, Iterator[np.ndarray]]:
    """The recording's duration and its mono samples at ``sr`` (from ``start`` to ``end``
    seconds), block by block (:func:`ser.audio.stream`)."""
    return audio.stream(source, sr, max_seconds, block_seconds, start, end)


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
        rows = y[:whole].reshape(-1, frame)
        power = np.einsum("ij,ij->i", rows, rows, dtype=np.float64) / frame
        energies.append((10 * np.log10(power + 1e-12)).astype(np.float32))
        carry = y[whole:]
    return (np.concatenate(energies) if energies else np.zeros(0, np.float32)), n, peak


Window = tuple[float, float, float, float]  # window start, end; segment start, end (s)


def opened(source: audio.Source) -> audio.Source:
    """``source`` as something soundfile opens again and again (bytes: a BytesIO)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(source))
    if isinstance(source, Path):
        return str(source)
    return source


def frame_samples(sr: int) -> int:
    return int(round(FRAME_SECONDS * sr))


def time_ranges(duration: float, seconds: float) -> list[tuple[float, float]]:
    """``[0, duration)`` cut into ranges of about ``seconds`` (at least one 20 ms frame), their
    bounds on the frame grid, so the ranges' frame energies join into the recording's."""
    step = max(1, int(round(seconds / FRAME_SECONDS))) * FRAME_SECONDS
    n = max(1, math.ceil(duration / step - 1e-9))
    cuts = [round(i * step, 6) for i in range(n)] + [duration]
    return [(cuts[i], cuts[i + 1]) for i in range(n)]


def energies(
    source: audio.Source,
    sr: int,
    start: float = 0.0,
    end: float | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> tuple[float, np.ndarray, int, float]:
    """Pass 1 of a range: (the recording's duration, the range's frame energies in dB, its
    samples at ``sr`` and its peak)."""
    duration, chunks = blocks(source, sr, max_seconds, start=start, end=end)
    frame_db, n, peak = frame_energies(chunks, frame_samples(sr))
    return duration, frame_db, n, peak


def plan(frame_db: np.ndarray, segmenter: Segmenter | None = None) -> list[Window]:
    """The analysis windows of a recording from its frame energies (all of them, in order)."""
    seg = segmenter or Segmenter()
    return [w for start, end in seg.regions(frame_db) for w in seg.windows(start, end)]


def groups(windows: Sequence[Window]) -> list[list[Window]]:
    """The windows in groups featurized together: consecutive overlapping windows (of one
    region), at most :data:`GROUP` a group."""
    out: list[list[Window]] = []
    for w in windows:
        if not out or w[0] >= out[-1][-1][1] or len(out[-1]) >= GROUP:
            out.append([])
        out[-1].append(w)
    return out


TAPER = 4  # tapered runs: each at most this share (1/TAPER) of the recording left, ...
TAPER_FLOOR = 0.25  # ... and at least this share of ``seconds``


def window_runs(
    windows: Sequence[Window], seconds: float, *, taper: bool = False
) -> list[list[Window]]:
    """The windows in consecutive runs of about ``seconds`` of the recording each (cut at
    group starts, so a run featurizes exactly as one pass does), for featurizing apart.

    ``taper``: the runs near the end are shorter (each at most 1/:data:`TAPER` of the
    recording left after its start, down to :data:`TAPER_FLOOR` of ``seconds``), so processes
    sharing them finish nearly together rather than one idling through another's last full
    run (the last four of an hour's runs at 120 s are 30 s)."""
    runs: list[list[Window]] = []
    end = windows[-1][1] if windows else 0.0
    for group in groups(windows):
        if runs:
            start = runs[-1][0][0]
            size = seconds
            if taper:
                size = min(seconds, max(TAPER_FLOOR * seconds, (end - start) / TAPER))
            if group[0][0] < start + size:
                runs[-1].extend(group)
                continue
        runs.append(list(group))
    return runs


def featurize(
    bundle: Bundle,
    source: audio.Source,
    windows: Sequence[Window],
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    progress: Progress | None = None,
    done_at_end: float | None = None,
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Pass 2 of a run of windows (in order): (their feature vectors, float32, one row per
    window, and their segments' ``(start, end)``), decoding from the first window's start; a
    last window that the recording ends inside is cut short (dropped under 0.1 s).

    Overlapping windows are featurized by :func:`groups` (``FeatureSpec.from_windows``): on
    the features' hop grid, a window's inner frames are the very frames of its neighbours, so
    each frame's spectrum and descriptors are computed once (windows every 2 s of 3 s: a
    third fewer spectra); only the frames that reach a window's edge are computed apart."""
    spec = bundle.spec
    sr = spec.sr
    rows: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    if not windows:
        return np.zeros((0, 0), dtype=np.float32), spans
    todo = groups(windows)
    first = windows[0][0]
    duration, chunks = blocks(source, sr, max_seconds, start=first, end=windows[-1][1])
    buf = np.zeros(0, dtype=np.float32)
    buf_start = int(round(first * sr))  # sample index of buf[0]
    k = 0  # next group
    for y in chunks:
        buf = np.concatenate((buf, y))
        buf_end = buf_start + buf.size
        while k < len(todo):
            group = todo[k]
            a, b = int(round(group[0][0] * sr)), int(round(group[-1][1] * sr))
            if b > buf_end:
                break
            bounds = [(int(round(w0 * sr)) - a, int(round(w1 * sr)) - a) for w0, w1, _, _ in group]
            rows.append(spec.from_windows(buf[a - buf_start : b - buf_start], bounds))
            spans.extend((s0, s1) for _, _, s0, s1 in group)
            k += 1
        keep_from = int(round(todo[k][0][0] * sr)) if k < len(todo) else buf_end
        drop = min(max(0, keep_from - buf_start), buf.size)
        buf, buf_start = buf[drop:], buf_start + drop
        if progress is not None:
            progress(min(buf_end / sr, duration), duration)
        if k == len(todo):
            break
    for group in todo[k:]:  # windows ending past the last sample (rounding): cut short
        for w0, _, s0, s1 in group:
            piece = buf[max(0, int(round(w0 * sr)) - buf_start) :]
            if piece.size >= audio.MIN_SECONDS * sr:
                rows.append(spec.from_waveform(piece)[None])
                spans.append((s0, s1))
    if progress is not None and done_at_end is not None:
        progress(done_at_end, duration)
    X = np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32)
    return X, spans


def recording_stats(bundle: Bundle, X: np.ndarray) -> Stats | None:
    """The recording's own speaker statistics (all its windows), or None when the model does
    not adapt to speakers (or says nothing of it: a stand-in for a bundle) or there are no
    windows."""
    if getattr(bundle, "adapt", "off") == "off" or len(X) == 0:
        return None
    return Stats.of(X)


def classify(
    bundle: Bundle,
    X: np.ndarray,
    spans: Sequence[tuple[float, float]],
    stats: Stats | None = None,
) -> tuple[list[dict], bool]:
    """(The segments of the windows ``X``, ordered as given; whether the speaker-adapted model
    classified them), in batches of :data:`BATCH`. ``stats``: the recording's speaker
    statistics (:func:`recording_stats`; with fewer than MIN_CLIPS windows the raw model
    answers)."""
    segments: list[dict] = []
    adapted = False
    for i in range(0, len(X), BATCH):
        part = X[i : i + BATCH]
        for (s, e), res in zip(spans[i : i + BATCH], bundle.classify(part, [stats] * len(part))):
            segments.append(_segment(s, e, res))
            adapted = adapted or res["adapted"]
    return segments, adapted


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
    source = opened(source)
    sr = bundle.spec.sr
    duration, frame_db, n, peak = energies(source, sr, max_seconds=max_seconds)
    audio.check_signal(n, sr, peak)
    windows = plan(frame_db, segmenter)
    del frame_db
    X, spans = featurize(bundle, source, windows, max_seconds=max_seconds, progress=progress)
    segments, adapted = classify(bundle, X, spans, recording_stats(bundle, X))
    return summarize(filename, n / sr, segments, bundle.classes, adapted)


def _segment(start: float, end: float, res: dict) -> dict:
    return {
        "START": round(start, 2),
        "END": round(end, 2),
        "EMOTION": res["emotion"],
        "PROBABILITY": round(res["probability"], 4),
        "PROBABILITIES": {c: round(p, 4) for c, p in res["probabilities"].items()},
    }


def summarize(
    filename: str,
    duration: float,
    segments: list[dict],
    classes: list[str],
    adapted: bool = False,
) -> dict:
    """The result of a segmented recording: ``EMOTION`` dominates by speech time and
    ``PROBABILITY`` is its probability averaged over all speech, weighted by duration
    (both None when no speech was found); ``SUMMARY``: the speech time of each emotion that
    has a segment (ser.speech_time, as a folder's summary counts it); ``ADAPTED``: the
    windows were classified with the recording's own speaker statistics."""
    seconds, count = speech_time.tally(segments, classes)
    speech = sum(seconds.values())
    weighted = {c: 0.0 for c in seconds}
    for s in segments:
        d = s["END"] - s["START"]
        for c, p in s["PROBABILITIES"].items():
            weighted[c] = weighted.get(c, 0.0) + d * p
    emotion = max(seconds, key=lambda c: seconds[c]) if speech > 0 else None
    return {
        "FILENAME": filename,
        "EMOTION": emotion,
        "PROBABILITY": round(weighted[emotion] / speech, 4) if emotion else None,
        "DURATION": round(duration, 2),
        "SPEECH_SECONDS": round(speech, 2),
        "SUMMARY": speech_time.present(speech_time.table(seconds, count)),
        "ADAPTED": bool(adapted),
        "SEGMENTS": segments,
    }
