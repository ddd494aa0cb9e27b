"""bench/segments_agreement.py: segment time attributed to the clips under it by overlap."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))  # the bench imports its sibling `common`
    try:
        yield importlib.import_module("segments_agreement")
    finally:
        sys.path.remove(str(BENCH))


CLIPS = [(1.0, 3.0, "anger"), (4.0, 5.0, "sadness")]  # pauses: 0-1, 3-4, 5-


def test_time_is_split_by_overlap_between_clips_and_pauses(bench):
    segs = [
        (0.5, 2.0, "anger"),  # 0.5 s in the first pause, 1 s agreeing
        (2.0, 4.5, "sadness"),  # 1 s wrong over anger, 1 s in a pause, 0.5 s agreeing
        (4.8, 6.0, "anger"),  # 0.2 s wrong over sadness, 1 s after the last clip
    ]
    out = bench.attribute(CLIPS, segs)
    assert out["confusion"] == {
        "anger": {"anger": pytest.approx(1.0), "sadness": pytest.approx(1.0)},
        "sadness": {"sadness": pytest.approx(0.5), "anger": pytest.approx(0.2)},
    }
    assert out["in_pauses"] == pytest.approx(2.5)
    assert out["missed"] == pytest.approx(0.3)  # 4.5-4.8 of sadness; anger is all covered
    assert out["clip_seconds"] == pytest.approx(3.0)
    acc, f1 = bench.agreement(out["confusion"], ["anger", "sadness"])
    assert acc == pytest.approx(1.5 / 2.7)
    assert 0 < f1 < 1


def test_missed_speech_counts_overlapping_segments_once(bench):
    out = bench.attribute(CLIPS, [(1.0, 2.5, "anger"), (2.0, 3.0, "anger")])
    assert out["missed"] == pytest.approx(1.0)  # the second clip; the first is covered
    assert out["in_pauses"] == 0


def test_no_segments_is_all_missed_and_no_agreement(bench):
    out = bench.attribute(CLIPS, [])
    assert out["confusion"] == {}
    assert out["missed"] == pytest.approx(3.0)
    acc, f1 = bench.agreement(out["confusion"], ["anger", "sadness"])
    assert math.isnan(acc) and math.isnan(f1)
