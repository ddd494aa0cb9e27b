"""The confusion-matrix picture: row-normalised colours, counts in the cells, a colour bar and
a title naming version, protocol and F1."""

from __future__ import annotations

import numpy as np

from ser.ml import report

MATRIX = [[8, 2, 0], [1, 1, 0], [0, 0, 0]]
CLASSES = ["anger", "fear", "neutral"]


def test_row_normalised_gives_shares_of_each_true_class():
    rates = report.row_normalised(MATRIX)
    assert np.allclose(rates, [[0.8, 0.2, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])


def test_the_figure_colours_row_shares_and_writes_counts():
    title = report.confusion_title("v7", "speaker", 0.81234)
    assert title == "Confusion matrix, v7, speaker protocol, F1-macro 0.812"
    fig = report.confusion_figure(MATRIX, CLASSES, title)
    ax = fig.axes[0]
    image = ax.images[0]
    assert np.allclose(image.get_array(), report.row_normalised(MATRIX))  # not the counts
    assert image.get_clim() == (0, 1)
    assert len(fig.axes) == 2  # the matrix and its colour bar
    cells = [t.get_text() for t in ax.texts]
    assert cells == [str(v) for row in MATRIX for v in row]
    assert ax.get_title() == title


def test_confusion_png_is_a_png():
    png = report.confusion_png(MATRIX, CLASSES, report.confusion_title("ds", "stratified"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
