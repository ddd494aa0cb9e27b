"""Evaluating a score job's rows against a folder's labels: ser.ml.scoring.evaluate_rows, the
lenient label discovery (ser.datasets.labels_by_path) and the cheap submission check
(ser.bulk.check_evaluate), with hand-made rows and small folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ser import bulk
from ser.datasets import check_labelled, labels_by_path
from ser.errors import DatasetError, PathError
from ser.ml.scoring import evaluate_rows
from tests import audiogen

CLASSES = ["anger", "calm", "sad"]
ROOT = Path(__file__).resolve().parents[1]


def _ok(name: str, emotion: str) -> dict:
    return {"FILENAME": name, "EMOTION": emotion, "PROBABILITY": 0.9}


def _err(name: str) -> dict:
    return {"FILENAME": name, "ERROR": {"CODE": "AUDIO_SILENT", "MESSAGE": "silent"}}


def test_perfect_predictions():
    labels = {f"d/{c}{i}.wav": c for c in CLASSES for i in range(3)}
    rows = [_ok(f, c) for f, c in labels.items()]
    ev = evaluate_rows(rows, labels, CLASSES)
    assert (ev["F1_MACRO"], ev["UAR"], ev["ACCURACY"]) == (1.0, 1.0, 1.0)
    assert ev["EVALUATED"] == 9 and ev["CLASSES"] == CLASSES
    assert ev["CONFUSION_MATRIX"] == [[3, 0, 0], [0, 3, 0], [0, 0, 3]]
    assert ev["PER_CLASS"]["calm"] == {"PRECISION": 1.0, "RECALL": 1.0, "F1": 1.0, "SUPPORT": 3}
    assert (ev["UNKNOWN_LABELS"], ev["UNLABELLED"], ev["FAILED"]) == ({}, 0, 0)
    json.dumps(ev)  # plain JSON types only


def test_all_wrong():
    labels = {"a.wav": "anger", "b.wav": "calm", "c.wav": "sad", "d.wav": "sad"}
    wrong = {"anger": "calm", "calm": "sad", "sad": "anger"}
    rows = [_ok(f, wrong[c]) for f, c in labels.items()]
    ev = evaluate_rows(rows, labels, CLASSES)
    assert (ev["F1_MACRO"], ev["UAR"], ev["ACCURACY"]) == (0.0, 0.0, 0.0)
    assert ev["CONFUSION_MATRIX"] == [[0, 1, 0], [0, 0, 1], [2, 0, 0]]
    assert ev["PER_CLASS"]["sad"]["SUPPORT"] == 2 and ev["PER_CLASS"]["sad"]["RECALL"] == 0.0


def test_mixed_figures_match_hand_computation():
    labels = {"1": "anger", "2": "anger", "3": "calm", "4": "calm"}
    rows = [_ok("1", "anger"), _ok("2", "calm"), _ok("3", "calm"), _ok("4", "calm")]
    ev = evaluate_rows(rows, labels, CLASSES)
    assert ev["ACCURACY"] == 0.75
    assert ev["UAR"] == pytest.approx((0.5 + 1.0) / 2)  # over the classes that occur
    # F1 anger 2/3, calm 0.8; sad neither true nor predicted: left out of the macro average
    assert ev["F1_MACRO"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert ev["PER_CLASS"]["calm"]["PRECISION"] == pytest.approx(2 / 3)
    assert ev["PER_CLASS"]["sad"] == {"PRECISION": 0.0, "RECALL": 0.0, "F1": 0.0, "SUPPORT": 0}


def test_unknown_missing_labels_and_failed_rows_are_counted_not_evaluated():
    labels = {"a.wav": "anger", "b.wav": "happy", "c.wav": "happy", "d.wav": "bored"}
    labels |= {"e.wav": "calm", "f.wav": "sad"}
    rows = [
        _ok("a.wav", "anger"),
        _ok("b.wav", "anger"),  # label the model does not know
        _ok("c.wav", "calm"),
        _ok("d.wav", "sad"),
        _ok("x.wav", "calm"),  # no label
        _ok("y.wav", "calm"),
        _err("e.wav"),  # labelled, but failed
        _err("z.wav"),
        _ok("f.wav", "sad"),
    ]
    ev = evaluate_rows(rows, labels, CLASSES)
    assert ev["UNKNOWN_LABELS"] == {"bored": 1, "happy": 2}
    assert (ev["UNLABELLED"], ev["FAILED"], ev["EVALUATED"]) == (2, 2, 2)
    assert ev["EVALUATED"] + ev["UNLABELLED"] + ev["FAILED"] + 3 == len(rows)
    assert ev["ACCURACY"] == 1.0 and ev["CONFUSION_MATRIX"] == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]


def test_nothing_to_evaluate_gives_no_figures():
    rows = [_err("a.wav"), _ok("b.wav", "calm")]
    ev = evaluate_rows(rows, {"a.wav": "anger", "b.wav": "joy"}, CLASSES)
    assert ev["EVALUATED"] == 0 and ev["F1_MACRO"] is None and ev["UAR"] is None
    assert ev["CONFUSION_MATRIX"] == [[0] * 3] * 3 and ev["UNKNOWN_LABELS"] == {"joy": 1}
    assert evaluate_rows([], {}, CLASSES)["EVALUATED"] == 0


# -- finding the labels -------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["labels_csv", "folders", "emodb"])
def test_labels_by_path_agrees_with_the_loader(tmp_path, layout):
    from ser.datasets import load_dataset

    audiogen.make_dataset(tmp_path, layout, n_per_class=2)
    ds = load_dataset(tmp_path)
    found, table = labels_by_path(tmp_path)
    assert found == layout == check_labelled(tmp_path)
    assert table == {p.relative_to(tmp_path).as_posix(): lab for p, lab in zip(ds.paths, ds.labels)}


def test_labels_csv_is_read_leniently(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "path,label\n./a/x.wav,calm\nb.wav,\n,calm\ngone.wav,sad\nsub\\\\y.wav,anger\n"
    )
    assert labels_by_path(tmp_path) == (
        "labels_csv",
        {"a/x.wav": "calm", "gone.wav": "sad", "sub/y.wav": "anger"},
    )


def test_no_labels(tmp_path):
    audiogen.write(tmp_path / "recording-1.wav", audiogen.voice_like("calm", 0.5))
    audiogen.write(tmp_path / "03a01Fa.wav", audiogen.voice_like("calm", 0.5))
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / ".hidden").mkdir()
    audiogen.write(tmp_path / ".hidden" / "a.wav", audiogen.voice_like("calm", 0.5))
    for fn in (labels_by_path, check_labelled):
        with pytest.raises(DatasetError) as err:
            fn(tmp_path)
        assert err.value.code == "DATASET_NO_LABELS"
    (tmp_path / "labels.csv").write_text("path,label\na.wav,\n")
    assert check_labelled(tmp_path) == "labels_csv"  # the header only
    with pytest.raises(DatasetError, match="no recording with a label"):
        labels_by_path(tmp_path)
    (tmp_path / "labels.csv").write_text("path,speaker\na.wav,s1\n")
    with pytest.raises(DatasetError) as err:
        check_labelled(tmp_path)
    assert err.value.code == "DATASET_BAD_LABELS"
    with pytest.raises(DatasetError) as err:
        labels_by_path(tmp_path / "absent")
    assert err.value.code == "DATASET_NOT_FOUND"


def test_folder_labels_are_keyed_relative_to_the_data_root(tmp_path):
    data = tmp_path / "data"
    audiogen.make_dataset(data / "calls" / "june", "folders", n_per_class=1)
    folder = (data / "calls" / "june").resolve()
    assert bulk.check_evaluate(data, folder) == "folders"
    layout, table = bulk.folder_labels(data, folder)
    assert layout == "folders" and all(k.startswith("calls/june/") for k in table)
    assert table["calls/june/calm/clip000.wav"] == "calm"
    # the data root itself: keys without a prefix
    (data / "labels.csv").write_text("path,label\ncalls/june/calm/clip000.wav,tense\n")
    assert bulk.folder_labels(data, data.resolve()) == (
        "labels_csv",
        {"calls/june/calm/clip000.wav": "tense"},
    )


def test_a_labels_csv_outside_the_data_root_is_refused(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    audiogen.make_dataset(data / "f", "folders", n_per_class=1)
    outside.mkdir()
    (outside / "labels.csv").write_text("path,label\na.wav,calm\n")
    (data / "f" / "labels.csv").symlink_to(outside / "labels.csv")
    for fn in (bulk.check_evaluate, bulk.folder_labels):
        with pytest.raises(PathError):
            fn(data, (data / "f").resolve())


def test_the_submission_check_imports_no_numpy(tmp_path):
    audiogen.make_dataset(tmp_path, "emodb", n_per_class=1)
    code = (
        "import json, sys\nfrom pathlib import Path\nfrom ser import bulk\n"
        f"bulk.check_evaluate(Path({str(tmp_path)!r}).parent, Path({str(tmp_path)!r}).resolve())\n"
        "print(json.dumps([m for m in ('numpy', 'sklearn', 'ser.ml') if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_cli_prints_an_evaluation_as_tables(capsys):
    from ser.cli.evaluate import print_evaluation

    labels = {"a": "anger", "b": "sad", "c": "bored"}
    rows = [_ok("a", "anger"), _ok("b", "anger"), _ok("c", "calm"), _err("d")]
    ev = {"LABELS": "labels_csv", **evaluate_rows(rows, labels, CLASSES)}
    print_evaluation(ev, "http://api/jobs/j1/confusion.png")
    out = capsys.readouterr().out
    for text in ("F1-macro", "UAR", "accuracy", "bored ×1", "true \\ predicted", "j1/confusion"):
        assert text in out, out
    print_evaluation({"ERROR": {"CODE": "DATASET_NO_LABELS", "MESSAGE": "gone [x]"}})
    assert "DATASET_NO_LABELS: gone [x]" in capsys.readouterr().out
