"""How many clips of a new speaker adaptation needs: speaker-independent F1 when each test clip
is normalised with statistics from itself and k-1 other clips of its speaker, as a service
that has scored k clips of that speaker so far would.

    python bench/adaptation_clips.py    # EMO-DB and the second corpus, leave-one-speaker-out

Per held-out speaker, the model (default features, adaptation ``speaker``, its raw-feature
fallback included) is fitted on the other speakers; k = 0 is that fallback (no statistics),
k = 1 is what a speaker's first clip gets below ``min_clips`` if the threshold allowed it.
Each (clip, k) draws its k-1 companions at random (seed 0), averaged over 3 draws.
"""

from __future__ import annotations

import numpy as np
from common import corpus, dump, print_table
from sklearn.metrics import f1_score

from ser.config import second_corpus_dir
from ser.datasets import load_dataset
from ser.features import get_spec
from ser.features.cache import DiskCache
from ser.ml import adapt, pipeline, training

KS = (0, 1, 2, 3, 5, 10, 20, "all")
DRAWS = 3


def curve(name: str, root, cache) -> dict:
    data = training.featurize_dataset(
        load_dataset(root), get_spec("default"), cache=cache, n_jobs=2
    )
    X, y, g = data.X, data.y, np.asarray(data.groups)
    rng = np.random.default_rng(0)
    pred: dict = {k: [] for k in KS}
    truth: dict = {k: [] for k in KS}
    for speaker in np.unique(g):
        train, test = np.flatnonzero(g != speaker), np.flatnonzero(g == speaker)
        m = adapt.SpeakerAdaptive(pipeline.build_pipeline(), "speaker", min_clips=1)
        m.fit(X[train], y[train], g[train])
        for k in KS:
            draws = 1 if k in (0, "all") else DRAWS
            for _ in range(draws):
                rows = []
                for i in test:
                    if k == 0:
                        rows.append(None)
                        continue
                    others = test[test != i]
                    n = len(others) if k == "all" else min(k - 1, len(others))
                    pick = np.r_[i, rng.choice(others, n, replace=False)]
                    rows.append(adapt.Stats.of(X[pick]))
                keys = [None if s is None else str(j) for j, s in enumerate(rows)]
                table = {str(j): s for j, s in enumerate(rows) if s is not None}
                proba = m.predict_proba(X[test], keys, table)
                pred[k].append(proba.argmax(axis=1))
                truth[k].append(y[test])
    row = {"dataset": name}
    for k in KS:
        p, t = np.concatenate(pred[k]), np.concatenate(truth[k])
        row[f"k={k}"] = float(f1_score(t, p, average="macro"))
    print(row, flush=True)
    return row


def main() -> None:
    import tempfile
    from pathlib import Path

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = DiskCache(Path(tmp))
        rows.append(curve("EMO-DB", corpus(), cache))
        second = second_corpus_dir()
        if second is not None:
            rows.append(curve("RAVDESS 13-24", second, cache))
    print("pooled F1-macro of the held-out speakers' clips; k = clips in the speaker statistics")
    print_table(rows, ["dataset"] + [f"k={k}" for k in KS])
    dump("adaptation_clips", rows)


if __name__ == "__main__":
    main()
