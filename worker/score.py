"""Folder scoring in chunks over every process serving the predict queue, as plain functions of a
worker.context.Context: ``ser.score`` lists the folder and ``ser.score_chunk`` scores a chunk (the
featurization of a training set, ``ser.featurize_chunk``, lives in worker/train.py).

No process has to stay alive for a job to end: each score chunk stores its rows and reads the
row count in one atomic step (ser.service.results), and the chunk that completes the last file
finishes the job. A chunk lost with a dead process is redelivered (acks_late), and its rows
overwrite rather than duplicate.

A job with ``speakers`` whose model adapts runs two passes of the same chunks. Pass 1
featurizes (into the shared feature cache) and stores each chunk's per-speaker statistics
under its chunk index, counted in one atomic step; the chunk that completes pass 1 merges
them (in chunk order) and, in one transaction guarded by WATCH, stores the merged statistics
and publishes the pass-2 chunks through the outbox: sent once, however many chunks see pass
1 complete, and republished by the sweeper if the broker loses one. Pass 2 reads the
features back from the cache and scores with the speakers' statistics as above.

A job with ``evaluate`` is compared, when it finishes, with the labels of its folder
(ser.bulk.folder_labels, ser.ml.scoring): the result gains ``EVALUATION`` and the job a
confusion-matrix PNG (ser.service.results), served at ``/jobs/<id>/confusion.png``, and is
flagged ``TRAINING_DATA`` when the folder meets the pinned model's training dataset
(:func:`training_data`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from ser import bulk
from ser.contract import TASK_SCORE_CHUNK
from ser.datasets import load_dataset
from ser.errors import PathError, SerError
from ser.ml import report, scoring
from ser.ml.stats import Stats
from ser.paths import confine
from ser.service import jobs
from ser.service.results import summarize, summarize_segments
from worker import segments as segments_work
from worker.context import (
    Context,
    Send,
    chunk_error,
    fail,
    host,
    liveness_deadline,
    predict_processes,
    send_once,
)

log = logging.getLogger(__name__)


def run_score(ctx: Context, job_id: str, params: dict, send: Send, worker: str = "") -> dict:
    """List the folder (once per job), then send its chunks; returns at once."""
    settings = ctx.settings
    limit = settings.visibility_timeout + settings.predict_time_limit
    if ctx.jobs.start(job_id, limit, worker=worker or host()) is None:
        return {"job_id": job_id, "ran": False}
    try:
        folder = confine(settings.data_dir, params.get("folder", ""), kind="dir")
        base = Path(settings.data_dir).resolve()
        by = params.get("speakers")
        files = ctx.results.files(job_id)  # a redelivered job reuses the first listing
        speakers = ctx.results.speakers(job_id) if by and files else None
        if not files:
            patterns = params.get("patterns") or list(bulk.DEFAULT_PATTERNS)
            paths = bulk.list_audio(
                folder, recursive=bool(params.get("recursive", True)), patterns=patterns
            )
            if not paths:
                raise PathError(
                    "NO_AUDIO_FILES",
                    f"no files matching {', '.join(patterns)} in {params.get('folder')}",
                )
            rel = [p.relative_to(base).as_posix() for p in paths]
            if by:
                speakers = bulk.assign_speakers(by, settings.data_dir, folder, rel)
            files = ctx.results.save_files(job_id, rel, speakers)
        total = len(files)
        two_pass = False
        if by:  # one pass, unadapted, when the pinned model does not adapt to speakers
            two_pass = ctx.models.get(params["model_version"])[1].adapt != "off"
        if ctx.jobs.progress(job_id, ctx.results.count(job_id), total) != jobs.RUNNING:
            return {"job_id": job_id, "cancelled": True}
        procs = predict_processes(ctx)
        if params.get("segments"):  # long recordings: a few files a chunk, long ones split
            size = int(params.get("chunk_size") or bulk.chunk_size(total, procs, lo=1, hi=8))
        else:
            size = int(params.get("chunk_size") or bulk.chunk_size(total, procs))
        n = 0
        for msg in chunk_messages(params, files, speakers, size, 1 if two_pass else None):
            send(TASK_SCORE_CHUNK, [job_id, msg])
            n += 1
        log.info("score job %s: %d files in %d chunks of %d", job_id, total, n, size)
        return {"job_id": job_id, "files": total, "chunks": n, "two_pass": two_pass}
    except Exception as exc:
        fail(ctx, job_id, exc)
        return {"job_id": job_id, "failed": True}


def chunk_messages(
    params: dict, files: list[str], speakers: list | None, size: int, phase: int | None
) -> list[dict]:
    """The score chunks of a job: consecutive slices of ``size`` files (with their speakers);
    ``phase`` 1 or 2 for the passes of a job normalised by speakers."""
    total = len(files)
    n = math.ceil(total / size)
    out = []
    for index, start in enumerate(range(0, total, size)):
        msg = {
            "start": start,
            "files": files[start : start + size],
            "total": total,
            "model_version": params["model_version"],
        }
        if speakers is not None:
            msg["speakers"] = speakers[start : start + size]
        if params.get("segments"):
            msg["segments"] = True
        if phase is not None:
            msg.update({"pass": phase, "index": index, "chunks": n, "chunk_size": size})
        out.append(msg)
    return out


def run_score_chunk(
    ctx: Context, job_id: str, params: dict, worker: str = "", send: Send | None = None
) -> dict:
    """Score one chunk with the job's pinned model and store one row per file (pass 1 of a
    job normalised by speakers: gather the chunk's speaker statistics instead)."""
    settings = ctx.settings
    if ctx.jobs.status(job_id) != jobs.RUNNING:  # cancelled, failed or finished: skip
        return {"job_id": job_id, "skipped": True}
    try:
        version, bundle = ctx.models.get(params["model_version"])
    except Exception as exc:  # the pinned model is gone or tampered with: the job cannot go on
        fail(ctx, job_id, exc)
        return {"job_id": job_id, "failed": True}
    if "seg_pass" in params:  # a time range of a long recording (worker.segments)
        return segments_work.run_chunk(ctx, job_id, params, bundle, version, send, finish_score)
    start, files, total = int(params["start"]), list(params["files"]), int(params["total"])
    phase = params.get("pass")
    if phase == 1:
        return _stats_chunk(ctx, job_id, params, bundle, send)
    if params.get("segments"):
        try:
            by_file = segments_work.score_files(ctx, job_id, params, bundle, version, send)
        except Exception as exc:  # a bug or the soft time limit: these files fail
            log.exception("segments score chunk of job %s failed", job_id)
            err = chunk_error(exc, ctx.settings.data_dir)
            by_file = {start + i: [{"FILENAME": f, "ERROR": err}] for i, f in enumerate(files)}
        status, done = ctx.results.record_at(job_id, by_file, liveness_deadline(ctx))
        if done >= total:
            finish_score(ctx, job_id, total, version, bundle.classes, bundle.adapt)
        return {"job_id": job_id, "rows": len(by_file), "done": done, "status": status}
    speakers = params.get("speakers")
    stats = failed = None
    if speakers is not None and phase != 2:
        stats = {}  # one pass: the model does not adapt, no statistics
    try:
        if phase == 2:
            stats, failed = _second_pass_inputs(ctx, job_id, params)
        rows = bulk.score_rows(
            bundle,
            settings.data_dir,
            files,
            cache=ctx.feature_cache,
            max_seconds=settings.max_audio_seconds,
            speakers=speakers,
            stats=stats,
            failed=failed,
        )
    except Exception as exc:  # a bug or the soft time limit: these files fail, the job goes on
        log.exception("score chunk of job %s failed", job_id)
        rows = _chunk_failed(files, speakers, chunk_error(exc, ctx.settings.data_dir))
    status, done = ctx.results.record(job_id, start, rows, liveness_deadline(ctx))
    if done >= total:
        finish_score(ctx, job_id, total, version, bundle.classes, bundle.adapt)
    return {"job_id": job_id, "rows": len(rows), "done": done, "status": status}


