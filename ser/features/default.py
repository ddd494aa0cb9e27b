"""The default feature spec: utterance-level statistics of frame descriptors from one STFT.

One Hann-windowed STFT (64 ms frames, 10 ms hop, 16 kHz) is computed per recording; every
frame descriptor is derived from its power spectrum:

- 20 MFCCs (from a 40-band log-mel spectrum, 50 Hz-8 kHz) with their first and second deltas;
- the 40 log-mel band energies;
- spectral shape: centroid, bandwidth, 85 % roll-off, flatness, high/low band ratio (above /
  below 1 kHz), flux; the zero-crossing rate; 6 bands of octave spectral contrast;
- frame energy (dB re the loudest frame), its delta, and the voicing strength (peak of the
  window-corrected, normalised autocorrelation below 4 kHz, Wiener-Khinchin from the same
  power spectrum);
- pitch (F0, 60-500 Hz) from the lag of that autocorrelation peak, parabolically refined.

Each descriptor is summarised over the active frames (within ``active_db`` of the loudest) by
the statistics in ``PARAMS["stats"]`` (mean, std, percentiles, inter-quartile range, skewness,
and the linear trend over the utterance). Voiced frames (active, voicing above
``voicing_thr``) add F0 statistics in semitones re 100 Hz with the mean absolute F0 change,
voiced-frame energy statistics and voiced-frame MFCC means. Global terms: log duration, log
active duration, voiced ratio, voiced onsets per active second, and overall level (dBFS).

Nothing uses file names, speaker identity or corpus-level normalisation; the output is
deterministic float32 and always finite.

The librosa pieces used (Slaney mel filters, MFCC DCT, Savitzky-Golay deltas, octave spectral
contrast) are reproduced here operation for operation, bit for bit (tests/unit/test_features.py
checks them against librosa): importing librosa costs ≈1.2 s per process (numba, scipy.signal),
more than featurising EMO-DB's first hundred recordings.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.ndimage

PARAMS: dict = {
    "sr": 16000,
    "n_fft": 1024,
    "hop": 160,
    "window": "hann",
    "n_mels": 40,
    "fmin": 50.0,
    "fmax": 8000.0,
    "n_mfcc": 20,
    "delta_width": 9,
    "f0_min": 60.0,
    "f0_max": 500.0,
    "acf_fmax": 4000.0,
    "voicing_thr": 0.45,
    "active_db": 40.0,
    "rolloff": 0.85,
    "split_hz": 1000.0,
    "contrast_fmin": 100.0,
    "contrast_bands": 5,
    "stats": ("mean", "std", "p10", "p50", "p90", "iqr", "skew", "slope"),
}

_EPS = 1e-10
_QUANTILES = {
    "p01": 0.01,
    "p10": 0.10,
    "p25": 0.25,
    "p50": 0.50,
    "p75": 0.75,
    "p90": 0.90,
    "p99": 0.99,
}
_SPEC_ROWS = ("centroid", "bandwidth", "rolloff", "flatness", "hf_ratio", "flux", "zcr")
_GLOBAL = ("log_duration", "log_active_duration", "voiced_ratio", "voiced_onsets_per_s", "level_db")


@cache
def _consts(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, acf_fmax: float) -> dict:
    """Window, its autocorrelation, mel filters and frequency axes (cached per setting)."""
    w = np.hanning(n_fft + 2)[1:-1].astype(np.float32)
    n_acf = 2 * int(round(n_fft * acf_fmax / sr))
    wac = scipy.fft.irfft(np.abs(scipy.fft.rfft(w.astype(np.float64), n=2 * n_fft)) ** 2)
    wac = (wac[:n_fft] / wac[0])[:: n_fft // n_acf][: n_acf // 2 + 1]
    mel = _mel_filters(sr, n_fft, n_mels, fmin, fmax)
    centers = _mel_frequencies(n_mels + 2, fmin, fmax)[1:-1]
    return {
        "w": w,
        "wac": np.maximum(wac, 1e-3).astype(np.float32),
        "n_acf": n_acf,
        "acf_sr": sr * n_acf / n_fft,
        "mel": np.ascontiguousarray(mel.T, dtype=np.float32),
        "mel_centers": centers.astype(np.float32),
        "freqs": np.fft.rfftfreq(n_fft, 1.0 / sr).astype(np.float32),
        "freqs64": np.fft.rfftfreq(n=n_fft, d=1.0 / sr),
    }


# Slaney's mel scale (librosa.hz_to_mel / mel_to_hz with htk=False, same operations).
_MEL_F_SP = 200.0 / 3
_MEL_MIN_LOG_HZ = 1000.0
_MEL_MIN_LOG_MEL = (_MEL_MIN_LOG_HZ - 0.0) / _MEL_F_SP
_MEL_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    f = np.asanyarray(hz)
    mels = (f - 0.0) / _MEL_F_SP
    if f >= _MEL_MIN_LOG_HZ:
        mels = _MEL_MIN_LOG_MEL + np.log(f / _MEL_MIN_LOG_HZ) / _MEL_LOGSTEP
    return mels


def _mel_frequencies(n: int, fmin: float, fmax: float) -> np.ndarray:
    """``n`` frequencies (Hz) evenly spaced in mels from fmin to fmax (librosa's)."""
    mels = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n)
    freqs = 0.0 + _MEL_F_SP * mels
    log_t = mels >= _MEL_MIN_LOG_MEL
    freqs[log_t] = _MEL_MIN_LOG_HZ * np.exp(_MEL_LOGSTEP * (mels[log_t] - _MEL_MIN_LOG_MEL))
    return freqs


