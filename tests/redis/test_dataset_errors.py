"""Dataset problems as the service reports them, on a data root of broken datasets: through
the training work a worker runs (worker.train.run_train on the real Redis, no broker) and
through the API's up-front checks (Flask test client). No message names the server's
absolute path, only paths relative to the data root; a folder of unlabelled recordings is
DATASET_NO_LABELS (and POST /train refuses it before queueing); a training that names no
dataset picks the one dataset of the default folder, or says how to name one."""

from __future__ import annotations

import os
import uuid

import pytest

from tests import audiogen
from tests.harness import make_client

# folder -> the code a training of it fails with
BROKEN = {
    "long": "DATASET_NO_AUDIO",  # no recording at all
    "bad": "DATASET_BAD_LABELS",  # labels.csv without columns path,label
    "oneclass": "DATASET_TOO_FEW_CLASSES",
    "missing": "DATASET_MISSING_FILE",
    "flat": "DATASET_NO_LABELS",  # recordings, but no labels of any kind
    "headeronly": "DATASET_NO_LABELS",  # labels.csv naming nothing
    "notcsv": "DATASET_BAD_LABELS",  # labels.csv that is not text
    "small": "DATASET_CLASS_TOO_SMALL",
}


def _clip(path, seed: int = 0) -> None:
    audiogen.write(path, audiogen.voice_like("calm", 0.5, seed=seed))


@pytest.fixture(scope="module")
def broken_root(tmp_path_factory):
    """srv/data: one folder per entry of BROKEN (a sub-folder, as the README lays data out)."""
    root = tmp_path_factory.mktemp("srv") / "data"
    (root / "long").mkdir(parents=True)
    (root / "long" / "readme.txt").write_text("no audio here\n")
    _clip(root / "bad" / "a.wav")
    (root / "bad" / "labels.csv").write_text("file,emotion\na.wav,calm\n")
    _clip(root / "oneclass" / "only" / "a.wav")
    _clip(root / "missing" / "a.wav")
    (root / "missing" / "labels.csv").write_text("path,label\na.wav,x\nb.wav,y\n")
    for i in range(3):
        _clip(root / "flat" / f"recording-{i}.wav", seed=i)
    _clip(root / "headeronly" / "a.wav")
    (root / "headeronly" / "labels.csv").write_text("path,label\n")
    _clip(root / "notcsv" / "a.wav")
    (root / "notcsv" / "labels.csv").write_bytes(b"path,label\n\xff\xfe\x00a.wav,calm\n")
    for label in ("calm", "tense"):
        _clip(root / "small" / label / "a.wav")
    return root


def _leaks(message: str, root) -> bool:
    return str(root) in message or str(root.resolve()) in message


