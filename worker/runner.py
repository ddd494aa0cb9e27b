"""The work behind the tasks, as plain functions of a :class:`Context` (testable without Celery).

Each function moves the job record QUEUED -> RUNNING -> SUCCEEDED/FAILED, reports progress,
and never raises for a domain error: the error lands in the job record with its code.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property

from ser import config, jobs
from ser.errors import SerError
from ser.jobs import train_lock_name
from ser.outbox import OUTBOX_DONE
from ser.paths import confine, relative
from ser.registry import BundleCache, Registry
from ser.store import as_str, blob_key, redis_client

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.25  # seconds between progress writes (and cancellation checks)


class JobCancelled(Exception):
    """The job was cancelled while it ran."""


@dataclass
class Context:
    """What a worker process needs: settings and its Redis-backed stores (built per process)."""

    settings: config.Settings = field(default_factory=config.load)

    @cached_property
    def redis(self):
        return redis_client(self.settings.redis_url)

    @cached_property
    def jobs(self) -> jobs.JobStore:
        return jobs.JobStore(self.redis, self.settings.key_prefix, self.settings.job_ttl)

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.redis, self.settings.key_prefix)

    @cached_property
    def models(self) -> BundleCache:
        return BundleCache(self.registry, self.settings.require_secret_key())

    @cached_property
    def outbox(self):
        from ser.outbox import Outbox

        return Outbox(self.redis, self.settings.key_prefix)

    @cached_property
    def results(self):
        from ser.results import ResultStore

        return ResultStore(self.redis, self.settings.key_prefix, self.settings.job_ttl)

    @cached_property
    def speakers(self):
        from ser.speakers import SpeakerStore

        # A job's "clip added" mark lives as long as the job record (its redeliveries).
        return SpeakerStore(self.redis, self.settings.key_prefix, self.settings.job_ttl)

    @cached_property
    def feature_cache(self):
        from ser.features.cache import RedisCache

        # Shared by every replica: a recording is featurized once per feature-spec version.
        return RedisCache(self.redis, self.settings.key_prefix)

    def blob_key(self, blob_id: str) -> str:
        return blob_key(self.settings.key_prefix, blob_id)


def _fail(ctx: Context, job_id: str, exc: Exception) -> None:
    import redis

    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        # Redis (broker and job store) went away mid-job: not the job's fault, and the job
        # record cannot be written anyway. Requeue the message instead of failing the job
        # (or acknowledging it once Redis is back): job records make a re-run harmless.
        from celery.exceptions import Reject

        raise Reject(f"Redis unavailable: {exc}", requeue=True) from exc
    if isinstance(exc, SerError):
        ctx.jobs.fail(job_id, exc.to_dict(), exc.http_status)
        return
    try:
        from celery.exceptions import SoftTimeLimitExceeded
    except ImportError:  # pragma: no cover - unit use without celery
        SoftTimeLimitExceeded = ()  # noqa: N806
    if SoftTimeLimitExceeded and isinstance(exc, SoftTimeLimitExceeded):
        err = {"CODE": "JOB_TIMEOUT", "MESSAGE": "the job exceeded its time limit"}
        ctx.jobs.fail(job_id, err, 504)
        return
    log.exception("job %s failed unexpectedly", job_id)
    err = {"CODE": "INTERNAL_ERROR", "MESSAGE": f"{type(exc).__name__}: {exc}"[:500]}
    ctx.jobs.fail(job_id, err, 500)


def run_train(ctx: Context, job_id: str, params: dict, worker: str = "", send=None) -> dict:
    """Train on ``params["dataset"]`` (relative to the data root), publish, and activate
    unless ``params["activate"]`` is false.

    With ``send`` (publish a task by name), recordings missing from the feature cache are
    featurized in chunks by the predict processes first (worker.fanout); without it, here.
    """
    from ser import model, report
    from ser.features.cache import CountingCache

    settings = ctx.settings
    rec = ctx.jobs.start(job_id, settings.train_time_limit, worker=worker or _host())
    if rec is None:
        return {"job_id": job_id, "ran": False}
    dataset = params.get("dataset") or settings.train_dataset
    protocol = params.get("protocol") or "stratified"
    features = params.get("features") or "default"
    adapt = params.get("adapt") or "auto"
    repeats = int(params.get("repeats") or jobs.TRAIN_REPEATS)
    activate = params.get("activate", True) is not False
    lock = params.get("lock") or train_lock_name(dataset, protocol, adapt, features)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < PROGRESS_EVERY:
            return
        last[0] = now
        if ctx.jobs.progress(job_id, done, total) == jobs.CANCELLED:
            raise JobCancelled(job_id)

    try:
        root = confine(settings.data_dir, dataset, kind="dir")
        feats = {"cached": None, "computed": 0}
        if send is not None:
            from worker.fanout import featurize_training_set

            feats = featurize_training_set(ctx, job_id, root, features, send, progress)
        counter = CountingCache(ctx.feature_cache)  # what is still missing is decoded here
        bundle = model.train(
            root,
            protocol=protocol,
            features=features,
            adapt=adapt,
            repeats=repeats,
            cache=counter,
            n_jobs=settings.n_jobs,
            progress=progress,
        )
        if (ctx.jobs.get(job_id) or {}).get("status") != jobs.RUNNING:
            raise JobCancelled(job_id)
        metrics = bundle.metrics

        def png(version: str) -> bytes:  # drawn once the version is known, for its title
            title = report.confusion_title(version, protocol, metrics.get("f1_macro_mean"))
            return report.confusion_png(metrics["confusion_matrix"], bundle.classes, title)

        every = metrics.get("protocols") or {}
        meta = {
            "created_at": bundle.created_at,
            "dataset": relative(settings.data_dir, root),
            "protocol": protocol,
            "adapt": adapt,
            "adapt_chosen": bundle.adapt,
            "repeats": metrics.get("repeats"),
            # Both protocols' F1 (the speaker protocol's where the dataset's speakers allow it)
            "f1_macro": {
                name: {"mean": m.get("f1_macro_mean"), "std": m.get("f1_macro_std")}
                for name, m in every.items()
            },
            "feature_spec": bundle.feature_spec,
            "classes": list(bundle.classes),
            "fingerprint": bundle.fingerprint,
            "metrics": metrics,
            "versions": bundle.versions,
            "job_id": job_id,
        }
        version = ctx.registry.publish(
            bundle.to_bytes(), meta, settings.require_secret_key(), png=png, activate=activate
        )
        speaker_f1 = {}
        if "speaker" in every:  # the dataset names enough speakers for that protocol
            speaker_f1 = {
                "SPEAKER_F1_MACRO_MEAN": every["speaker"]["f1_macro_mean"],
                "SPEAKER_F1_MACRO_STD": every["speaker"]["f1_macro_std"],
            }
        result = {
            "STATUS": "FITTED",
            "F1_MACRO_MEAN": metrics["f1_macro_mean"],
            "F1_MACRO_STD": metrics["f1_macro_std"],
            **speaker_f1,
            "UAR": metrics.get("uar"),
            "ACCURACY": metrics.get("accuracy"),
            "LOG_LOSS": metrics.get("log_loss"),
            "ECE": metrics.get("ece"),
            "N_SAMPLES": metrics.get("n_samples"),
            "CLASSES": list(bundle.classes),
            "PROTOCOL": protocol,
            "REPEATS": metrics.get("repeats"),
            "ADAPT": adapt,
            "ADAPT_CHOSEN": bundle.adapt,
            "CHANCE_F1": metrics.get("chance_f1"),
            "SPEAKER_BASELINE_F1": metrics.get("speaker_baseline_f1"),
            "SPEAKER_CONFOUNDED": metrics.get("speaker_confounded"),
            "DATASET": meta["dataset"],
            "FEATURE_SPEC": bundle.feature_spec,
            "FAILED_FILES": len(metrics.get("failed_files") or {}),
            # Recordings decoded for this training, and found in the shared feature cache.
            "FEATURES_COMPUTED": feats["computed"] + counter.misses,
            "FEATURES_CACHED": counter.hits if feats["cached"] is None else feats["cached"],
            "MODEL_VERSION": version,
            "ACTIVATED": activate,  # false: kept aside, `current` unchanged
            "CONFUSION_PNG": f"/models/{version}/confusion.png",
        }
        ctx.jobs.succeed(job_id, result)
        return {"job_id": job_id, "model_version": version}
    except JobCancelled:
        log.info("training job %s cancelled", job_id)
        return {"job_id": job_id, "cancelled": True}
    except Exception as exc:  # SystemExit etc. pass: the job is redelivered, not failed
        _fail(ctx, job_id, exc)
        return {"job_id": job_id, "failed": True}
    finally:
        ctx.jobs.release(lock, job_id)


def run_predict(
    ctx: Context, job_id: str, params: dict, worker: str = "", task_id: str | None = None
) -> dict:
    """Predict one recording: an uploaded blob or a file under the data root.

    Two round trips to Redis besides the task's own acknowledgement: one starts the job and
    reads the model pointer and the upload, one records the result and drops the upload and
    (given the task's id) its outbox entry. With ``params["speaker"]`` the first also reads
    the speaker's statistics, and the second adds this clip's features to them (atomically,
    once per job: ser.speakers), whether or not the model adapts; an adapting model
    classifies with the statistics this clip included."""
    settings = ctx.settings
    blob = params.get("blob")
    speaker = params.get("speaker")
    dropped = False  # the upload was deleted with the result

    def reads(pipe) -> None:
        pipe.get(ctx.registry.current_key)
        if blob:
            pipe.get(ctx.blob_key(blob))
        if speaker:
            ctx.speakers.queue_read(pipe, speaker, job_id)

    try:
        limit = settings.predict_time_limit
        rec, got = ctx.jobs.start_reading(job_id, limit, worker or _host(), reads)
        if rec is None:
            return {"job_id": job_id, "ran": False}
        try:
            version, bundle = ctx.models.current(as_str(got[0]) if got[0] else None)
            if blob:
                source = got[1]
                if source is None:
                    raise SerError("UPLOAD_EXPIRED", "the uploaded clip expired before its turn")
            else:
                source = confine(settings.data_dir, params.get("filename", ""), kind="file")
            x = bundle.features(source, max_seconds=settings.max_audio_seconds)
            stats = None
            if speaker:  # read (and checked) even when the model does not adapt
                spoken = got[2:] if blob else got[1:]
                stats = ctx.speakers.merged(spoken, speaker, bundle.feature_spec, x)
            res = bundle.classify(x[None], [stats if bundle.adapt != "off" else None])[0]
            result = {
                "FILENAME": params.get("name") or params.get("filename"),
                **({"SPEAKER": speaker} if speaker else {}),
                "EMOTION": res["emotion"],
                "PROBABILITY": res["probability"],
                "PROBABILITIES": res["probabilities"],
                "ADAPTED": res["adapted"],
                "MODEL_VERSION": version,
            }
            end = ctx.redis.pipeline(transaction=False)
            if speaker:  # first: its reply is looked at apart
                ctx.speakers.queue_add(end, speaker, bundle.feature_spec, x, job_id)
            ctx.jobs.succeed(job_id, result, pipe=end)
            if blob:
                end.delete(ctx.blob_key(blob))
            if task_id:  # its outbox entry goes in the same round trip
                ctx.outbox.done(task_id, pipe=end)
            # inside the try: a failed write fails (or requeues) the job
            replies = end.execute(raise_on_error=False)
            if speaker and isinstance(replies[0], Exception):
                # statistics of another size appeared since the read (never for one spec
                # version): the result stands, this clip is not added
                log.warning("speaker %r: statistics not updated: %s", speaker, replies[0])
                replies = replies[1:]
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            dropped = True
            return {"job_id": job_id, "model_version": version, OUTBOX_DONE: bool(task_id)}
        except Exception as exc:
            _fail(ctx, job_id, exc)
            return {"job_id": job_id, "failed": True}
    finally:
        if blob and not dropped and not _requeued():  # a requeued job still needs its upload
            ctx.redis.delete(ctx.blob_key(blob))


def _requeued() -> bool:
    """Whether the exception being raised (in a ``finally``) requeues the task."""
    exc = sys.exc_info()[1]
    return exc is not None and bool(getattr(exc, "requeue", False))


def _host() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"
