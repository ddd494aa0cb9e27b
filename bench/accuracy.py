"""Accuracy under both protocols and every adaptation mode, on EMO-DB, the second corpus, EMO-DB
re-laid out as a labels.csv corpus, and a generated corpus where each speaker voices one class.

    python bench/accuracy.py            # everything (a few minutes on 2 cores)
    python bench/accuracy.py --quick    # 2 shuffles instead of 10, fewer rows

Everything fitted (scaling, speaker statistics, the choice of adaptation mode, the classifier)
is fitted inside the CV folds; a test speaker's statistics come from its test clips only.
Stratified figures are averaged over every fold of 10 shuffles (seeds 42..51); the speaker
protocol is leave-one-speaker-out (one answer, not repeated).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path

from common import corpus, dump, print_table

from ser.config import second_corpus_dir
from ser.datasets import load_dataset
from ser.features import get_spec
from ser.features.cache import DiskCache
from ser.ml import training
from tests import audiogen

warnings.filterwarnings("ignore", category=FutureWarning)
COLUMNS = [
    "dataset",
    "features",
    "adapt",
    "protocol",
    "repeats",
    "f1_macro_mean",
    "f1_macro_std",
    "chance_f1",
    "speaker_baseline_f1",
    "confounded",
    "chosen in folds",
    "uar",
    "ece",
]


def evaluate(name, root, cache, runs, repeats) -> list[dict]:
    """One row per (features, adapt, protocol) of ``runs``."""
    ds = load_dataset(root)
    rows, data = [], {}
    for features, adapt, protocols in runs:
        if features not in data:
            data[features] = training.featurize_dataset(
                ds, get_spec(features), cache=cache, n_jobs=2
            )
        for protocol in protocols:
            m, _ = training.evaluate_features(
                data[features], protocol, features=features, adapt=adapt, repeats=repeats, n_jobs=2
            )
            folds = Counter(m["adapt_folds"])
            rows.append(
                {
                    "dataset": name,
                    "features": features,
                    "adapt": adapt,
                    "protocol": protocol,
                    "repeats": m["repeats"],
                    "f1_macro_mean": m["f1_macro_mean"],
                    "f1_macro_std": m["f1_macro_std"],
                    "chance_f1": m["chance_f1"],
                    "speaker_baseline_f1": m["speaker_baseline_f1"],
                    "confounded": m["speaker_confounded"],
                    "chosen in folds": " ".join(f"{k}×{v}" for k, v in folds.items()),
                    "uar": m["uar"],
                    "ece": m["ece"],
                }
            )
            print(rows[-1], flush=True)
    return rows


def relayout(src: Path, dst: Path) -> Path:
    """EMO-DB as a labels.csv corpus under other names and folders (a temp copy, not kept)."""
    ds = load_dataset(src)
    with open(dst / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "speaker"])
        for i, (p, label, spk) in enumerate(zip(ds.paths, ds.labels, ds.speakers)):
            rel = Path(f"spk{spk}") / f"utt{i:04d}.wav"
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst / rel)
            w.writerow([rel.as_posix(), label, spk])
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.quick else 10
    both = ("stratified", "speaker")
    modes = ("auto", "speaker") if args.quick else ("off", "speaker", "both", "auto")
    full = [("seed", "off", both)] + [("default", a, both) for a in modes]
    emodb = corpus()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = DiskCache(tmp / "cache")
        rows = evaluate("EMO-DB", emodb, cache, full, repeats)
        second = second_corpus_dir()
        if second is None:
            print("second corpus not found (SER_CORPUS2_DIR): its rows are skipped")
        else:
            rows += evaluate("RAVDESS 13-24", second, cache, full, repeats)
        csv_root = relayout(emodb, (tmp / "csv").mkdir() or tmp / "csv")
        rows += evaluate(
            "EMO-DB as labels.csv", csv_root, cache, [("default", "auto", both)], repeats
        )
        gen = audiogen.make_dataset(
            tmp / "gen", "labels_csv", n_per_class=24, n_speakers=6, confounded=True
        )
        rows += evaluate(
            "generated, one class per speaker", gen, cache, [("default", "auto", both)], repeats
        )
        data = training.featurize_dataset(load_dataset(gen), get_spec("default"), cache=cache)
        chosen = training.fit_model(data, adapt="auto").mode_
        print(f"generated one-class-per-speaker corpus: auto fitted on all of it chose {chosen!r}")
    print_table(rows, COLUMNS)
    dump("accuracy", rows)


if __name__ == "__main__":
    main()
