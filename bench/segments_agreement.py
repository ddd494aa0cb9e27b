"""Emotion over time against known truth: recordings concatenated from corpus clips of known
emotion with pauses between them, segmented by ``ser.ml.segments.segment``, scored by the share
of speech time whose segment emotion is the label of the clip under it, next to the same model's
clip-level accuracy on the same held-out clips.

    python bench/segments_agreement.py            # both corpora, 4 speaker folds (≈6-10 min)
    python bench/segments_agreement.py --quick    # one fold of 3, 20 clips per recording

Speaker-grouped folds: the corpus's speakers (sorted) are dealt into ``--folds`` folds; for each
fold a model is trained on the other speakers' clips through ``ser.ml.training.train`` (default
features, adaptation ``auto``, the repeats of ``ser train``), and every clip of the fold's
speakers is tested once, both ways:

- clip level: each clip classified alone (``Bundle.classify`` of its features): without a
  speaker (the raw-feature model, what ``segment()`` uses), and with its speaker's statistics
  from all of that speaker's test clips (the adapted model, where the model adapts);
- over time: one recording per test speaker (or several, ``--clips-per-recording``), its clips
  in random order, each clip's leading and trailing silence trimmed (``librosa.effects.trim``
  on 20 ms frames, 40 dB below the clip's loudest frame: a reference independent of the
  segmenter, so clip time is roughly speech time), separated by pauses of 0.5-2 s (also before
  the first and after the last clip). The same clips, order and pause lengths are written once
  per kind of pause: digital silence, white noise 40 dB below the recording's speech (RMS), and
  "mixed" (each pause one or the other at random; reported apart, not in the main row). Each
  recording is a 16-bit WAV in a temporary directory, segmented, and its segment time
  attributed to the clips it overlaps (:func:`attribute`): agreeing or not, or "in pauses"
  where it overlaps no clip; clip time that no segment covers is missed speech.

``segment()`` treats a recording as one speaker: where the model adapts, every window is
classified with the statistics of all of that recording's windows (the headline ``agree``). The
column ``agree, no speaker stats`` is the same recording through the model's raw-feature part
(a stand-in bundle that does not say it adapts), to compare with ``clip acc``; ``agree`` compares
with ``clip acc, spk stats``. ``clip acc,
time`` weighs each clip by its trimmed length (as agreement weighs time); ``clip acc,
trimmed`` classifies the trimmed clips alone (raw model): the part of the gap that comes from
the model having learnt clips with their silences, where windows hold speech only.

Corpora: ``$SER_EMODB_DIR`` or ``../shared/data/emodb``, ``$SER_CORPUS2_DIR`` or
``../shared/data/ravdess13-24``; any labelled corpus with speakers works, a missing one is
skipped with a message. Raw figures: bench/out/segments_agreement.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from common import dump, print_table
from sklearn.metrics import accuracy_score, f1_score

from ser import audio
from ser.config import emodb_dir, second_corpus_dir
from ser.contract import TRAIN_REPEATS
from ser.datasets import Dataset, load_dataset
from ser.features.cache import DiskCache
from ser.ml import segments, training
from ser.ml.stats import by_speaker

warnings.filterwarnings("ignore", category=FutureWarning)
SR = audio.ANALYSIS_SR
PAUSE_SECONDS = (0.5, 2.0)
# Each recording is written once per kind of pause: digital silence, white noise, or each
# pause either (the stress case: digital silence sets the floor, the noise pauses sit above it).
PAUSES = ("silence", "noise", "mixed")
HEADLINE = ("silence", "noise")  # the kinds pooled in the main table's row
NOISE_DB = 40.0  # noise pauses: white noise this far below the recording's speech (RMS)
TRIM_DB = 40.0
SEED = 42
LENGTHS = (0.0, 1.0, 2.0, 3.0, np.inf)  # segment-length buckets (s) of the by-length figures
COLUMNS = [
    "dataset",
    "folds",
    "clips",
    "recordings",
    "audio_s",
    "adapt chosen",
    "clip acc",
    "clip F1",
    "clip acc, time",
    "clip acc, trimmed",
    "clip acc, spk stats",
    "agree",
    "agree F1",
    "agree, no speaker stats",
    "in pauses s (% pause)",
    "missed %",
]


def attribute(clips: list[tuple[float, float, str]], segs: list[tuple[float, float, str]]) -> dict:
    """Segment time attributed to the clips under it, by overlap.

    ``clips``: ``(start, end, label)``, not overlapping each other; ``segs``: ``(start, end,
    emotion)``. Returns ``confusion`` {label: {emotion: seconds}} (segment time over clips),
    ``in_pauses`` (segment time over no clip), ``missed`` (clip time under no segment) and
    ``clip_seconds``."""
    a = np.array([c[0] for c in clips], dtype=float)
    b = np.array([c[1] for c in clips], dtype=float)
    confusion: dict[str, dict[str, float]] = {}
    in_pauses = 0.0
    for s, e, emotion in segs:
        over = np.clip(np.minimum(e, b) - np.maximum(s, a), 0.0, None)
        in_pauses += max(0.0, (e - s) - float(over.sum()))
        for i in np.flatnonzero(over):
            row = confusion.setdefault(clips[i][2], {})
            row[emotion] = row.get(emotion, 0.0) + float(over[i])
    covered = 0.0  # clip time under the union of the segments
    for s, e in _union([(s, e) for s, e, _ in segs]):
        covered += float(np.clip(np.minimum(e, b) - np.maximum(s, a), 0.0, None).sum())
    clip_seconds = float((b - a).sum())
    return {
        "confusion": confusion,
        "in_pauses": in_pauses,
        "missed": clip_seconds - covered,
        "clip_seconds": clip_seconds,
    }


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        elif e > s:
            out.append([s, e])
    return [(s, e) for s, e in out]


def merge(total: dict, part: dict) -> None:
    """Add ``part`` (an :func:`attribute` result) into ``total``."""
    for label, row in part["confusion"].items():
        dst = total.setdefault("confusion", {}).setdefault(label, {})
        for emotion, sec in row.items():
            dst[emotion] = dst.get(emotion, 0.0) + sec
    for key in ("in_pauses", "missed", "clip_seconds", "pause_seconds"):
        if key in part:
            total[key] = total.get(key, 0.0) + part[key]


def agreement(confusion: dict, classes) -> tuple[float, float]:
    """Share of attributed time whose emotion is the clip's label, and the time-weighted
    F1-macro over ``classes``."""
    truth, pred, weight = [], [], []
    for label, row in confusion.items():
        for emotion, sec in row.items():
            truth.append(label)
            pred.append(emotion)
            weight.append(sec)
    if not weight:  # no segment over any clip
        return float("nan"), float("nan")
    acc = accuracy_score(truth, pred, sample_weight=weight)
    f1 = f1_score(truth, pred, labels=list(classes), average="macro", sample_weight=weight)
    return float(acc), float(f1)


class Capture:
    """Stands in for a bundle in ``segment()``: classifies as the bundle does and keeps the
    feature rows it was given, in order (one row per segment)."""

    def __init__(self, bundle):
        self.bundle = bundle
        self.spec = bundle.spec
        self.classes = bundle.classes
        self.rows: list[np.ndarray] = []

    def classify(self, X, stats=None):
        self.rows.append(np.atleast_2d(X))
        return self.bundle.classify(X, stats)


def subset(ds: Dataset, idx: list[int]) -> Dataset:
    """The recordings ``idx`` of ``ds`` as a dataset of their own (same root and classes)."""
    return replace(
        ds,
        paths=tuple(ds.paths[i] for i in idx),
        labels=tuple(ds.labels[i] for i in idx),
        speakers=tuple(ds.speakers[i] for i in idx),
    )


def trimmed(path: Path) -> np.ndarray:
    """The clip at 16 kHz without its leading and trailing silence."""
    y = audio.decode(path, sr=SR)
    return librosa.effects.trim(y, top_db=TRIM_DB, frame_length=320, hop_length=160)[0]


def build(
    path: Path, clips: list[tuple[np.ndarray, str]], pauses: list[float], kind: str, seed
) -> list[tuple[float, float, str]]:
    """Write the clips with pauses of ``kind`` and the lengths ``pauses`` (one more than the
    clips: before, between, after) around them; the clips' spans in seconds."""
    rng = np.random.default_rng(seed)
    speech = np.concatenate([y for y, _ in clips])
    amp = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) * 10 ** (-NOISE_DB / 20)
    parts, spans, t = [], [], 0.0
    for i, seconds in enumerate(pauses):
        n = int(round(seconds * SR))
        noisy = kind == "noise" or (kind == "mixed" and rng.random() < 0.5)
        noise = rng.standard_normal(n) * amp if noisy else np.zeros(n)
        parts.append(noise.astype(np.float32))
        t += n / SR
        if i < len(clips):
            y, label = clips[i]
            spans.append((t, t + y.size / SR, label))
            parts.append(y)
            t += y.size / SR
    sf.write(str(path), np.concatenate(parts), SR, subtype="PCM_16")
    return spans


