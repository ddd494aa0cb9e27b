"""ser.datasets: the three layouts, their precedence, and every DatasetError."""

from __future__ import annotations

import pytest

from ser.datasets import EMODB_ORDER, check_protocol, load_dataset
from ser.errors import DatasetError
from tests import audiogen


@pytest.mark.parametrize("layout", ["labels_csv", "folders", "emodb"])
def test_layouts(tmp_path, layout):
    audiogen.make_dataset(tmp_path, layout, n_per_class=4)
    ds = load_dataset(tmp_path)
    assert ds.layout == layout
    assert len(ds) == 12
    assert ds.class_counts() == {c: 4 for c in ds.classes}
    assert all(p.is_file() for p in ds.paths)
    if layout == "folders":
        assert ds.speakers is None
        assert ds.classes == ("calm", "excited", "tense")
    else:
        assert ds.speakers is not None and len(set(ds.speakers)) == 4


def test_emodb_names_and_order(tmp_path):
    audiogen.make_dataset(tmp_path, "emodb", n_per_class=2)
    ds = load_dataset(tmp_path)
    assert ds.classes == ("anger", "happiness", "neutral")  # prototype order, present classes
    assert set(ds.labels) == {"anger", "happiness", "neutral"}


def test_real_emodb(emodb):
    ds = load_dataset(emodb)
    assert len(ds) == 535 and ds.classes == EMODB_ORDER
    assert ds.class_counts()["anger"] == 127 and len(set(ds.speakers)) == 10


def test_labels_csv_takes_precedence(tmp_path):
    audiogen.make_dataset(tmp_path, "folders", n_per_class=2)
    (tmp_path / "labels.csv").write_text(
        "path,label\ncalm/clip000.wav,a\ncalm/clip001.wav,b\nexcited/clip000.wav,b\n"
    )
    ds = load_dataset(tmp_path)
    assert ds.layout == "labels_csv" and ds.labels == ("a", "b", "b") and ds.speakers is None


def _code(root) -> str:
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    return err.value.code


def test_errors(tmp_path):
    assert _code(tmp_path / "absent") == "DATASET_NOT_FOUND"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio")
    assert _code(tmp_path / "empty") == "DATASET_NO_AUDIO"

    one = tmp_path / "one"
    audiogen.write(one / "only" / "a.wav", audiogen.tone())
    assert _code(one) == "DATASET_TOO_FEW_CLASSES"

    missing = tmp_path / "missing"
    audiogen.write(missing / "a.wav", audiogen.tone())
    (missing / "labels.csv").write_text("path,label\na.wav,x\nb.wav,y\n")
    assert _code(missing) == "DATASET_MISSING_FILE"

    bad = tmp_path / "bad"
    audiogen.write(bad / "a.wav", audiogen.tone())
    (bad / "labels.csv").write_text("file,emotion\na.wav,x\n")
    assert _code(bad) == "DATASET_BAD_LABELS"

    escape = tmp_path / "escape"
    escape.mkdir()
    (escape / "labels.csv").write_text("path,label\n../one/only/a.wav,x\n")
    assert _code(escape) == "DATASET_BAD_LABELS"


def test_protocol_checks(tmp_path):
    audiogen.make_dataset(tmp_path, "labels_csv", n_per_class=3, n_speakers=1)
    ds = load_dataset(tmp_path)
    with pytest.raises(DatasetError) as err:
        check_protocol(ds, "stratified", 4)
    assert err.value.code == "DATASET_CLASS_TOO_SMALL"
    check_protocol(ds, "stratified", 3)
    with pytest.raises(DatasetError) as err:
        check_protocol(ds, "speaker")
    assert err.value.code == "DATASET_CLASS_TOO_SMALL"


def test_speaker_protocol_needs_speakers(tmp_path):
    audiogen.make_dataset(tmp_path, "folders", n_per_class=4)
    with pytest.raises(DatasetError) as err:
        check_protocol(load_dataset(tmp_path), "speaker")
    assert err.value.code == "DATASET_NO_SPEAKERS"


def test_messages_call_the_folder_what_the_caller_names_it(tmp_path):
    """The command line shows the path typed; the service its path under the data root."""
    for i in range(2):
        audiogen.write(tmp_path / "flat" / f"take-{i}.wav", audiogen.tone())
    for name, shown in ((None, str(tmp_path / "flat")), ("calls/flat", "calls/flat")):
        with pytest.raises(DatasetError) as err:
            load_dataset(tmp_path / "flat", name=name)
        assert err.value.code == "DATASET_NO_LABELS" and shown in err.value.message
        assert "labels.csv" in err.value.message  # what to add
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path / "flat", name="calls/flat")
    assert str(tmp_path) not in err.value.message


def test_an_unreadable_dataset_is_a_dataset_error(tmp_path, monkeypatch):
    from ser import datasets

    audiogen.make_dataset(tmp_path / "ds", "labels_csv", n_per_class=2)

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(datasets, "open", denied, raising=False)
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path / "ds", name="ds")
    assert err.value.code == "DATASET_UNREADABLE"
    assert err.value.message == "cannot read ds/labels.csv: Permission denied"


def test_the_default_dataset_is_the_one_dataset_of_the_default_folder(tmp_path):
    from ser.datasets import default_dataset

    audiogen.make_dataset(tmp_path / "corpus", "emodb", n_per_class=1)
    audiogen.write(tmp_path / "other" / "take.wav", audiogen.tone())
    assert default_dataset(tmp_path) == tmp_path / "corpus"
    audiogen.make_dataset(tmp_path / "second", "labels_csv", n_per_class=1)
    with pytest.raises(DatasetError) as err:
        default_dataset(tmp_path, name=".")
    assert err.value.code == "DATASET_AMBIGUOUS"
    assert err.value.message.startswith(". holds several datasets (corpus, second)")
    assert default_dataset(tmp_path / "second") == tmp_path / "second"  # labels of its own
    classes = tmp_path / "classes"
    audiogen.make_dataset(classes, "folders", n_per_class=1)
    assert default_dataset(classes) == classes
    assert default_dataset(tmp_path / "other") == tmp_path / "other"  # (fails to load later)


def test_an_unreadable_folder_beside_the_default_dataset_is_passed_over(tmp_path, monkeypatch):
    from pathlib import Path

    from ser.datasets import default_dataset

    audiogen.make_dataset(tmp_path / "corpus", "emodb", n_per_class=1)
    (tmp_path / "locked").mkdir()
    listing = Path.iterdir

    def iterdir(self):
        if self.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    assert default_dataset(tmp_path) == tmp_path / "corpus"