def _chunk_failed(files: list[str], speakers: list | None, err: dict) -> list[dict]:
    if speakers is None:
        return [{"FILENAME": f, "ERROR": err} for f in files]
    return [{"FILENAME": f, "SPEAKER": s, "ERROR": err} for f, s in zip(files, speakers)]


def _stats_chunk(ctx: Context, job_id: str, params: dict, bundle, send: Send | None) -> dict:
    """Pass 1: featurize the chunk, store its speakers' statistics under its index; the chunk
    that completes pass 1 sends pass 2."""
    settings = ctx.settings
    start, files = int(params["start"]), list(params["files"])
    index, n_chunks = int(params["index"]), int(params["chunks"])
    try:
        stats, failed = bulk.speaker_stats(
            bundle,
            settings.data_dir,
            files,
            params["speakers"],
            cache=ctx.feature_cache,
            max_seconds=settings.max_audio_seconds,
        )
    except Exception as exc:  # a bug or the soft time limit: these files fail, the job goes on
        log.exception("pass 1 of score chunk %d of job %s failed", index, job_id)
        err = chunk_error(exc, ctx.settings.data_dir)
        stats, failed = {}, dict.fromkeys(range(len(files)), err)
    entry = bulk.encode_stats_entry(stats, {start + i: e for i, e in failed.items()})
    status, done, featurized = ctx.results.record_stats(
        job_id, index, entry, len(files), liveness_deadline(ctx)
    )
    out = {"job_id": job_id, "pass": 1, "index": index, "done": done, "featurized": featurized}
    if done >= n_chunks:
        try:
            out["sent"] = send_second_pass(ctx, job_id, params, send)
        except Exception as exc:  # Redis down: requeued (Reject); a bug fails the job
            fail(ctx, job_id, exc)
            out["failed"] = True
    return out