@pytest.fixture
def ctx(settings, redis_client, broken_root):
    from worker.context import Context

    prefix = f"dserr{uuid.uuid4().hex[:8]}:"
    yield Context(settings.model_copy(update={"key_prefix": prefix, "data_dir": broken_root}))
    keys = list(redis_client.scan_iter(f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)


def _train(ctx, params: dict) -> dict:
    """The job record of a training run by the worker's work function (no broker)."""
    from worker.train import run_train

    rec = ctx.jobs.create("train", params)
    out = run_train(ctx, rec["id"], params)
    assert out.get("failed"), out
    return ctx.jobs.get(rec["id"])


@pytest.mark.parametrize("folder, code", sorted(BROKEN.items()))
def test_training_errors_name_paths_relative_to_the_data_root(ctx, broken_root, folder, code):
    rec = _train(ctx, {"dataset": folder, "repeats": 1})
    error = rec["error"]
    assert error["CODE"] == code, error
    assert not _leaks(error["MESSAGE"], broken_root), error
    assert folder in error["MESSAGE"] or code == "DATASET_CLASS_TOO_SMALL", error


def test_an_unreadable_labels_csv_is_a_dataset_error_without_the_path(ctx, broken_root):
    if os.geteuid() == 0:
        pytest.skip("root reads a file whatever its mode")
    folder = broken_root / "locked"
    _clip(folder / "a.wav")
    (folder / "labels.csv").write_text("path,label\na.wav,calm\n")
    (folder / "labels.csv").chmod(0)
    try:
        error = _train(ctx, {"dataset": "locked"})["error"]
    finally:
        (folder / "labels.csv").chmod(0o644)
    assert error["CODE"] == "DATASET_UNREADABLE" and "locked/labels.csv" in error["MESSAGE"]
    assert not _leaks(error["MESSAGE"], broken_root), error


@pytest.fixture
def api(service_env, broken_root):
    return make_client(
        service_env,
        SER_DATA_DIR=str(broken_root),
        SER_KEY_PREFIX=f"dserr{uuid.uuid4().hex[:6]}:",
        SER_API_KEY="",
    )


def test_the_api_refuses_unlabelled_folders_before_queueing(api, broken_root):
    """POST /train and POST /score with evaluate: the same cheap check, the same answer."""
    checks = {"flat": "DATASET_NO_LABELS", "long": "DATASET_NO_AUDIO", "bad": "DATASET_BAD_LABELS"}
    for folder, code in checks.items():
        for resp in (
            api.post("/train", json={"dataset": folder}),
            api.get(f"/train?dataset={folder}"),
            api.post("/score", json={"folder": folder, "evaluate": True}),
        ):
            assert resp.status_code == 400, resp.get_data(as_text=True)
            error = resp.get_json()["ERROR"]
            assert error["CODE"] == code and folder in error["MESSAGE"], error
            assert not _leaks(error["MESSAGE"], broken_root), error
    resp = api.post("/train", json={"dataset": "flat"})
    assert "labels.csv" in resp.get_json()["ERROR"]["MESSAGE"]  # says what to add
    assert api.get("/jobs?kind=train").get_json()["JOBS"] == []  # nothing queued


def test_score_with_speakers_from_a_broken_labels_csv_names_it_relatively(api, broken_root):
    resp = api.post("/score", json={"folder": "notcsv", "speakers": "labels"})
    assert resp.status_code == 400
    error = resp.get_json()["ERROR"]
    assert error["CODE"] == "DATASET_BAD_LABELS" and "notcsv/labels.csv" in error["MESSAGE"]
    assert not _leaks(error["MESSAGE"], broken_root), error


# -- a training that names no dataset ---------------------------------------------------------
def _layout(root, kind: str) -> None:
    """Data roots as users lay them out (no name below means anything to the code)."""
    if kind == "one_corpus":  # the README's: the corpus in a sub-folder, and other folders
        audiogen.make_dataset(root / "corpus", "emodb", n_per_class=2)
        _clip(root / "recordings" / "call-1.wav")
        (root / "notes").mkdir()
    elif kind == "two_corpora":
        audiogen.make_dataset(root / "first", "emodb", n_per_class=2)
        audiogen.make_dataset(root / "second", "labels_csv", n_per_class=2)
    elif kind == "lone_class_folders":  # the one sub-folder holds class folders
        audiogen.make_dataset(root / "mine", "folders", n_per_class=2)
    elif kind == "classes_at_the_root":
        audiogen.make_dataset(root, "folders", n_per_class=2)
    elif kind == "lone_unlabelled":
        _clip(root / "stuff" / "recording.wav")


@pytest.fixture
def default_api(service_env, tmp_path):
    """(make(kind) -> (Flask test client, data root)) on a Redis database of its own: the
    trainings it queues reach no worker of the session."""
    url = service_env["SER_REDIS_URL"].rsplit("/", 1)[0] + "/9"

    def make(kind: str):
        root = tmp_path / kind / "data"
        root.mkdir(parents=True)
        _layout(root, kind)
        client = make_client(
            service_env,
            SER_DATA_DIR=str(root),
            SER_REDIS_URL=url,
            SER_KEY_PREFIX=f"dflt{uuid.uuid4().hex[:6]}:",
            SER_API_KEY="",
        )
        return client, root

    yield make
    import redis

    redis.Redis.from_url(url).flushdb()


@pytest.mark.parametrize(
    "kind, dataset",
    [
        ("one_corpus", "corpus"),
        ("lone_class_folders", "mine"),
        ("classes_at_the_root", "."),
    ],
)
def test_a_bare_training_trains_the_one_dataset_of_the_default_folder(default_api, kind, dataset):
    api, _ = default_api(kind)
    resp = api.post("/train")
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert resp.get_json()["DATASET"] == dataset
    # the prototype's GET /train, and a request naming that dataset, join the same training
    for again in (api.get("/train"), api.post("/train", json={"dataset": dataset})):
        assert again.status_code == 202 and again.headers["X-Single-Flight"] == "joined"
        assert again.get_json()["JOB_ID"] == resp.get_json()["JOB_ID"]


@pytest.mark.parametrize(
    "kind, code, named",
    [
        ("two_corpora", "DATASET_AMBIGUOUS", ("first", "second")),
        ("lone_unlabelled", "DATASET_NO_LABELS", ("stuff",)),
    ],
)
def test_a_bare_training_says_how_to_name_a_dataset(default_api, kind, code, named):
    api, root = default_api(kind)
    for resp in (api.post("/train"), api.get("/train")):
        assert resp.status_code == 400, resp.get_data(as_text=True)
        error = resp.get_json()["ERROR"]
        assert error["CODE"] == code, error
        assert all(name in error["MESSAGE"] for name in named), error
        assert '{"dataset": "<folder>"}' in error["MESSAGE"], error
        assert "SER_TRAIN_DATASET" in error["MESSAGE"] and not _leaks(error["MESSAGE"], root)
    assert api.get("/jobs?kind=train").get_json()["JOBS"] == []


def test_a_default_dataset_that_fails_in_the_worker_says_how_to_name_one(ctx, broken_root):
    rec = _train(ctx, {"dataset": "small", "default_dataset": True, "repeats": 1})
    assert rec["error"]["CODE"] == "DATASET_CLASS_TOO_SMALL"
    assert "SER_TRAIN_DATASET" in rec["error"]["MESSAGE"], rec["error"]
    named = _train(ctx, {"dataset": "small", "repeats": 1})["error"]
    assert "SER_TRAIN_DATASET" not in named["MESSAGE"], named


def test_an_unexpected_error_does_not_show_the_data_root_either(ctx, broken_root, monkeypatch):
    """A bug or an OSError's own text (which names files in full) lands in the job record
    with paths relative to the data root."""
    from worker import train as train_work

    def broken(ds, **kwargs):
        raise RuntimeError(f"could not open {ds.root.resolve()}/x.wav nor {ds.root}")

    monkeypatch.setattr(train_work.training, "train", broken)
    error = _train(ctx, {"dataset": "small"})["error"]
    assert error == {
        "CODE": "INTERNAL_ERROR",
        "MESSAGE": "RuntimeError: could not open small/x.wav nor small",
    }


def test_the_data_root_leaves_messages_as_whole_path_components_only(tmp_path, monkeypatch):
    """worker.context.without_root, with the data root given relative (SER_DATA_DIR=data,
    `ser worker` run by hand) or absolute: its absolute forms go, as whole path components;
    the word "data", look-alike folders (data2, database) and a sentence's full stop stay.
    chunk_error (a score chunk failed as a whole) and error_of use it."""
    from worker.context import chunk_error, error_of, without_root

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    root = str((tmp_path / "data").resolve())
    cases = {
        "dataset directory not found: emodb2 under the data root": (
            "dataset directory not found: emodb2 under the data root"
        ),
        f"could not open {root}/calls/x.wav": "could not open calls/x.wav",
        f"{root}2/x.wav and {root}base/y": f"{root}2/x.wav and {root}base/y",
        f"listing {root}.": "listing ..",
        f"listing {root}.bak": f"listing {root}.bak",
    }
    for data_dir in ("data", root):
        for message, want in cases.items():
            assert without_root(message, data_dir) == want, (data_dir, message)
    err = chunk_error(OSError(f"[Errno 5] {root}/calls/x.wav"), "data")
    assert err == {"CODE": "CHUNK_FAILED", "MESSAGE": "OSError: [Errno 5] calls/x.wav"}
    error, status = error_of(RuntimeError(f"{root}/a.wav"), "data")
    assert (error["MESSAGE"], status) == ("RuntimeError: a.wav", 500)