def clip_pieces(clips, segs, right) -> list[tuple[int, float, float, float, bool]]:
    """Per clip: how many segments cover it (more than 0.05 s each), its length, the segment
    time over it, the agreeing part of that time, and ``right`` (the clip classified whole)."""
    out = []
    for (a, b, label), whole in zip(clips, right):
        over = [(min(e, b) - max(s, a), emotion) for s, e, emotion in segs]
        over = [(o, emotion) for o, emotion in over if o > 0.05]
        agree = sum(o for o, emotion in over if emotion == label)
        out.append((len(over), b - a, sum(o for o, _ in over), agree, whole))
    return out


def by_pieces(rows: list[tuple[int, float, float, float, bool]]) -> list[dict]:
    """Agreement of clips by how many segments cover them (:func:`clip_pieces` rows)."""
    out = []
    for lo, hi, name in ((0, 1, "0"), (1, 2, "1"), (2, 3, "2"), (3, 10**9, "3+")):
        sel = [r for r in rows if lo <= r[0] < hi]
        covered = sum(r[2] for r in sel)
        out.append(
            {
                "segments per clip": name,
                "clips": len(sel),
                "mean clip s": round(float(np.mean([r[1] for r in sel])), 2) if sel else None,
                "covered s": round(covered, 1),
                "agree": round(sum(r[3] for r in sel) / covered, 3) if covered else None,
                "whole clip right": round(float(np.mean([r[4] for r in sel])), 3) if sel else None,
            }
        )
    return out


