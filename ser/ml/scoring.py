"""How good a model is on labelled data it scored: a bulk score job's rows against the
folder's labels (``POST /score`` with ``"evaluate": true``, ``ser score --evaluate``).

Every row counts in exactly one of: ``FAILED`` (the file could not be scored), ``UNLABELLED``
(no label for it), ``UNKNOWN_LABELS`` (a label the model does not know, counted per label)
and ``EVALUATED`` (the rows the metrics are computed on, over the model's classes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence

import numpy as np

from ser.ml.evaluation import pooled_metrics


def evaluate_rows(
    rows: Iterable[Mapping],
    labels: Mapping[str, str],
    classes: Sequence[str],
    trained_on: Container[str] | None = None,
) -> dict:
    """The ``EVALUATION`` of score rows (``FILENAME`` and ``EMOTION`` or ``ERROR``) against
    ``labels`` ({FILENAME: true label}, the same paths as the rows': relative to the data root)
    for a model of ``classes``: F1-macro, UAR, accuracy (None when no row is evaluated),
    per-class figures, the confusion matrix (rows: true class, columns: predicted, both in
    ``classes`` order) and the counts of the rows left out. With ``trained_on`` (the files the
    model was trained on, the same paths), ``TRAINING_OVERLAP`` counts the evaluated rows
    among them: figures on those measure memory, not generalisation."""
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    y: list[int] = []
    pred: list[int] = []
    failed = unlabelled = overlap = 0
    unknown: Counter[str] = Counter()
    for row in rows:
        if "ERROR" in row:
            failed += 1
            continue
        label = labels.get(row["FILENAME"])
        if label is None:
            unlabelled += 1
        elif label not in index:
            unknown[label] += 1
        else:
            y.append(index[label])
            pred.append(index[row["EMOTION"]])  # a model predicts its own classes only
            if trained_on is not None and row["FILENAME"] in trained_on:
                overlap += 1
    out: dict = {"EVALUATED": len(y), "F1_MACRO": None, "UAR": None, "ACCURACY": None}
    if y:
        m = pooled_metrics(np.asarray(y), np.asarray(pred), classes)
        out.update(F1_MACRO=m["f1_macro"], UAR=m["uar"], ACCURACY=m["accuracy"])
        matrix, per_class = m["confusion_matrix"], m["per_class"]
    else:
        matrix = [[0] * len(classes) for _ in classes]
        per_class = {c: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for c in classes}
    out.update(
        CLASSES=classes,
        PER_CLASS={
            c: {
                "PRECISION": v["precision"],
                "RECALL": v["recall"],
                "F1": v["f1"],
                "SUPPORT": v["support"],
            }
            for c, v in per_class.items()
        },
        CONFUSION_MATRIX=matrix,
        UNKNOWN_LABELS=dict(sorted(unknown.items())),
        UNLABELLED=unlabelled,
        FAILED=failed,
    )
    if trained_on is not None:
        out["TRAINING_OVERLAP"] = overlap
    return out
