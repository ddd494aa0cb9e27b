"""Evaluation pictures and metrics files: confusion matrix, 2-D PCA scatter, metrics JSON."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler


def _figure():
    # matplotlib (half a second to import) loads only when a picture is drawn.
    import matplotlib

    matplotlib.use("Agg")  # no display anywhere this runs
    from matplotlib.figure import Figure

    return Figure


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def row_normalised(matrix: Sequence[Sequence[int]]) -> np.ndarray:
    """Each row of a confusion matrix as shares of its true class (an empty row stays 0)."""
    cm = np.asarray(matrix, dtype=float)
    return cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)


def confusion_title(name: str | None, protocol: str | None = None, f1: float | None = None) -> str:
    """ "Confusion matrix, v3, speaker protocol, F1-macro 0.812" (the parts that are known)."""
    parts = ["Confusion matrix"]
    if name:
        parts.append(str(name))
    if protocol:
        parts.append(f"{protocol} protocol")
    if f1 is not None:
        parts.append(f"F1-macro {f1:.3f}")
    return ", ".join(parts)


def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = ""):
    """The matplotlib Figure of a confusion matrix (rows: true class, columns: predicted):
    colours are row shares (normalised per true class, with a colour bar), cells show counts."""
    cm = np.asarray(matrix, dtype=float)
    n = len(classes)
    fig = _figure()(figsize=(1.8 + 0.8 * n, 0.8 + 0.8 * n))
    ax = fig.subplots()
    rates = row_normalised(cm)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            color = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix (pooled over folds)", fontsize=10)
    return fig


def confusion_png(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = ""
) -> bytes:
    """The confusion matrix as a PNG (see :func:`confusion_figure`)."""
    return _png(confusion_figure(matrix, classes, title))


def pca_png(X: np.ndarray, y: np.ndarray, classes: Sequence[str], title: str = "") -> bytes:
    """The standardized features projected on their first two principal components."""

    Z = PCA(n_components=2, random_state=0).fit_transform(StandardScaler().fit_transform(X))
    fig = _figure()(figsize=(6.5, 5))
    ax = fig.subplots()
    for k, name in enumerate(classes):
        m = y == k
        ax.scatter(Z[m, 0], Z[m, 1], s=12, alpha=0.75, label=name)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "Features, 2-D PCA")
    return _png(fig)


def write_report(
    out_dir: Path | str, metrics: dict, X: np.ndarray, y: np.ndarray, classes: Sequence[str]
) -> dict[str, Path]:
    """Write metrics.json, confusion.png and pca.png into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    label = f"{metrics.get('features', '')} / {metrics.get('protocol', '')}"
    paths = {
        "metrics": out / "metrics.json",
        "confusion": out / "confusion.png",
        "pca": out / "pca.png",
    }
    paths["metrics"].write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    paths["confusion"].write_bytes(
        confusion_png(
            metrics["confusion_matrix"],
            classes,
            confusion_title(
                metrics.get("dataset") or f"{metrics.get('features', '')} features",
                metrics.get("protocol"),
                metrics.get("f1_macro_mean"),
            ),
        )
    )
    paths["pca"].write_bytes(pca_png(X, y, classes, f"2-D PCA, {label}"))
    return paths
