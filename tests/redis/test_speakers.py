"""ser.service.speakers against the real Redis, and speaker-adapted predictions in
worker.predict (the task body, no broker): atomic updates, redelivery, round trips."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from ser.errors import SerError
from ser.ml.adapt import Stats
from ser.service import jobs as J
from ser.service.speakers import InvalidSpeaker, SpeakerStore, check_speaker, clip_count

SPEC = "default-test"


@pytest.fixture
def prefix() -> str:
    return f"spk{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def store(redis_client, prefix) -> SpeakerStore:
    return SpeakerStore(redis_client, prefix, marker_ttl=600)


def rows(n: int, dim: int = 970, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, dim)) * rng.uniform(0.1, 50, dim) + 7).astype(np.float32)


# -- ids --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["03", "spk-1", "Ünïcødé speaker", "a" * 128, "a:b*c", "x y"])
def test_valid_speaker_ids(value):
    assert check_speaker(value) == value


@pytest.mark.parametrize(
    "value",
    ["", " ", "a" * 129, "a\x00b", "a\nb", "tab\there", "\x7f", "a\u2028b", "\ud800", "a/b",
     ".", "..", 3, None, ["a"]],
)  # fmt: skip
def test_invalid_speaker_ids(value):
    with pytest.raises(InvalidSpeaker) as err:
        check_speaker(value)
    assert err.value.code == "INVALID_SPEAKER" and err.value.http_status == 400


# -- statistics -------------------------------------------------------------------------------
def test_added_rows_merge_exactly_like_stats_merge(store):
    X = rows(30)
    expected = None
    for i, x in enumerate(X):
        got = store.add("s", SPEC, x, f"job{i}")
        expected = Stats.of(x) if expected is None else expected.merge(Stats.of(x))
        # the script's arithmetic is Stats.merge's, operation for operation
        assert got.n == expected.n == i + 1
        assert np.array_equal(got.mean, expected.mean) and np.array_equal(got.m2, expected.m2)
    whole = Stats.of(X)
    assert np.allclose(got.mean, whole.mean) and np.allclose(got.var, whole.var, rtol=1e-9)
    stored = store.stats("s", SPEC)
    assert stored.n == 30 and np.array_equal(stored.m2, got.m2)
    assert store.clips("s") == {SPEC: 30}


def test_a_job_adds_its_clip_once(store, redis_client):
    x, y = rows(2)
    first = store.add("s", SPEC, x, "job-a")
    again = store.add("s", SPEC, x, "job-a")  # a redelivered task
    assert first.n == again.n == 1 and np.array_equal(first.mean, again.mean)
    both = store.add("s", SPEC, y, "job-b")
    assert both.n == 2
    assert store.add("s", SPEC, x, "job-a").n == 2  # still once, later too
    # the mark is per spec version: the same job under another model's features counts there
    assert store.add("s", "other-spec", x[:10], "job-a").n == 1
    assert store.clips("s") == {SPEC: 2, "other-spec": 1}
    assert 0 < redis_client.ttl(store.marker_key("job-a")) <= 600


def test_concurrent_updates_of_one_speaker_lose_nothing(store, redis_client):
    threads, per_thread = 8, 25
    X = rows(threads * per_thread, dim=64, seed=3)
    barrier = threading.Barrier(threads)
    errors = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                k = t * per_thread + i
                store.add("busy", SPEC, X[k], f"job{k}")
                # every job is delivered twice, racing with the others
                store.add("busy", SPEC, X[k], f"job{k}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors
    got = store.stats("busy", SPEC)
    whole = Stats.of(X)
    assert got.n == threads * per_thread
    assert np.allclose(got.mean, whole.mean, rtol=1e-12)
    assert np.allclose(got.m2, whole.m2, rtol=1e-9)


def test_one_job_delivered_many_times_at_once_counts_once(store):
    x = rows(1)[0]
    barrier = threading.Barrier(6)
    counts = []

    def deliver():
        barrier.wait()
        counts.append(store.add("s", SPEC, x, "the-job").n)

    pool = [threading.Thread(target=deliver) for _ in range(6)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert counts == [1] * 6 and store.clips("s") == {SPEC: 1}


def test_prediction_path_reads_merges_and_adds_in_its_own_round_trips(store, redis_client):
    X = rows(3)

    def predict(x, job_id):
        pipe = redis_client.pipeline(transaction=False)
        store.queue_read(pipe, "p", job_id)
        merged = store.merged(pipe.execute(), "p", SPEC, x)
        pipe = redis_client.pipeline(transaction=False)
        store.queue_add(pipe, "p", SPEC, x, job_id)
        pipe.execute()
        return merged

    assert predict(X[0], "j0").n == 1
    second = predict(X[1], "j1")
    assert second.n == 2 and np.array_equal(second.m2, store.stats("p", SPEC).m2)
    again = predict(X[1], "j1")  # redelivered: its clip is in the stored statistics already
    assert again.n == 2 and np.array_equal(again.mean, second.mean)
    assert predict(X[2], "j2").n == 3 == store.stats("p", SPEC).n


def test_clips_and_forget(store):
    assert store.clips("nobody") == {} and store.forget("nobody") == {}
    store.add("s", SPEC, rows(1)[0], "j")
    assert clip_count(store.client.hget(store.key("s"), SPEC)) == 1
    assert store.forget("s") == {SPEC: 1}
    assert store.clips("s") == {} and store.stats("s", SPEC) is None


def test_unreadable_statistics_are_refused_not_merged(store, redis_client):
    redis_client.hset(store.key("bad"), SPEC, b"\x01\x00")
    with pytest.raises(SerError) as err:
        store.stats("bad", SPEC)
    assert err.value.code == "SPEAKER_STATS_INVALID"
    redis_client.hset(store.key("bad"), SPEC, Stats.of(rows(2, dim=8)).to_bytes())
    pipe = redis_client.pipeline(transaction=False)
    store.queue_read(pipe, "bad", "j")
    with pytest.raises(SerError, match="DELETE /speakers"):
        store.merged(pipe.execute(), "bad", SPEC, rows(1)[0])  # another dimension
    with pytest.raises(Exception, match="SPEAKER_STATS_INVALID"):
        store.add("bad", SPEC, rows(1)[0], "j")
    assert not redis_client.exists(store.marker_key("j"))  # not marked as added


# -- the prediction task ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def speaker_bundles(tmp_path_factory):
    """Bundles trained on a generated dataset with speakers: adapted, and not."""
    from ser.ml import training
    from tests import audiogen

    root = audiogen.make_dataset(tmp_path_factory.mktemp("spk"), "labels_csv", n_per_class=8)
    adapted = training.train(root, adapt="speaker", repeats=1)
    plain = training.train(root, adapt="off", repeats=1)
    assert adapted.adapt == "speaker" and plain.adapt == "off"
    return adapted.to_bytes(), plain.to_bytes()


def _context(settings, prefix, bundle: bytes):
    from worker.context import Context

    ctx = Context(settings.model_copy(update={"key_prefix": prefix}))
    ctx.registry.publish(bundle, {"metrics": {}}, settings.require_secret_key())
    return ctx


def _predict(ctx, params: dict, job_id: str | None = None) -> dict:
    from worker.predict import run_predict

    rec = ctx.jobs.create("predict", params, job_id=job_id)
    run_predict(ctx, rec["id"], params)
    done = ctx.jobs.get(rec["id"])
    assert done["status"] == J.SUCCEEDED, done
    return done["result"]


def test_adapted_once_the_speaker_has_enough_clips(settings, prefix, speaker_bundles):
    from ser.ml.adapt import MIN_CLIPS

    ctx = _context(settings, prefix, speaker_bundles[0])
    for _ in range(MIN_CLIPS - 1):
        first = _predict(ctx, {"filename": "clips/calm.wav", "speaker": "anna"})
        assert first["SPEAKER"] == "anna" and first["ADAPTED"] is False
        assert first["EMOTION"] == "calm"
    last = _predict(ctx, {"filename": "clips/tense.wav", "speaker": "anna"})
    assert last["ADAPTED"] is True and last["EMOTION"] in ("calm", "excited", "tense")
    spec = ctx.models.current(ctx.registry.current())[1].feature_spec
    assert ctx.speakers.clips("anna") == {spec: MIN_CLIPS}
    anonymous = _predict(ctx, {"filename": "clips/calm.wav"})
    assert anonymous["ADAPTED"] is False and "SPEAKER" not in anonymous
    assert ctx.speakers.clips("anna") == {spec: MIN_CLIPS}


def test_a_redelivered_prediction_does_not_add_its_clip_twice(
    settings, prefix, speaker_bundles, data_dir
):
    from ser.ml.adapt import MIN_CLIPS

    ctx = _context(settings, prefix, speaker_bundles[0])
    for _ in range(MIN_CLIPS - 1):
        _predict(ctx, {"filename": "clips/calm.wav", "speaker": "ben"})
    bundle = ctx.models.current(ctx.registry.current())[1]
    # the first delivery added its clip, then its worker died before recording the result
    job_id = J.new_id()
    x = bundle.features(data_dir / "clips" / "excited.wav")
    ctx.speakers.add("ben", bundle.feature_spec, x, job_id)
    assert ctx.speakers.clips("ben") == {bundle.feature_spec: MIN_CLIPS}
    result = _predict(ctx, {"filename": "clips/excited.wav", "speaker": "ben"}, job_id=job_id)
    assert result["ADAPTED"] is True
    assert ctx.speakers.clips("ben") == {bundle.feature_spec: MIN_CLIPS}  # not one more
    stats = ctx.speakers.stats("ben", bundle.feature_spec)
    expect = bundle.classify(x[None], [stats])[0]
    assert result["PROBABILITIES"] == pytest.approx(expect["probabilities"])


def test_a_model_that_does_not_adapt_still_records_the_speaker(settings, prefix, speaker_bundles):
    ctx = _context(settings, prefix, speaker_bundles[1])
    for clip in ("calm", "tense", "excited"):
        res = _predict(ctx, {"filename": f"clips/{clip}.wav", "speaker": "cleo"})
        assert res["ADAPTED"] is False and res["SPEAKER"] == "cleo"
    assert list(ctx.speakers.clips("cleo").values()) == [3]


def test_a_speaker_costs_a_prediction_no_extra_round_trip(settings, prefix, speaker_bundles):
    ctx = _context(settings, prefix, speaker_bundles[0])
    _predict(ctx, {"filename": "clips/calm.wav", "speaker": "dora"})  # loads the bundle
    trips = []
    pool = ctx.redis.connection_pool
    checkout = pool.get_connection

    def counted(*args, **kwargs):
        trips.append(1)
        return checkout(*args, **kwargs)

    from worker.predict import run_predict

    def count(params: dict) -> int:
        rec = ctx.jobs.create("predict", params)
        trips.clear()
        pool.get_connection = counted
        try:
            run_predict(ctx, rec["id"], params)
        finally:
            pool.get_connection = checkout
        assert ctx.jobs.get(rec["id"])["status"] == J.SUCCEEDED
        return len(trips)

    plain = count({"filename": "clips/calm.wav"})
    with_speaker = count({"filename": "clips/tense.wav", "speaker": "dora"})
    assert plain == with_speaker == 2