def send_second_pass(ctx: Context, job_id: str, params: dict, send: Send | None) -> int:
    """Merge every chunk's pass-1 statistics and send the pass-2 chunks, once per job: the
    merged statistics, the messages (with their outbox entries) and a flag are written in one
    transaction that WATCHes the flag (worker.context.send_once). Returns the chunks sent (0:
    already sent, or the job is not running)."""
    results = ctx.results
    flag = results.second_pass_key(job_id)
    if ctx.redis.exists(flag) or ctx.jobs.status(job_id) != jobs.RUNNING:
        return 0
    merged = bulk.merge_stats(results.stats_entries(job_id))
    files, speakers = results.files(job_id), results.speakers(job_id)
    msgs = chunk_messages(params, files, speakers, int(params["chunk_size"]), 2)

    def stats(pipe) -> None:
        results.save_merged(pipe, job_id, {s: st.to_bytes() for s, st in merged.items()})

    sent = send_once(ctx, job_id, flag, msgs, send, also=stats)
    if sent:
        log.info("score job %s: pass 1 done, %d speakers, %d chunks", job_id, len(merged), sent)
    return sent


def _second_pass_inputs(ctx: Context, job_id: str, params: dict) -> tuple[dict, dict[int, dict]]:
    """({speaker: merged Stats} of the chunk's speakers, {position: error} of its files that
    failed in pass 1)."""
    start = int(params["start"])
    names = sorted({s for s in params["speakers"] if s is not None})
    entry, raw = ctx.results.second_pass_inputs(job_id, int(params["index"]), names)
    stats = {s: Stats.from_bytes(b) for s, b in raw.items()}
    failed = {}
    if entry is not None:
        _, by_index = bulk.decode_stats_entry(entry)
        failed = {i - start: err for i, err in by_index.items()}
    return stats, failed


def finish_score(
    ctx: Context, job_id: str, total: int, version: str, classes, adapt: str = "off"
) -> bool:
    """Summarize the rows and mark the job SUCCEEDED (idempotent: one transition wins)."""
    rec = ctx.jobs.get(job_id)
    if rec is None or rec["status"] != jobs.RUNNING:
        return False
    params = rec.get("params") or {}
    if params.get("segments"):
        files = [json.loads(raw) for raw in ctx.results.iter_files(job_id, total)]
        counts = summarize_segments(files, list(classes))
        rows = [row for rows in files for row in rows]
    else:
        rows = ctx.results.all_rows(job_id, total)
        counts = summarize(rows, list(classes))
    result = {
        "STATUS": "SCORED",
        "FOLDER": params.get("folder"),
        "COUNT": counts["COUNT"],
        "SUCCEEDED": counts["SUCCEEDED"],
        "FAILED": counts["FAILED"],
        "MODEL_VERSION": version,
        "SUMMARY": counts["SUMMARY"],
        "RESULTS": f"/jobs/{job_id}/results",
    }
    if params.get("segments"):
        result.update(
            SEGMENTS=counts["SEGMENTS"],
            SPEECH_SECONDS=counts["SPEECH_SECONDS"],
            CLASSES=list(classes),
        )
    if params.get("speakers"):
        result.update(bulk.speakers_summary(params["speakers"]))
        result.update(
            SPEAKER_COUNT=counts.get("SPEAKER_COUNT", 0),
            ADAPTED_COUNT=counts.get("ADAPTED_COUNT", 0),
            ADAPTATION=adapt,
            PASSES=1 if adapt == "off" else 2,
        )
        if adapt == "off":
            result["NOTE"] = (
                f"model {version} does not adapt to speakers: scored in one pass, unadapted"
            )
    if params.get("evaluate"):
        result["EVALUATION"] = evaluation(
            ctx, job_id, params.get("folder") or ".", rows, version, classes
        )
    done = ctx.jobs.succeed(job_id, result)
    if params.get("speakers"):
        ctx.results.drop_passes(job_id)
    return done


