"""Accuracy of the seed and default specs under both protocols, on EMO-DB and other layouts.

    python bench/accuracy.py            # EMO-DB + a labels.csv re-layout + a generated corpus

Everything fitted (scaling, classifier, calibration) is fitted inside the CV folds.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import warnings
from pathlib import Path

from common import corpus, dump, print_table

from ser import model
from ser.datasets import load_dataset
from tests import audiogen

warnings.filterwarnings("ignore", category=FutureWarning)
COLUMNS = [
    "dataset",
    "features",
    "classifier",
    "protocol",
    "f1_macro_mean",
    "f1_macro_std",
    "uar",
    "accuracy",
    "log_loss",
    "ece",
]


MAIN = (("seed", "svc"), ("default", "logreg"), ("default", "svc"))


def evaluate(name: str, root: Path, cache: Path, runs=MAIN) -> list[dict]:
    rows = []
    for features, classifier in runs:
        for protocol in ("stratified", "speaker"):
            m, _, _ = model.evaluate_dataset(
                root,
                protocol=protocol,
                features=features,
                classifier=classifier,
                cache_dir=cache,
                n_jobs=2,
            )
            rows.append(
                {
                    "dataset": name,
                    **{k: m[k] for k in COLUMNS[1:] if k in m},
                    "features": features,
                    "protocol": protocol,
                }
            )
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
    emodb = corpus()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        rows = evaluate("emodb", emodb, cache)
        rows += evaluate(
            "emodb as labels.csv",
            relayout(emodb, (tmp / "csv").mkdir() or tmp / "csv"),
            cache,
            MAIN[1:2],
        )
        gen = audiogen.make_dataset(tmp / "gen", "labels_csv", n_per_class=40, n_speakers=8)
        rows += evaluate("generated 3-class", gen, cache, MAIN[1:2])
    print_table(rows, COLUMNS)
    dump("accuracy", rows)


if __name__ == "__main__":
    main()