def by_length(rows: list[tuple[float, float, str, str | None]]) -> list[dict]:
    """Agreement by segment length: ``rows`` are (length, seconds over clips, emotion, label
    of the clip under most of it or None)."""
    out = []
    for lo, hi in zip(LENGTHS[:-1], LENGTHS[1:]):
        sel = [r for r in rows if lo <= r[0] < hi]
        over = sum(r[1] for r in sel)
        agree = sum(r[1] for r in sel if r[2] == r[3])
        out.append(
            {
                "length": f"{lo:g}-{hi:g} s",
                "segments": len(sel),
                "seconds": round(sum(r[0] for r in sel), 1),
                "agree_majority": round(agree / over, 3) if over else None,
            }
        )
    return out


def run_corpus(name: str, root: Path, tmp: Path, args) -> tuple[dict, dict]:
    """Every fold of one corpus: the table row and the raw figures."""
    ds = load_dataset(root)
    if ds.speakers is None:
        print(f"{name}: no speakers, skipped")
        return {}, {}
    cache = DiskCache(tmp / "cache")
    spec = training.get_spec("default")
    t0 = time.perf_counter()
    data = training.featurize_dataset(ds, spec, cache=cache, n_jobs=2)
    X = {i: data.X[k] for k, i in enumerate(data.kept)}
    speakers = sorted(set(ds.speakers))
    folds = [speakers[f :: args.folds] for f in range(args.folds)][: args.run_folds]
    truth, raw, spk, trim, weights = [], [], [], [], []
    kinds: dict[str, dict] = {k: {} for k in PAUSES}  # segment(): attributed seconds by pause
    adapted: dict[str, dict] = {k: {} for k in PAUSES}  # windows again, recording statistics
    seg_rows: list[tuple[float, float, str, str | None]] = []
    pieces: list[tuple[int, float, float, float, bool]] = []
    chosen, recordings, audio_s, per_fold = Counter(), 0, 0.0, []
    for f, test_speakers in enumerate(folds):
        test = set(test_speakers)
        train_idx = [i for i in data.kept if ds.speakers[i] not in test]
        bundle = training.train(subset(ds, train_idx), cache=cache, n_jobs=2, repeats=TRAIN_REPEATS)
        chosen[bundle.adapt] += 1
        fold_total: dict = {}
        for s_i, speaker in enumerate(test_speakers):
            idx = [i for i in data.kept if ds.speakers[i] == speaker]
            Xs = np.stack([X[i] for i in idx])
            stats = by_speaker(Xs, [speaker] * len(idx))[speaker]
            raw += [r["emotion"] for r in bundle.classify(Xs)]
            spk += [r["emotion"] for r in bundle.classify(Xs, [stats] * len(idx))]
            truth += [ds.labels[i] for i in idx]
            ys = [trimmed(ds.paths[i]) for i in idx]
            weights += [y.size / SR for y in ys]
            Xt = np.stack([spec.from_waveform(y) for y in ys])
            trim_here = [r["emotion"] for r in bundle.classify(Xt)]
            trim += trim_here
            rng = np.random.default_rng([SEED, f, s_i])
            order = rng.permutation(len(idx))
            per = args.clips_per_recording or len(idx)
            for r0 in range(0, len(order), per):
                chunk = [(ys[k], ds.labels[idx[k]]) for k in order[r0 : r0 + per]]
                right = [trim_here[k] == ds.labels[idx[k]] for k in order[r0 : r0 + per]]
                pauses = list(rng.uniform(*PAUSE_SECONDS, size=len(chunk) + 1))
                for kind in PAUSES:  # the same clips, order and pause lengths
                    path = tmp / f"rec-{f}-{s_i}-{r0}-{kind}.wav"
                    spans = build(path, chunk, pauses, kind, [SEED, f, s_i, r0])
                    res = segments.segment(bundle, path, filename=path.name)
                    segs = [(s["START"], s["END"], s["EMOTION"]) for s in res["SEGMENTS"]]
                    part = attribute(spans, segs)
                    part["pause_seconds"] = float(sum(pauses))
                    merge(kinds[kind], part)
                    if bundle.adapt != "off":  # the same windows without speaker statistics
                        cap = Capture(bundle)
                        plain = segments.segment(cap, path, filename=path.name)
                        assert not plain["ADAPTED"] and len(plain["SEGMENTS"]) == len(segs)
                        segs2 = [(s["START"], s["END"], s["EMOTION"]) for s in plain["SEGMENTS"]]
                        merge(adapted[kind], attribute(spans, segs2))
                    path.unlink()
                    if kind not in HEADLINE:
                        continue
                    merge(fold_total, part)
                    pieces += clip_pieces(spans, segs, right)
                    for s, e, emotion in segs:
                        over = [(min(e, b) - max(s, a), lab) for a, b, lab in spans]
                        best = max(over, default=(0.0, None))
                        seg_rows.append((e - s, sum(o for o, _ in over if o > 0), emotion, best[1]))
                    recordings += 1
                    audio_s += res["DURATION"]
        acc, _ = agreement(fold_total.get("confusion", {}), ds.classes)
        per_fold.append({"fold": f, "speakers": test_speakers, "adapt": bundle.adapt, "agree": acc})
        print(
            f"{name} fold {f + 1}/{len(folds)}: {test_speakers} adapt={bundle.adapt} "
            f"agreement {acc:.3f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    classes = list(ds.classes)
    total: dict = {}
    for kind in HEADLINE:
        merge(total, kinds[kind])
    both: dict = {}
    for kind in HEADLINE:
        merge(both, adapted[kind])
    correct = np.array(raw) == np.array(truth)
    row = {
        "dataset": name,
        "folds": f"{len(folds)} of {args.folds}",
        "clips": len(truth),
        "recordings": recordings,
        "audio_s": round(audio_s),
        "adapt chosen": " ".join(f"{k}×{v}" for k, v in chosen.items()),
        "clip acc": float(correct.mean()),
        "clip F1": float(f1_score(truth, raw, labels=classes, average="macro")),
        "clip acc, time": float(np.average(correct, weights=weights)),
        "clip acc, trimmed": float(accuracy_score(truth, trim)),
        "clip acc, spk stats": float(accuracy_score(truth, spk)),
        **over_time(total, both, classes),
    }
    by_kind = [
        {"dataset": name, "pauses": k, **over_time(kinds[k], adapted[k], classes)} for k in PAUSES
    ]
    raw_figures = {
        **row,
        "classes": classes,
        "by_pause_kind": by_kind,
        "totals": total,
        "clip_f1_spk_stats": float(f1_score(truth, spk, labels=classes, average="macro")),
        "by_segment_length": by_length(seg_rows),
        "by_pieces": by_pieces(pieces),
        "folds_detail": per_fold,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return row, raw_figures


def over_time(total: dict, adapted: dict, classes) -> dict:
    """The over-time columns of a table row from attributed seconds (:func:`merge` totals)."""
    agree, agree_f1 = agreement(total.get("confusion", {}), classes)
    rec = agreement(adapted["confusion"], classes)[0] if adapted.get("confusion") else "-"
    pauses = total.get("in_pauses", 0.0)
    return {
        "agree": agree,
        "agree F1": agree_f1,
        "agree, no speaker stats": rec,
        "in pauses s (% pause)": f"{pauses:.1f} ({100 * pauses / total['pause_seconds']:.1f} %)",
        "missed %": round(100 * total["missed"] / total["clip_seconds"], 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=4, help="speaker folds")
    ap.add_argument("--clips-per-recording", type=int, default=0, help="0: one per speaker")
    ap.add_argument("--quick", action="store_true", help="one fold of 3, 20 clips a recording")
    args = ap.parse_args()
    args.run_folds = args.folds
    if args.quick:
        args.folds, args.run_folds = 3, 1
        args.clips_per_recording = args.clips_per_recording or 20
    corpora = [
        ("EMO-DB", emodb_dir(), "SER_EMODB_DIR"),
        ("RAVDESS 13-24", second_corpus_dir(), "SER_CORPUS2_DIR"),
    ]
    rows, out = [], []
    with tempfile.TemporaryDirectory(prefix="ser-agreement-") as tmp:
        for name, root, env in corpora:
            if root is None:
                print(f"{name} not found ({env}): skipped")
                continue
            work = Path(tmp) / name.replace(" ", "_")
            work.mkdir()
            row, raw_figures = run_corpus(name, root, work, args)
            if row:
                rows.append(row)
                out.append(raw_figures)
    if not rows:
        print("no corpus found: nothing measured")
        return 0
    print_table(rows, COLUMNS)
    print(f"By pause kind (the same clips, order and pause lengths; the row above: {HEADLINE}):")
    print_table([k for r in out for k in r["by_pause_kind"]], ["dataset", "pauses", *COLUMNS[-5:]])
    for r in out:
        print(f"{r['dataset']}: clips by the number of segments covering them")
        print_table(r["by_pieces"], list(r["by_pieces"][0]))
        print(f"{r['dataset']}: agreement by segment length (label of the clip under most of it)")
        print_table(r["by_segment_length"], ["length", "segments", "seconds", "agree_majority"])
    dump("segments_agreement", {"args": vars(args), "corpora": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