def _mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalised triangular mel filters, (n_mels, 1 + n_fft // 2) float32 (librosa's)."""
    weights = np.zeros((n_mels, int(1 + n_fft // 2)), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_frequencies(n_mels + 2, fmin, fmax)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    return weights


@cache
def _savgol_coeffs(width: int, order: int) -> np.ndarray:
    """scipy.signal.savgol_coeffs(width, order, deriv=order) (convolution order), as scipy
    computes them: the least-squares solve of the flipped Vandermonde system."""
    half = width // 2
    x = np.flip(np.arange(-half, width - half, dtype=np.float64))
    a = x ** np.reshape(np.arange(order + 1, dtype=np.float64), (-1, 1))
    y = np.zeros(order + 1, dtype=np.float64)
    y[order] = float(math.factorial(order)) / (1.0**order)
    rcond = np.finfo(a.dtype).eps * max(a.shape[-1], a.shape[-2])
    return scipy.linalg.lstsq(a, y, cond=rcond)[0]


def _power_to_db(s: np.ndarray, top_db: float = 80.0) -> np.ndarray:
    """librosa.power_to_db(s) with its defaults (ref 1, amin 1e-10, top_db 80)."""
    log_spec = 10.0 * np.log10(np.maximum(1e-10, s))
    log_spec -= 10.0 * np.log10(np.maximum(1e-10, 1.0))
    return np.maximum(log_spec, log_spec.max() - top_db)


def _spectral_contrast(
    mag: np.ndarray, freq: np.ndarray, sr: int, fmin: float, n_bands: int, quantile: float = 0.02
) -> np.ndarray:
    """librosa.feature.spectral_contrast(S=mag, ...) of a (bins, frames) magnitude spectrum."""
    plan = _contrast_plan(freq, sr, fmin, n_bands, quantile)
    return _contrast_fb(np.swapaxes(mag, -1, -2), plan).swapaxes(-1, -2)


def _contrast_plan(
    freq: np.ndarray, sr: int, fmin: float, n_bands: int, quantile: float
) -> tuple[tuple[slice | np.ndarray, int], ...]:
    """Per band, the bins librosa's spectral contrast sorts (a slice when contiguous) and how
    many of the lowest / highest it averages."""
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    if np.any(octa[:-1] >= 0.5 * sr):
        raise ValueError("frequency band exceeds Nyquist")
    plan = []
    for k, (f_low, f_high) in enumerate(zip(octa[:-1], octa[1:])):
        current_band = np.logical_and(freq >= f_low, freq <= f_high)
        idx = np.flatnonzero(current_band)
        if k > 0:
            current_band[idx[0] - 1] = True
        if k == n_bands:
            current_band[idx[-1] + 1 :] = True
        rows = np.flatnonzero(current_band)
        if k < n_bands:
            rows = rows[:-1]
        n = int(np.maximum(np.rint(quantile * np.sum(current_band)), 1))
        if len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
            rows = slice(int(rows[0]), int(rows[0]) + len(rows))
        plan.append((rows, n))
    return tuple(plan)


@cache
def _contrast_plan_cached(
    sr: int, n_fft: int, fmin: float, n_bands: int, quantile: float = 0.02
) -> tuple[tuple[slice | np.ndarray, int], ...]:
    freq = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    return _contrast_plan(freq, sr, fmin, n_bands, quantile)


def _band_mean(s: np.ndarray, n: int) -> np.ndarray:
    """np.mean over the last axis of a (..., n) slice, in the order librosa's mean over a
    non-contiguous axis adds (row after row, float32), then divided as np.mean divides."""
    m = s.shape[-1]
    if m == 0:
        return np.full(s.shape[:-1], np.nan, dtype=s.dtype)
    acc = s[..., 0].copy()
    for j in range(1, m):
        acc += s[..., j]
    return np.true_divide(acc, np.intp(m), out=acc, casting="unsafe")


def _contrast_fb(mag: np.ndarray, plan) -> np.ndarray:
    """Spectral contrast of a (..., frames, bins) magnitude spectrum as (..., frames, bands):
    librosa's values with fewer, larger numpy calls (a band averaging one bin takes its min and
    max over the bins-major copy; wider bands sort along the contiguous bins axis and add the
    selected values in librosa's order)."""
    shape = list(mag.shape)
    shape[-1] = len(plan)
    valley = np.zeros(shape)
    peak = np.zeros_like(valley)
    mag_bf = None
    for k, (rows, n) in enumerate(plan):
        lo = None
        if n == 1:
            if mag_bf is None:
                mag_bf = np.ascontiguousarray(np.swapaxes(mag, -1, -2))
            sub = mag_bf[..., rows, :]
            if sub.shape[-2]:
                lo, hi = sub.min(axis=-2), sub.max(axis=-2)
                if np.isnan(lo).any() or np.isnan(hi).any():
                    lo = None  # np.sort orders NaN last, min/max would propagate it
        if lo is None:
            s = np.sort(mag[..., rows], axis=-1)
            lo = _band_mean(s[..., :n], n)
            hi = _band_mean(s[..., -n:], n)
        valley[..., k] = lo
        peak[..., k] = hi
    return _power_to_db(peak) - _power_to_db(valley)


def _frames(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred, zero-padded frames as a read-only (n_frames, n_fft) view."""
    yp = np.pad(y, (n_fft // 2, n_fft // 2))
    n = 1 + (len(yp) - n_fft) // hop
    step = yp.strides[0]
    return np.lib.stride_tricks.as_strided(
        yp, shape=(n, n_fft), strides=(step * hop, step), writeable=False
    )


@cache
def _trend(n: int) -> tuple[np.ndarray, float]:
    """The centred time axis of ``n`` frames and the slope's denominator (read-only)."""
    t = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    t.flags.writeable = False
    return t, max(float(t @ t), 1e-6)


def _stats(x: np.ndarray, stats: tuple[str, ...]) -> np.ndarray:
    """Statistics over frames (axis 1) of a (rows, frames) matrix, flattened row-major."""
    x = np.asarray(x, dtype=np.float32)
    rows, n = x.shape
    if n == 0:
        return np.zeros(rows * len(stats), dtype=np.float32)
    mu = x.mean(axis=1)
    d = x - mu[:, None]
    dd = d * d
    sd = np.sqrt(dd.mean(axis=1))
    s = np.sort(x, axis=1)

    def quantile(q: float) -> np.ndarray:
        pos = q * (n - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, n - 1)
        return s[:, lo] + (s[:, hi] - s[:, lo]) * np.float32(pos - lo)

    out = np.empty((rows, len(stats)), dtype=np.float32)
    for i, name in enumerate(stats):
        if name == "mean":
            out[:, i] = mu
        elif name == "std":
            out[:, i] = sd
        elif name in _QUANTILES:
            out[:, i] = quantile(_QUANTILES[name])
        elif name == "iqr":
            out[:, i] = quantile(0.75) - quantile(0.25)
        elif name == "skew":
            out[:, i] = (dd * d).mean(axis=1) / np.maximum(sd, 1e-6) ** 3
        elif name == "slope":
            t, tt = _trend(n)
            out[:, i] = d @ t / tt
        else:
            raise ValueError(f"unknown statistic {name!r}")
    return out.ravel()


def _delta(x: np.ndarray, width: int, order: int = 1) -> np.ndarray:
    """Savitzky-Golay deltas along frames, edge-safe for short inputs: librosa.feature.delta
    (scipy.signal.savgol_filter, mode "nearest") without importing either."""
    if x.shape[-1] < width:
        return np.zeros_like(x)
    x = np.atleast_1d(x)
    if x.dtype != np.float64 and x.dtype != np.float32:
        x = x.astype(np.float64)
    coeffs = _savgol_coeffs(width, order)
    return scipy.ndimage.convolve1d(x, coeffs, axis=-1, mode="nearest", cval=0.0)


def _frame_parts(frames: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """The descriptors that each frame gives on its own (rows of ``frames``; time is axis 0 of
    every array): everything but flux and the zero-crossing rate, all from one power spectrum."""
    p = PARAMS
    n_fft = p["n_fft"]
    c = _consts(sr, n_fft, p["n_mels"], p["fmin"], p["fmax"], p["acf_fmax"])
    spec = scipy.fft.rfft(frames * c["w"], axis=1, workers=1)
    power = spec.real * spec.real + spec.imag * spec.imag  # (T, F)
    mag = np.sqrt(power)
    freqs = c["freqs"]

    mel = power @ c["mel"]  # (T, M)
    logmel = 10.0 * np.log10(mel + _EPS)
    mfcc = scipy.fft.dct(logmel.T, axis=-2, type=2, norm="ortho")[..., : p["n_mfcc"], :]  # (C, T)
    edb = 10.0 * np.log10(power.sum(axis=1) + _EPS)

    msum = mag.sum(axis=1) + _EPS
    centroid = (mag @ freqs) / msum
    bandwidth = np.sqrt(np.maximum((mag @ (freqs * freqs)) / msum - centroid * centroid, 0.0))
    cum = np.cumsum(mel, axis=1)
    ridx = np.minimum((cum < p["rolloff"] * cum[:, -1:]).sum(axis=1), p["n_mels"] - 1)
    rolloff = c["mel_centers"][ridx]
    flatness = np.log(mel + _EPS).mean(axis=1) - np.log(mel.mean(axis=1) + _EPS)
    k = int(np.searchsorted(freqs, p["split_hz"]))
    hf_ratio = 10.0 * np.log10(
        (power[:, k:].sum(axis=1) + _EPS) / (power[:, :k].sum(axis=1) + _EPS)
    )
    mnorm = np.sqrt(mel / (mel.sum(axis=1, keepdims=True) + _EPS))
    plan = _contrast_plan_cached(sr, n_fft, p["contrast_fmin"], p["contrast_bands"])
    contrast = _contrast_fb(mag, plan)  # (T, bands)

    # Pitch and voicing: autocorrelation of the band below acf_fmax (Wiener-Khinchin on the
    # same power spectrum), normalised by lag 0 and by the window's own autocorrelation.
    n_acf, acf_sr = c["n_acf"], c["acf_sr"]
    ac = scipy.fft.irfft(power[:, : n_acf // 2 + 1], n=n_acf, axis=1, workers=1)
    lag_lo = max(int(acf_sr // p["f0_max"]), 1)
    lag_hi = min(int(np.ceil(acf_sr / p["f0_min"])), n_acf // 2 - 1)
    r = ac[:, : lag_hi + 2] / (ac[:, :1] + _EPS) / c["wac"][: lag_hi + 2]
    kk = r[:, lag_lo : lag_hi + 1].argmax(axis=1) + lag_lo
    rows = np.arange(len(kk))
    a, b, cc = r[rows, kk - 1], r[rows, kk], r[rows, kk + 1]
    den = a - 2.0 * b + cc
    safe = np.abs(den) > 1e-9
    off = np.where(safe, 0.5 * (a - cc) / np.where(safe, den, 1.0), 0.0)
    f0 = acf_sr / np.maximum(kk + np.clip(off, -1.0, 1.0), 1.0)
    return {
        "mfcc": mfcc.T,
        "logmel": logmel,
        "edb": edb,
        "shape": np.stack(
            [centroid / 1000, bandwidth / 1000, rolloff / 1000, flatness, hf_ratio], 1
        ),
        "mnorm": mnorm,
        "contrast": contrast,
        "f0": f0,
        "voicing": b,
    }


def _descriptors(
    y: np.ndarray, sr: int, parts: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Frame-level descriptors, all derived from one STFT power spectrum (``parts``: the
    frames' own descriptors, :func:`_frame_parts`, when already computed)."""
    p = PARAMS
    n_fft, hop = p["n_fft"], p["hop"]
    if parts is None:
        parts = _frame_parts(_frames(np.asarray(y, dtype=np.float32), n_fft, hop), sr)
    edb, mnorm = parts["edb"], parts["mnorm"]
    flux = np.r_[0.0, np.sqrt((np.diff(mnorm, axis=0) ** 2).sum(axis=1))]
    sign = np.signbit(y)
    zc = np.r_[0, np.cumsum(sign[1:] != sign[:-1])]
    starts = np.clip(np.arange(len(edb)) * hop - n_fft // 2, 0, len(y) - 1)
    ends = np.clip(starts + n_fft, 0, len(y) - 1)
    zcr = (zc[ends] - zc[starts]) / n_fft
    shape = parts["shape"].T
    return {
        "mfcc": parts["mfcc"].T,
        "logmel": parts["logmel"].T,
        "edb": edb,
        "spec": np.vstack([shape, flux, zcr]),
        "contrast": parts["contrast"].T,
        "f0": parts["f0"],
        "voicing": np.clip(parts["voicing"], -1.0, 2.0),
    }


def extract_windows(y: np.ndarray, sr: int, bounds: list[tuple[int, int]]) -> list[np.ndarray]:
    """``extract(y[a:b], sr)`` for each ``(a, b)`` of overlapping windows of ``y``, computing
    each frame's own descriptors once: a window starting on the hop grid of ``y`` takes its
    inner frames (the very samples) from one pass over ``y`` and recomputes only the frames
    that reach its zero padding. Equal to :func:`extract` of each window within float
    rounding (the matrix products run over other row counts)."""
    p = PARAMS
    n_fft, hop = p["n_fft"], p["hop"]
    y = np.asarray(y, dtype=np.float32)
    if len(bounds) < 2:
        return [extract(y[a:b], sr) for a, b in bounds]
    edge = -(-(n_fft // 2) // hop)  # frames that reach a window's zero padding
    frames = _frames(y, n_fft, hop)
    step = 256  # frames per pass: arrays of a 3-s window's size stay in cache (faster)
    pieces = [_frame_parts(frames[i : i + step], sr) for i in range(0, len(frames), step)]
    whole = {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}
    out = []
    for a, b in bounds:
        yw = y[a:b]
        n = 1 + len(yw) // hop
        if a % hop or n <= 2 * edge + 1:
            out.append(extract(yw, sr))
            continue
        k0 = a // hop
        frames = _frames(yw, n_fft, hop)
        own = _frame_parts(np.concatenate((frames[:edge], frames[n - edge :])), sr)
        parts = {
            key: np.concatenate((v[:edge], whole[key][k0 + edge : k0 + n - edge], v[edge:]))
            for key, v in own.items()
        }
        out.append(_summarize(_descriptors(yw, sr, parts), yw, sr))
    return out


def extract(y: np.ndarray, sr: int) -> np.ndarray:
    """The utterance's fixed-length float32 feature vector (see the module docstring)."""
    return _summarize(_descriptors(y, sr), y, sr)


def _summarize(d: dict[str, np.ndarray], y: np.ndarray, sr: int) -> np.ndarray:
    """The feature vector from the frame descriptors ``d`` of the waveform ``y``."""
    p = PARAMS
    st = tuple(p["stats"])
    edb = d["edb"] - d["edb"].max()
    active = edb > -p["active_db"]
    if active.sum() < 3:
        active = np.ones_like(active)
    mfcc = d["mfcc"]
    width = p["delta_width"]
    framewise = np.vstack(
        [
            mfcc,
            _delta(mfcc, width),
            _delta(mfcc, width, 2),
            d["logmel"],
            d["spec"],
            d["contrast"],
            edb,
            _delta(edb[None], width)[0],
            d["voicing"],
        ]
    )
    parts = [_stats(framewise[:, active], st)]

    voiced = active & (d["voicing"] > p["voicing_thr"])
    if voiced.sum() >= 3:
        semitones = 12.0 * np.log2(d["f0"][voiced] / 100.0)
        parts += [
            _stats(semitones[None], st),
            np.array([np.abs(np.diff(semitones)).mean()]),
            _stats(edb[voiced][None], st),
            mfcc[:, voiced].mean(axis=1),
        ]
    else:
        parts.append(np.zeros(2 * len(st) + 1 + p["n_mfcc"]))

    hop_s = p["hop"] / sr
    n_active = max(int(active.sum()), 1)
    onsets = int((np.diff(np.r_[0, voiced.astype(np.int8)]) == 1).sum())
    parts.append(
        np.array(
            [
                np.log(len(y) / sr),
                np.log(n_active * hop_s),
                voiced.sum() / n_active,
                onsets / (n_active * hop_s),
                10.0 * np.log10(np.mean(np.square(y, dtype=np.float64)) + _EPS),
            ]
        )
    )
    out = np.concatenate(parts).astype(np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def names() -> list[str]:
    """One name per feature, in vector order."""
    p = PARAMS
    st = tuple(p["stats"])
    n_c = p["n_mfcc"]
    rows = (
        [f"mfcc{i}" for i in range(n_c)]
        + [f"d_mfcc{i}" for i in range(n_c)]
        + [f"dd_mfcc{i}" for i in range(n_c)]
        + [f"logmel{i}" for i in range(p["n_mels"])]
        + list(_SPEC_ROWS)
        + [f"contrast{i}" for i in range(p["contrast_bands"] + 1)]
        + ["energy_db", "d_energy_db", "voicing"]
    )
    out = [f"{r}_{s}" for r in rows for s in st]
    out += [f"f0_st_{s}" for s in st] + ["f0_st_absdelta_mean"]
    out += [f"voiced_energy_db_{s}" for s in st]
    out += [f"voiced_mfcc{i}_mean" for i in range(n_c)]
    return out + list(_GLOBAL)