def evaluation(ctx: Context, job_id: str, folder: str, rows: list[dict], version: str, classes):
    """The ``EVALUATION`` of a finished job's rows against its folder's labels, its PNG
    stored; labels gone since the submission, or a bug here, make an ``{"ERROR"}`` entry
    rather than fail a job whose rows are all there (a Redis error still propagates)."""
    try:
        path = confine(ctx.settings.data_dir, folder, kind="dir")
        layout, labels = bulk.folder_labels(ctx.settings.data_dir, path)
    except SerError as exc:
        return {"ERROR": exc.to_dict()}
    except Exception as exc:  # unreadable labels (I/O, encoding): the rows stand
        log.exception("labels of score job %s could not be read", job_id)
        message = f"the labels of {folder} could not be read ({type(exc).__name__})"
        return {"ERROR": {"CODE": "DATASET_BAD_LABELS", "MESSAGE": message}}
    try:
        trained = training_data(ctx, version, folder)
    except Exception:  # the figures stand without the flags (a bug, the soft time limit)
        log.exception(
            "score job %s: the training data of %s could not be compared", job_id, version
        )
        trained = {}
    try:
        seen = trained.pop("files", None)
        out = {"LABELS": layout, **scoring.evaluate_rows(rows, labels, list(classes), seen)}
        out.update(trained)  # files are only compared when the folders meet (TRAINING_DATA)
    except Exception as exc:
        log.exception("evaluation of score job %s failed", job_id)
        return {
            "ERROR": {"CODE": "EVALUATION_FAILED", "MESSAGE": f"{type(exc).__name__}: {exc}"[:300]}
        }
    if out["EVALUATED"]:
        title = report.confusion_title(f"{version} on {folder}", None, out["F1_MACRO"])
        try:
            png = report.confusion_png(out["CONFUSION_MATRIX"], list(classes), title)
        except Exception:  # the figures stand without their picture
            log.exception("confusion PNG of score job %s failed", job_id)
        else:
            ctx.results.save_png(job_id, png)
            out["CONFUSION_PNG"] = f"/jobs/{job_id}/confusion.png"
    return out


def _within(inner: str, outer: str) -> bool:
    """Whether the folder ``inner`` is ``outer`` or lies inside it (both relative to the data
    root, "." for the root)."""
    return outer == "." or inner == outer or inner.startswith(outer.rstrip("/") + "/")


def training_data(ctx: Context, version: str, folder: str) -> dict:
    """What the model ``version`` was trained on, as far as the scored ``folder`` meets it:
    ``TRAINING_DATASET`` (from the version's metadata), ``TRAINING_DATA`` (the folder is that
    dataset, lies inside it or contains it) and, then, ``files``: the training set's files
    relative to the data root (the dataset as it reads now; all the files under it when it no
    longer loads). {} when the metadata does not say."""
    try:
        dataset = ctx.registry.meta(version).get("dataset")
    except Exception:  # a version deleted meanwhile: the figures stand without the flag
        log.warning("no metadata for model %s", version)
        return {}
    if not isinstance(dataset, str) or not dataset:
        return {}
    related = _within(folder, dataset) or _within(dataset, folder)
    out: dict = {"TRAINING_DATASET": dataset, "TRAINING_DATA": related}
    if not related:
        return out
    base = Path(ctx.settings.data_dir).resolve()
    try:
        root = confine(ctx.settings.data_dir, dataset, kind="dir")
        paths = load_dataset(root, name=dataset).paths
    except (SerError, OSError):  # changed since: every file under it counts as seen
        prefix = "" if dataset == "." else dataset.rstrip("/") + "/"
        out["files"] = _Prefix(prefix)
        return out
    out["files"] = {Path(os.path.normpath(p)).relative_to(base).as_posix() for p in paths}
    return out


class _Prefix:
    """The files under a folder (relative to the data root), as a container."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.startswith(self.prefix)
