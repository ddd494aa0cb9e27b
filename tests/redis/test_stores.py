"""ser.paths, ser.service.jobs, ser.service.registry and the worker's work against the real
Redis (no broker)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from ser.errors import ModelIntegrityError, NoModelError, PathError
from ser.ml.bundle import Bundle
from ser.paths import confine
from ser.service import jobs as J
from ser.service.registry import BundleCache, Registry, UnknownVersion


@pytest.fixture
def prefix() -> str:
    return f"unit{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def store(redis_client, prefix) -> J.JobStore:
    return J.JobStore(redis_client, prefix, ttl=600)


# -- paths ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "/etc/passwd",
        "a/../../b",
        "escape.wav",
        "escape_dir/secret.wav",
        "a\x00b",
        "",
        " ",
        "~/x",
        "escape_dir",
    ],
)
def test_confine_refuses_escapes(data_dir, name):
    with pytest.raises(PathError) as err:
        confine(data_dir, name, must_exist=False)
    assert err.value.http_status == 400 and err.value.code == "INVALID_PATH"


def test_confine_accepts_paths_and_inside_symlinks(data_dir):
    assert (
        confine(data_dir, "clips/calm.wav", kind="file") == (data_dir / "clips/calm.wav").resolve()
    )
    assert confine(data_dir, "inside_link.wav", kind="file").name == "calm.wav"
    assert confine(data_dir, ".", kind="dir") == data_dir.resolve()
    assert confine(data_dir, "./ds/", kind="dir") == (data_dir / "ds").resolve()
    with pytest.raises(PathError, match="not a file"):
        confine(data_dir, "ds", kind="file")
    with pytest.raises(PathError) as err:
        confine(data_dir, "nope.wav")
    assert err.value.code == "PATH_NOT_FOUND"


# -- jobs -------------------------------------------------------------------------------------
def test_job_lifecycle_and_ttl(store, redis_client):
    rec = store.create("predict", {"filename": "a.wav"})
    assert rec["status"] == J.QUEUED and rec["params"] == {"filename": "a.wav"}
    assert 0 < redis_client.ttl(store.key(rec["id"])) <= 600
    started = store.start(rec["id"], time_limit=60, worker="w")
    assert started["status"] == J.RUNNING and started["attempts"] == 1
    assert store.progress(rec["id"], 1, 2) == J.RUNNING
    assert store.get(rec["id"])["progress_done"] == 1
    assert store.succeed(rec["id"], {"EMOTION": "calm"})
    done = store.get(rec["id"])
    assert done["status"] == J.SUCCEEDED and done["result"] == {"EMOTION": "calm"}
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    # terminal states are final
    assert not store.fail(rec["id"], {"CODE": "X", "MESSAGE": "y"})
    assert store.cancel(rec["id"])[0] is False
    assert store.get("0" * 32) is None


def test_start_reads_more_in_the_same_round_trip(store, redis_client):
    probe = f"{store.prefix}probe"
    redis_client.set(probe, "x", ex=60)
    rec = store.create("predict")
    started, got = store.start_reading(rec["id"], 60, "w1", lambda pipe: pipe.get(probe))
    assert started["status"] == J.RUNNING and started["attempts"] == 1
    assert started["worker"] == "w1" and started["deadline_ts"] > time.time() + 60
    assert started["id"] == rec["id"] and started["kind"] == "predict"
    assert got == [b"x"]
    store.cancel(rec["id"])
    assert store.start_reading(rec["id"], 60, "w1", lambda pipe: pipe.get(probe)) == (None, [b"x"])
    assert store.start_reading("0" * 32, 60)[0] is None


def test_a_redelivery_past_the_deadline_is_not_run_again(store, redis_client):
    """A job whose node died long ago (its message comes back after the visibility timeout)
    ends JOB_TIMEOUT instead of running again, whether or not anyone read it meanwhile."""
    rec = store.create("train")
    store.start(rec["id"], time_limit=-J.DEADLINE_MARGIN - 1)  # deadline already passed
    assert store.start(rec["id"], 60) is None
    raw = redis_client.hgetall(store.key(rec["id"]))
    assert raw[b"status"] == b"FAILED" and b"JOB_TIMEOUT" in raw[b"error"]


def test_a_resent_start_counts_its_attempt_once(store, redis_client):
    """redis-py re-sends a command whose reply was lost: the same start must not count twice."""
    rec = store.create("predict")
    args = [str(J.MAX_ATTEMPTS), "600", J.now_iso(), repr(time.time() + 90), "w", repr(time.time())]
    keys = [store.key(rec["id"]), store.counters_key, store.durations_key]
    for _ in range(J.MAX_ATTEMPTS + 1):
        redis_client.eval(J._START, len(keys), *keys, *args, "same-token")
    assert store.get(rec["id"])["attempts"] == 1
    redis_client.eval(J._START, len(keys), *keys, *args, "next-delivery")
    assert store.get(rec["id"])["attempts"] == 2


def test_cancel_wins_over_a_late_worker(store):
    rec = store.create("train")
    store.start(rec["id"], 60)
    changed, after = store.cancel(rec["id"])
    assert changed and after["status"] == J.CANCELLED
    assert store.progress(rec["id"], 5, 10) == J.CANCELLED
    assert not store.succeed(rec["id"], {"STATUS": "FITTED"})
    assert store.get(rec["id"])["status"] == J.CANCELLED
    assert store.start(rec["id"], 60) is None


def test_wait_wakes_up_when_the_job_ends(store):
    rec = store.create("predict")
    store.start(rec["id"], 60)
    timer = threading.Timer(0.3, store.succeed, args=(rec["id"], {"EMOTION": "calm"}))
    timer.start()
    t0 = time.monotonic()
    done = store.wait(rec["id"], 10)
    assert done["status"] == J.SUCCEEDED and time.monotonic() - t0 < 3
    # several waiters all see the end (the finish token is not consumed)
    assert store.wait(rec["id"], 1)["status"] == J.SUCCEEDED
    t0 = time.monotonic()
    pending = store.create("predict")
    assert store.wait(pending["id"], 0.3)["status"] == J.QUEUED
    assert 0.25 < time.monotonic() - t0 < 3


def test_lost_worker_and_redelivery_limits(store):
    rec = store.create("train")
    store.start(rec["id"], time_limit=-J.DEADLINE_MARGIN - 1)  # deadline already passed
    lost = store.get(rec["id"])
    assert lost["status"] == J.FAILED and lost["error"]["CODE"] == "JOB_TIMEOUT"
    again = store.create("predict")
    for _ in range(J.MAX_ATTEMPTS):
        assert store.start(again["id"], 60) is not None  # redelivered after a worker loss
    assert store.start(again["id"], 60) is None
    assert store.get(again["id"])["error"]["CODE"] == "WORKER_LOST"


def test_list_filters_and_skips_expired(store, redis_client):
    a = store.create("train")
    b = store.create("predict")
    c = store.create("predict")
    store.start(c["id"], 60)
    store.succeed(c["id"], {})
    redis_client.delete(store.key(a["id"]))  # expired
    ids = [r["id"] for r in store.list()]
    assert ids == [c["id"], b["id"]]
    assert [r["id"] for r in store.list(status=J.QUEUED)] == [b["id"]]
    assert [r["id"] for r in store.list(kind="predict", limit=1)] == [c["id"]]
    assert store.list(kind="train") == []


def test_single_flight_lock(store):
    a = store.create("train")
    assert store.acquire("train:x", a["id"], 60) == a["id"]
    b = store.create("train")
    assert store.acquire("train:x", b["id"], 60) == a["id"]  # a is queued: joined
    store.cancel(a["id"])
    assert store.acquire("train:x", b["id"], 60) == b["id"]  # a is over: taken over
    store.release("train:x", a["id"])  # a no longer holds it: no effect
    c = store.create("train")
    assert store.acquire("train:x", c["id"], 60) == b["id"]
    store.release("train:x", b["id"])
    assert store.acquire("train:x", c["id"], 60) == c["id"]


# -- registry ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle_bytes(tmp_path_factory):
    from ser.ml import training
    from tests import audiogen

    root = audiogen.make_dataset(tmp_path_factory.mktemp("tiny"), "folders", n_per_class=6)
    return training.train(root, features="seed").to_bytes()


def test_registry_publish_activate_and_load(redis_client, prefix, bundle_bytes):
    reg = Registry(redis_client, prefix)
    key = b"k" * 32
    assert reg.current() is None and reg.all_meta() == []
    v1 = reg.publish(bundle_bytes, {"dataset": "a", "metrics": {}}, key, png=b"\x89PNG")
    v2 = reg.publish(bundle_bytes, {"dataset": "b", "metrics": {}}, key, activate=False)
    assert (v1, v2) == ("v1", "v2") and reg.current() == "v1"
    assert [m["version"] for m in reg.all_meta()] == ["v2", "v1"]
    assert reg.meta("v2")["dataset"] == "b" and reg.meta("v2")["size_bytes"] == len(bundle_bytes)
    assert reg.confusion_png("v1") == b"\x89PNG"
    reg.activate("v2", key)
    assert reg.current() == "v2"
    assert reg.load("v2", key, Bundle.from_bytes).classes == ["calm", "excited", "tense"]
    with pytest.raises(UnknownVersion):
        reg.meta("v3")
    with pytest.raises(UnknownVersion):
        reg.activate("../v1")


def test_registry_refuses_tampered_or_foreign_bytes(redis_client, prefix, bundle_bytes):
    reg = Registry(redis_client, prefix)
    key = b"k" * 32
    v = reg.publish(bundle_bytes, {"metrics": {}}, key)
    redis_client.hset(f"{prefix}model:{v}", "bundle", bundle_bytes + b"!")
    calls = []
    loader = calls.append  # records anything it would be given to unpickle
    with pytest.raises(ModelIntegrityError):
        reg.load(v, key, loader)
    with pytest.raises(ModelIntegrityError):
        reg.activate(v, key)
    w = reg.publish(bundle_bytes, {"metrics": {}}, b"other key")
    with pytest.raises(ModelIntegrityError):
        reg.load(w, key, loader)
    # a signature is bound to its version: copying a good one onto another fails
    good = reg.publish(bundle_bytes, {"metrics": {}}, key)
    sig = redis_client.hget(f"{prefix}model:{good}", "sig")
    redis_client.hset(f"{prefix}model:{w}", "sig", sig)
    with pytest.raises(ModelIntegrityError):
        reg.load(w, key, loader)
    assert calls == [], "nothing may be unpickled before the signature verifies"


def test_bundle_cache_follows_the_current_pointer(redis_client, prefix, bundle_bytes):
    reg = Registry(redis_client, prefix)
    key = b"k" * 32
    cache = BundleCache(reg, key, Bundle.from_bytes)
    with pytest.raises(NoModelError):
        cache.get()
    v1 = reg.publish(bundle_bytes, {"metrics": {}}, key)
    ver, first = cache.get()
    assert ver == v1 and cache.get()[1] is first  # cached by version
    v2 = reg.publish(bundle_bytes, {"metrics": {}}, key)
    assert cache.get()[0] == v2
    reg.activate(v1)
    ver, again = cache.get()
    assert ver == v1 and again is not first  # reloaded after a roll back


# -- runner (the task bodies, no broker) ------------------------------------------------------
def test_runner_train_cancelled_midway_publishes_nothing(settings, prefix, data_dir, tmp_path):

    from ser.service.jobs import train_lock_name
    from tests import audiogen
    from worker.context import Context
    from worker.train import run_train

    audiogen.make_dataset(data_dir / "ds_unit_cancel", "folders", n_per_class=30, seconds=1.5)
    ctx = Context(settings.model_copy(update={"key_prefix": prefix}))
    rec = ctx.jobs.create("train", {"dataset": "ds_unit_cancel"})
    lock = train_lock_name("ds_unit_cancel", "stratified")
    ctx.jobs.acquire(lock, rec["id"], 600)

    def cancel_when_running():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = ctx.jobs.get(rec["id"])
            if r["status"] == J.RUNNING and r["progress_done"] > 0:
                ctx.jobs.cancel(rec["id"])
                return
            time.sleep(0.01)

    thread = threading.Thread(target=cancel_when_running)
    thread.start()
    out = run_train(ctx, rec["id"], {"dataset": "ds_unit_cancel", "lock": lock})
    thread.join()
    assert out.get("cancelled"), out
    assert ctx.jobs.get(rec["id"])["status"] == J.CANCELLED
    assert ctx.registry.current() is None
    assert not ctx.redis.exists(ctx.jobs.lock_key(lock))


def test_runner_records_domain_errors(settings, prefix, bundle_bytes):

    from worker.context import Context
    from worker.predict import run_predict
    from worker.train import run_train

    ctx = Context(settings.model_copy(update={"key_prefix": prefix}))
    rec = ctx.jobs.create("predict", {"filename": "clips/calm.wav"})
    run_predict(ctx, rec["id"], {"filename": "clips/calm.wav"})
    err = ctx.jobs.get(rec["id"])
    assert err["status"] == J.FAILED and err["error"]["CODE"] == "NO_MODEL"
    assert err["http_status"] == 409
    rec = ctx.jobs.create("train", {"dataset": "clips"})
    run_train(ctx, rec["id"], {"dataset": "clips"})
    failed = ctx.jobs.get(rec["id"])
    assert failed["status"] == J.FAILED and failed["http_status"] == 400
    blob = ctx.jobs.create("predict", {"blob": "gone"})
    ctx.registry.publish(bundle_bytes, {"metrics": {}}, settings.require_secret_key())
    run_predict(ctx, blob["id"], {"blob": "gone", "name": "x.wav"})
    assert ctx.jobs.get(blob["id"])["error"]["CODE"] == "UPLOAD_EXPIRED"


def test_heartbeats_lapse_and_are_one_hash(redis_client, prefix):
    from ser.service import heartbeats as hb

    hb.beat(redis_client, prefix, "a@h", {"hostname": "a@h", "queues": []}, ttl=30)
    hb.beat(redis_client, prefix, "b@h", {"hostname": "b@h", "queues": ["q"]}, ttl=1)
    assert {b["hostname"] for b in hb.heartbeats(redis_client, prefix)} == {"a@h", "b@h"}
    assert hb.heartbeat(redis_client, prefix, "a@h") == {"hostname": "a@h", "queues": []}
    # Liveness is one hash: no key per worker for a reader to scan for.
    assert redis_client.hlen(hb.heartbeats_key(prefix)) == 2
    assert list(redis_client.scan_iter(match=f"{prefix}worker:*")) == []
    redis_client.hset(hb.heartbeats_key(prefix), "c@h", "not a beat")
    redis_client.hset(hb.heartbeats_key(prefix), "b@h", "1 {}")  # lapsed long ago
    assert [b["hostname"] for b in hb.heartbeats(redis_client, prefix)] == ["a@h"]
    assert redis_client.hkeys(hb.heartbeats_key(prefix)) == [b"a@h"]  # lapsed ones removed
    hb.forget(redis_client, prefix, "a@h")
    assert hb.heartbeats(redis_client, prefix) == []


def test_job_transitions_are_counted_and_timed_in_redis(redis_client, prefix):
    """Every process counts into the same two hashes, in the scripts that move the job."""
    store = J.JobStore(redis_client, prefix)
    a = store.create("predict")["id"]
    b = store.create("predict")["id"]
    c = store.create("train")["id"]
    assert store.start(a, 60, worker="w") is not None
    assert store.start(a, 60, worker="w") is not None  # a redelivery: not a second start
    store.succeed(a, {"EMOTION": "x"})
    assert store.start(b, 60) is not None
    store.fail(b, {"CODE": "X", "MESSAGE": "m"})
    store.cancel(c)  # never ran: counted, not timed
    counts, hist = store.metrics()
    assert counts == {
        ("predict", "QUEUED"): 2,
        ("predict", "RUNNING"): 2,
        ("predict", "SUCCEEDED"): 1,
        ("predict", "FAILED"): 1,
        ("train", "QUEUED"): 1,
        ("train", "CANCELLED"): 1,
    }
    assert set(hist) == {("predict", "queued"), ("predict", "running")}
    for entry in hist.values():
        assert entry["count"] == 2 and entry["buckets"]["+Inf"] == 2
        assert 0 <= entry["sum"] < 60
        # cumulative buckets: never decreasing with the bound
        les = sorted((float(le), n) for le, n in entry["buckets"].items() if le != "+Inf")
        assert all(x[1] <= y[1] for x, y in zip(les, les[1:]))
    assert hist[("predict", "running")]["buckets"]["3600"] == 2


def test_readiness_counts_warm_processes_of_live_node_runs_only(redis_client, prefix):
    from ser.service import heartbeats as hb

    queues = ("ser.train", "ser.predict")
    node = {"hostname": "w@h", "queues": ["ser.predict"], "concurrency": 1, "pid": 1}
    assert hb.readiness(redis_client, prefix, queues)["ready"] is False  # nothing at all
    hb.beat(redis_client, prefix, "w@h", {**node, "run": "run1"})
    assert hb.readiness(redis_client, prefix, queues)["queues"] == {
        "ser.train": 0,
        "ser.predict": 0,
    }
    hb.mark_warm(redis_client, prefix, "run1", "v1")  # this test process plays a pool process
    state = hb.readiness(redis_client, prefix, queues)
    assert state == {"ready": False, "queues": {"ser.train": 0, "ser.predict": 1}, "workers": 1}
    both = {**node, "queues": list(queues)}
    hb.beat(redis_client, prefix, "w@h", {**both, "run": "run1"})
    assert hb.readiness(redis_client, prefix, queues)["ready"] is True
    # At most `concurrency` marks count per node (a killed process's mark lingers until it
    # lapses). A mark is "<expiry, Redis seconds> <JSON>".
    far = '99999999999 {"run": "run1", "warm": true}'
    redis_client.hset(hb.warm_key(prefix), "run1/999999", far)
    assert hb.readiness(redis_client, prefix, queues)["queues"]["ser.predict"] == 1
    # Restarted under the same name and pid (a container's PID 1): a new run, old marks void.
    hb.beat(redis_client, prefix, "w@h", {**both, "run": "run2"})
    assert hb.readiness(redis_client, prefix, queues)["ready"] is False
    # Marks no process renews lapse, and the reader removes them then (not before).
    assert redis_client.hlen(hb.warm_key(prefix)) == 2
    hb.mark_warm(redis_client, prefix, "run1", "v1", ttl=0)  # this one's last renewal, lapsed
    redis_client.hset(hb.warm_key(prefix), "run1/999999", "1 " + far.split(" ", 1)[1])
    assert hb.readiness(redis_client, prefix, queues)["ready"] is False
    assert redis_client.hlen(hb.warm_key(prefix)) == 0
    # A process whose warm-up failed serves, but does not make the service ready.
    hb.mark_warm(redis_client, prefix, "run2", None, warmed=False)
    assert hb.readiness(redis_client, prefix, queues)["ready"] is False
    hb.mark_warm(redis_client, prefix, "run2", None)
    assert hb.readiness(redis_client, prefix, queues)["ready"] is True
    hb.unmark_warm(redis_client, prefix, "run2")  # the process exits
    assert hb.readiness(redis_client, prefix, queues)["ready"] is False


def test_warm_marks_written_before_their_node_first_beats_count_once_it_beats(redis_client, prefix):
    """Celery starts the pool before its consumer, and sends worker_ready (which starts the
    node's heartbeat) once the consumer is up: pool processes routinely mark themselves warm
    before their node's first beat. A readiness read in that gap (a /ready poll) must not drop
    their marks, which nothing would write again: the node would count short for good."""
    from ser.service import heartbeats as hb

    queues = ("ser.predict",)
    node = {"hostname": "w@h", "queues": ["ser.predict"], "concurrency": 2, "pid": 1, "run": "r"}
    hb.mark_warm(redis_client, prefix, "r", "v1")  # this test process plays a pool process
    redis_client.hset(hb.warm_key(prefix), "r/999999", '99999999999 {"run": "r", "warm": true}')
    # the read in between: no live node yet, so nothing counts (and nothing is dropped)
    assert hb.readiness(redis_client, prefix, queues) == {
        "ready": False,
        "queues": {"ser.predict": 0},
        "workers": 0,
    }
    hb.beat(redis_client, prefix, "w@h", node)  # the node's first beat
    assert hb.readiness(redis_client, prefix, queues) == {
        "ready": True,
        "queues": {"ser.predict": 2},
        "workers": 1,
    }


def test_a_pool_process_renews_its_warm_mark_until_it_exits(
    redis_url, redis_client, prefix, monkeypatch
):
    """worker.app: a pool process writes its mark back while it lives (a mark Redis lost: no
    mark is written once only), and stops renewing it, and removes it, when it exits."""
    import os

    import worker.app as wa
    from ser import config
    from ser.service import heartbeats as hb
    from tests.harness import wait_until

    settings = config.load({"SER_REDIS_URL": redis_url, "SER_KEY_PREFIX": prefix})
    unmarking = threading.Event()
    monkeypatch.setattr(wa, "settings", settings)
    monkeypatch.setattr(wa, "_unmarking", unmarking)
    monkeypatch.setattr(wa, "_context", None)
    try:
        renewer = threading.Thread(target=wa._renew_mark, args=("v1", True, 0.05), daemon=True)
        renewer.start()
        field = f"{wa.RUN_ID}/{os.getpid()}".encode()
        wait_until(lambda: redis_client.hexists(hb.warm_key(prefix), field), 10, "the mark")
        redis_client.delete(hb.warm_key(prefix))  # lost (or dropped by a reader)
        wait_until(lambda: redis_client.hexists(hb.warm_key(prefix), field), 10, "it back")
        wa._unmark()  # the process exits
        renewer.join(10)
        assert not renewer.is_alive()
        assert not redis_client.exists(hb.warm_key(prefix))
    finally:
        unmarking.set()  # never left renewing past this test


def test_every_job_transition_is_one_log_line(redis_client, prefix, caplog):
    store = J.JobStore(redis_client, prefix)
    with caplog.at_level("INFO", logger="ser.service.jobs"):
        job = store.create("predict", {"filename": "a.wav"})["id"]
        store.start(job, 60, worker="w1")
        store.progress(job, 1, 2)  # progress is not a transition: no line
        store.succeed(job, {"EMOTION": "calm"})
        other = store.create("train")["id"]
        pipe = redis_client.pipeline()
        store.start(other, 60)
        store.fail(other, {"CODE": "X", "MESSAGE": "m"})
    lines = [r.getMessage() for r in caplog.records if r.name == "ser.service.jobs"]
    assert [line.split()[1:4] for line in lines] == [
        [job, "predict", "QUEUED"],
        [job, "predict", "RUNNING"],
        [job, "predict", "SUCCEEDED"],
        [other, "train", "QUEUED"],
        [other, "train", "RUNNING"],
        [other, "train", "FAILED"],
    ]
    assert "after" in lines[2] and " ran " in lines[2]
    assert not any("a.wav" in line or "calm" in line for line in lines)  # no params, no result
    # A transition queued in a caller's pipeline logs once its reply is handed back.
    third = store.create("predict")["id"]
    store.start(third, 60)
    store.succeed(third, {"EMOTION": "x"}, pipe=pipe)
    with caplog.at_level("INFO", logger="ser.service.jobs"):
        caplog.clear()
        assert store.outcome(third, J.SUCCEEDED, pipe.execute()[0]) == "OK"
    assert caplog.records[-1].getMessage().split()[1:4] == [third, "predict", "SUCCEEDED"]


def test_a_discarded_record_is_not_counted(redis_client, prefix):
    """A training that joined another (single flight) never was a job: no QUEUED left over."""
    store = J.JobStore(redis_client, prefix)
    kept = store.create("train")["id"]
    lost = store.create("train")["id"]
    store.discard(lost)
    assert store.get(lost) is None and store.get(kept) is not None
    assert store.metrics()[0] == {("train", "QUEUED"): 1}


def test_a_wait_of_under_a_millisecond_does_not_block_for_ever(redis_url, prefix, monkeypatch):
    """Redis (6.2) truncates a blocking timeout to whole milliseconds and blocks for ever on
    0: a wait whose time left is under a millisecond asks for more, and returns."""
    from ser.service.redis import redis_client as make_redis

    client = make_redis(redis_url, socket_timeout=5)  # a BLMOVE blocking for ever: TimeoutError
    store = J.JobStore(client, prefix)
    job_id = store.create("predict")["id"]
    clock = iter([100.0, 100.0004])  # the deadline, then 0.6 ms left; then past it
    monkeypatch.setattr(
        J, "time", SimpleNamespace(time=time.time, monotonic=lambda: next(clock, 200.0))
    )
    assert store.wait(job_id, 0.001)["status"] == J.QUEUED


def test_a_rehearsal_runs_the_prediction_path_and_leaves_no_trace(
    settings, prefix, bundle_bytes, monkeypatch, caplog
):
    """A worker process's warm-up prediction (worker.predict.rehearse): a real job through
    run_predict on keys of its own, the model left loaded in the process's cache, and nothing
    of it in the service's keys, job listing or counters afterwards."""
    import worker.predict as wp
    from worker.context import Context

    ctx = Context(settings.model_copy(update={"key_prefix": prefix}))
    assert wp.rehearse(ctx, "t") is False  # no model yet: nothing to rehearse
    version = ctx.registry.publish(bundle_bytes, {"metrics": {}}, settings.require_secret_key())
    before = set(ctx.redis.scan_iter(match=f"{prefix}*"))
    real, ttls = wp.run_predict, []

    def watched(dry, *args, **kwargs):  # every key written by then expires on its own
        out = real(dry, *args, **kwargs)
        ttls.extend((k, ctx.redis.ttl(k)) for k in ctx.redis.scan_iter(match=f"{prefix}warm-up:*"))
        return out

    monkeypatch.setattr(wp, "run_predict", watched)
    with caplog.at_level(logging.INFO):
        assert wp.rehearse(ctx, "t") is True
    assert not [r for r in caplog.records if r.name.startswith("ser.service")]  # no job lines
    assert len(ttls) >= 5 and all(0 < t <= 60 for _, t in ttls), ttls
    assert set(ctx.redis.scan_iter(match=f"{prefix}*")) == before
    assert ctx.jobs.list() == [] and ctx.jobs.metrics() == ({}, {})
    assert ctx.models._version == version and ctx.models._bundle is not None
    # it is a real prediction: an unreadable clip fails it, and still leaves nothing behind
    monkeypatch.setattr(wp, "warm_up_clip", lambda: b"not audio at all")
    assert wp.rehearse(ctx, "t") is False
    assert set(ctx.redis.scan_iter(match=f"{prefix}*")) == before
