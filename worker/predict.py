"""Prediction jobs: one recording (an upload blob or a file under the data root), adapted to
its speaker when the request names one."""

from __future__ import annotations

import logging
import time

from ser.contract import SUCCEEDED
from ser.errors import SerError
from ser.features import warm_up_clip
from ser.paths import confine
from ser.service import jobs, rehearsal
from ser.service.outbox import OUTBOX_DONE
from ser.service.redis import as_str
from worker import segments as segments_work
from worker.context import PROGRESS_EVERY, Context, JobCancelled, Send, fail, host, requeued

log = logging.getLogger(__name__)


def run_predict(
    ctx: Context,
    job_id: str,
    params: dict,
    worker: str = "",
    task_id: str | None = None,
    send: Send | None = None,
) -> dict:
    """Predict one recording: an uploaded blob or a file under the data root.

    Two round trips to Redis besides the task's own acknowledgement: one starts the job and
    reads the model pointer and the upload, one records the result and drops the upload and
    (given the task's id) its outbox entry. With ``params["speaker"]`` the first also reads
    the speaker's statistics, and the second adds this clip's features to them (atomically,
    once per job: ser.service.speakers), whether or not the model adapts; an adapting model
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

    def succeed(result: dict, add=None) -> None:
        """The result, the upload's removal and the outbox entry in one round trip (inside
        the task's try: a failed write fails, or requeues, the job). ``add(pipe)`` goes first
        and its reply is looked at apart: speaker statistics of another size that appeared
        since the read (never for one spec version) leave the result standing, the clip not
        added."""
        end = ctx.redis.pipeline(transaction=False)
        if add is not None:
            add(end)
        ctx.jobs.succeed(job_id, result, pipe=end)
        if blob:
            end.delete(ctx.blob_key(blob))
        if task_id:
            ctx.outbox.done(task_id, pipe=end)
        replies = end.execute(raise_on_error=False)
        ctx.jobs.outcome(job_id, SUCCEEDED, replies[1 if add else 0])
        if add is not None:
            if isinstance(replies[0], Exception):
                log.warning("speaker %r: statistics not updated: %s", speaker, replies[0])
            replies = replies[1:]
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    try:
        limit = settings.predict_time_limit
        rec, got = ctx.jobs.start_reading(job_id, limit, worker or host(), reads)
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
            if params.get("segments"):
                got_result = segmented(ctx, job_id, bundle, version, source, params, send)
                if got_result is None:  # spread over chunks by time ranges: they deliver it
                    log.info("prediction job %s: segments sent as chunks", job_id)
                    return {"job_id": job_id, "model_version": version, "chunks": True}
                succeed({**got_result, "MODEL_VERSION": version})
                dropped = True
                return {"job_id": job_id, "model_version": version, OUTBOX_DONE: bool(task_id)}
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

            def add(pipe) -> None:
                ctx.speakers.queue_add(pipe, speaker, bundle.feature_spec, x, job_id)

            succeed(result, add if speaker else None)
            dropped = True
            return {"job_id": job_id, "model_version": version, OUTBOX_DONE: bool(task_id)}
        except JobCancelled:
            log.info("prediction job %s cancelled", job_id)
            return {"job_id": job_id, "cancelled": True}
        except Exception as exc:
            fail(ctx, job_id, exc)
            return {"job_id": job_id, "failed": True}
    finally:
        if blob and not dropped and not requeued():  # a requeued job still needs its upload
            ctx.redis.delete(ctx.blob_key(blob))


def segmented(
    ctx: Context, job_id: str, bundle, version: str, source, params: dict, send: Send | None
) -> dict | None:
    """Emotion over time of one recording (worker.segments: here, or a long file named under
    the data root spread over chunks, which deliver the result: None), reporting the seconds
    of audio done as the job's progress (at most every PROGRESS_EVERY seconds; a cancelled
    job stops at its next report)."""
    last = [0.0]

    def progress(done: float, total: float) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < PROGRESS_EVERY:
            return
        last[0] = now
        if ctx.jobs.progress(job_id, int(done), int(round(total))) == jobs.CANCELLED:
            raise JobCancelled(job_id)

    filename = params.get("filename")
    return segments_work.segment_file(
        ctx,
        job_id,
        bundle,
        version,
        source if params.get("blob") else str(source),
        file=0,
        name=params.get("name") or filename or "",
        path=None if params.get("blob") else filename,
        extra={"kind": "predict"},
        send=send,
        progress=progress,
    )


def rehearse(ctx: Context, tag: str) -> bool:
    """Run one prediction of the warm-up clip through :func:`run_predict` before the first
    job (ser.service.rehearsal): a job record, its start with the model pointer and the upload
    read in one round trip, the features, the classification, the result written with the
    upload dropped. Each of these has first-call costs in a process (code, Redis scripts,
    memory first touched) that the first real prediction would otherwise pay
    (bench/first_prediction.py).

    Its keys (``<prefix>warm-up:<tag>:``) are deleted after, and expire on their own should
    the process die first. The model is this process's cached current one (``ctx.models``),
    as for real jobs. Returns whether it succeeded (False without a model: nothing to
    rehearse)."""
    version = ctx.registry.current()
    if version is None:
        return False
    for name in ("jobs", "speakers", "outbox"):  # the real stores, built before the first job
        getattr(ctx, name)
    dry = Context(rehearsal.settings_for(ctx.settings, tag))
    dry.__dict__.update(redis=ctx.redis, models=ctx.models)  # one connection, one cached model
    store = dry.jobs
    store.logged = False  # its job's transitions are not the service's
    job_id = f"{rehearsal.NAMESPACE}-{tag}"
    params = {"blob": "clip", "name": "warm-up.wav"}
    keys = [dry.registry.current_key, dry.blob_key(params["blob"])]
    keys += [store.key(job_id), store.done_key(job_id)]  # (the job's own: created with a TTL)
    try:
        keys += rehearsal.seed_job_keys(dry.redis, store, dry.outbox)
        dry.redis.set(dry.registry.current_key, version, ex=rehearsal.TTL)
        dry.redis.set(dry.blob_key(params["blob"]), warm_up_clip(), ex=rehearsal.TTL)
        store.create("predict", params, job_id=job_id)
        run_predict(dry, job_id, params, worker=host(), task_id=job_id)  # (its outbox entry too)
        return store.status(job_id) == SUCCEEDED
    finally:  # every key the job's writes touch (its scripts name theirs)
        dry.redis.delete(*keys)
