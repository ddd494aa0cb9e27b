"""Emotion over time in the service: one recording's segments, in the task that holds it or
spread over every worker process by time ranges, each segment delivered exactly once.

A recording no longer than SER_SEGMENT_CHUNK_SECONDS (or an upload) is segmented by the task
that holds it (ser.ml.segments.segment). A longer one, named under the data root, runs as
chunks of the bulk-scoring machinery (``ser.score_chunk`` messages sent through the outbox,
republished by the sweeper while the job runs, skipped once it is cancelled):

1. pass 1: one chunk per time range (cut on the 20 ms frame grid, so the ranges' energies join
   into exactly those of one pass over the whole recording) decodes its range, seeking to it,
   and stores its frame energies, sample count and peak under its index. One Lua call stores
   the entry and counts the entries (ser.service.results.record_entry, as pass 1 of a job
   normalised by speakers): a redelivered chunk overwrites its entry and never counts twice.
2. The chunk that completes pass 1 joins the energies in order, checks the signal
   (AUDIO_SILENT...), plans the windows against the whole recording's level, cuts them into
   runs of about the same length and sends one pass-2 chunk per run, once: the messages and a
   flag are written in one transaction that WATCHes the flag (worker.context.send_once). The
   runs shorten near the end (ser.ml.segments.window_runs, ``taper``), so the processes
   finish the pass nearly together instead of one waiting through another's last full run.
3. Pass 2: each chunk featurizes its run of windows, decoding from its first window, and
   stores their feature vectors (raw float32 bytes after the entry's JSON: 3.9 KB a window,
   14 MB for 2 hours of continuous speech) and segment spans.
4. The chunk that completes pass 2 classifies every window and delivers: the prediction's
   result, or the file's rows of a score job (the chunk that completes the job's last file
   finishes it). The features come back to one place, rather than each chunk classifying its
   own windows, because a recording is one speaker: with a model that adapts to speakers the
   windows are classified with the recording's own statistics, which need all of them
   (ser.ml.segments). Delivery is idempotent: a job moves to SUCCEEDED once, a file's rows
   overwrite its entry.

Why pass 1 is spread too: done by one task, it left the other processes idle for a sixth of
an in-process run (decoding plus energies), too much for the service to stay within 10 % of the
library's per-core rate with two processes.

Every task handles at most about SER_SEGMENT_CHUNK_SECONDS of audio, so each runs under
SER_PREDICT_TIME_LIMIT whatever the recording's length; every chunk stored pushes the job's
liveness deadline, as score chunks do. Progress: each chunk adds its seconds of audio once
(pass 1: its range; pass 2: from its first window to the next run's); a prediction's DONE is
half their sum, seconds of audio done counting both passes.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable

import numpy as np

from ser import audio
from ser.errors import AudioError, SerError
from ser.ml import segments
from ser.paths import confine
from ser.service import jobs
from worker.context import (
    Context,
    Send,
    chunk_error,
    error_of,
    fail,
    liveness_deadline,
    send_once,
)

log = logging.getLogger(__name__)

SECONDS_FIELD = "segment_seconds"  # job field: seconds of audio done by chunks, both passes


def _error_entry(error: dict, http_status: int) -> dict:
    """A chunk's entry that failed: the error and its HTTP status, so a prediction spread
    over chunks fails with the status the error has where it is raised (a path problem:
    400), as one that is not spread does (worker.context.fail)."""
    return {"error": error, "http_status": int(http_status)}


def _failure(error: dict, http_status: int | None) -> SerError:
    """The exception that :func:`worker.context.fail` records for a chunk's ``error``: its
    code, message and HTTP status (an entry stored without a status: AudioError's for
    ``AUDIO_*`` codes, else SerError's)."""
    code = error.get("CODE", "")
    cls: Callable = AudioError if code.startswith("AUDIO_") else SerError
    exc = cls(code, error.get("MESSAGE", ""))
    if http_status is not None:
        exc.http_status = int(http_status)
    return exc


def segment_file(
    ctx: Context,
    job_id: str,
    bundle,
    version: str,
    source,
    *,
    file: int,
    name: str,
    path: str | None,
    extra: dict,
    send: Send | None,
    progress: segments.Progress | None = None,
) -> dict | None:
    """Segment one recording: the result when done here, None when sent as chunks (a file
    ``path`` under the data root longer than SER_SEGMENT_CHUNK_SECONDS). ``extra``: what
    the delivery needs ({"kind": "predict"} or {"kind": "score", "total": files}). Raises
    SerError for a recording that cannot be segmented."""
    s = ctx.settings
    chunk = s.segment_chunk_seconds
    duration = None if path is None else audio.duration(source, s.max_segmented_seconds)
    if duration is None or duration <= chunk:
        return segments.segment(
            bundle, source, filename=name, max_seconds=s.max_segmented_seconds, progress=progress
        )
    ranges = segments.time_ranges(duration, chunk)
    common = {
        "seg_pass": 1,
        "file": file,
        "path": path,
        "name": name,
        "model_version": version,
        "duration": duration,
        "chunks": len(ranges),
        **extra,
    }
    msgs = [dict(common, index=i, start=a, end=b) for i, (a, b) in enumerate(ranges)]
    if extra.get("kind") == "predict" and ctx.jobs.progress(job_id, 0, round(duration)) != (
        jobs.RUNNING
    ):
        return None
    job_key = ctx.jobs.key(job_id)

    def deadline(pipe) -> None:  # queued chunks may wait: the liveness deadline of a bulk job
        pipe.hset(job_key, "deadline_ts", repr(liveness_deadline(ctx)))

    flag = ctx.results.segment_key(job_id, file, "sent1")
    sent = send_once(ctx, job_id, flag, msgs, send, also=deadline)
    log.info("job %s: %s (%.0f s) in %d ranges (%d sent)", job_id, name, duration, len(msgs), sent)
    return None


def file_rows(path: str, result: dict | None = None, error: dict | None = None) -> list[dict]:
    """A score job's rows of one recording: a row per segment, or one row (its ERROR, or no
    speech: EMOTION null)."""
    if error is not None:
        return [{"FILENAME": path, "ERROR": error}]
    assert result is not None
    if not result["SEGMENTS"]:
        return [{"FILENAME": path, "EMOTION": None, "PROBABILITY": None}]
    return [
        {
            "FILENAME": path,
            "START": seg["START"],
            "END": seg["END"],
            "EMOTION": seg["EMOTION"],
            "PROBABILITY": seg["PROBABILITY"],
            "PROBABILITIES": seg["PROBABILITIES"],
            "ADAPTED": result["ADAPTED"],
        }
        for seg in result["SEGMENTS"]
    ]


# -- chunks ------------------------------------------------------------------------------------
def _pack(entry: dict, array: np.ndarray | None = None) -> bytes:
    """A chunk's entry as stored: its JSON, a newline, then ``array``'s float32 values as raw
    little-endian bytes (pass 1: the frame energies; pass 2: the windows' features), which
    neither base64 nor JSON then has to carry (a third smaller, and decoded by a copy)."""
    head = json.dumps(entry, separators=(",", ":")).encode()
    if array is None:
        return head
    return head + b"\n" + np.ascontiguousarray(array, dtype="<f4").tobytes()


def _unpack(raw: bytes) -> tuple[dict, np.ndarray | None]:
    """(The entry's JSON, its array or None) from :func:`_pack`'s bytes; an entry written
    before (JSON with the array in base64 under ``db``/``X``) reads the same."""
    head, sep, body = bytes(raw).partition(b"\n")
    entry = json.loads(head)
    for key in ("db", "X"):
        if key in entry:
            return entry, np.frombuffer(base64.b64decode(entry.pop(key)), dtype="<f4")
    return entry, np.frombuffer(body, dtype="<f4") if sep else None


Finish = Callable[
    ..., object
]  # worker.score.finish_score: (ctx, job, total, version, classes, adapt)


def run_chunk(
    ctx: Context,
    job_id: str,
    params: dict,
    bundle,
    version: str,
    send: Send | None,
    finish: Finish,
) -> dict:
    """One time range of a recording with the job's pinned model (pass 1: energies; pass 2:
    a run of windows' features); the chunk that completes pass 1 sends pass 2, the one that
    completes pass 2 delivers (``finish``: how a score job whose last file this was ends)."""
    settings = ctx.settings
    phase, file, index = int(params["seg_pass"]), int(params["file"]), int(params["index"])
    # A late duplicate of a pass already over (the file delivered; or pass 2 sent, which drops
    # pass 1's entries) would start that pass's entries afresh and count its seconds twice.
    res = ctx.results
    if res.delivered(job_id, file):
        return {"job_id": job_id, "pass": phase, "index": index, "delivered": "before"}
    if phase == 1 and ctx.redis.exists(res.segment_key(job_id, file, "sent2")):
        return {"job_id": job_id, "pass": phase, "index": index, "sent": 0}
    limit = settings.max_segmented_seconds
    try:
        source = str(confine(settings.data_dir, params["path"], kind="file"))
        if phase == 1:
            sr = bundle.spec.sr
            last = index == int(params["chunks"]) - 1  # the last range: to the end of the file
            end = None if last else params["end"]
            _, db, n, peak = segments.energies(source, sr, params["start"], end, limit)
            packed = _pack({"n": n, "peak": peak}, db)
            amount = float(params["end"]) - float(params["start"])
        else:
            windows = [tuple(w) for w in params["windows"]]
            X, spans = segments.featurize(bundle, source, windows, max_seconds=limit)
            packed = _pack({"dim": int(X.shape[1]) if X.size else 0, "spans": spans}, X)
            amount = float(params["seconds"])
    except Exception as exc:  # the recording fails (as it would in one task), the job goes on
        if not isinstance(exc, SerError):  # a bug, the soft time limit
            log.exception("segments chunk %d/%d of job %s failed", phase, index, job_id)
        if isinstance(exc, SerError) or params.get("kind") == "predict":
            error, status = error_of(exc, settings.data_dir)  # what one task would record
        else:  # a score job's row: as the other files of a chunk that failed as a whole
            error, status = chunk_error(exc, settings.data_dir), 500
        packed, amount = _pack(_error_entry(error, status)), 0.0
    keys = (res.segment_key(job_id, file, f"p{phase}"), res.segment_key(job_id, file, f"p{phase}n"))
    status, done, _ = res.record_entry(
        job_id,
        keys,
        index,
        packed,
        amount,
        SECONDS_FIELD,
        liveness_deadline(ctx),
        progress=params.get("kind") == "predict",
    )
    out = {"job_id": job_id, "pass": phase, "index": index, "done": done, "status": status}
    if done >= int(params["chunks"]):
        try:
            if phase == 1:
                out["sent"] = _second_pass(ctx, job_id, params, bundle, send, finish)
            else:
                _deliver_windows(ctx, job_id, params, bundle, version, finish)
                out["delivered"] = True
        except Delivered:  # two chunks completed the pass at once: the other one delivered
            out["delivered"] = False
        except Exception as exc:  # Redis down: requeued (Reject); a bug fails the job
            fail(ctx, job_id, exc)
            out["failed"] = True
    return out


class Delivered(Exception):
    """The recording's entries are gone: another chunk that completed the pass delivered it."""


def _entries(ctx: Context, job_id: str, params: dict, phase: int) -> tuple[list[dict], dict | None]:
    """A pass's entries in chunk order (pass 2: features as arrays, read and decoded one entry
    at a time), and the first failed entry among them (:func:`_error_entry`); raises
    Delivered when they are gone."""
    entries = []
    n = int(params["chunks"])
    for raw in ctx.results.segment_entries(job_id, int(params["file"]), phase, n):
        if raw is None:
            raise Delivered
        entry, array = _unpack(raw)
        if phase == 1:
            entry["db"] = array if array is not None else np.zeros(0, dtype=np.float32)
        elif "dim" in entry:
            dim = int(entry["dim"])
            entry["X"] = array.reshape(-1, dim) if dim and array is not None else None
        entries.append(entry)
    errors = [e for e in entries if "error" in e]
    return entries, errors[0] if errors else None


def _second_pass(
    ctx: Context, job_id: str, params: dict, bundle, send: Send | None, finish: Finish
) -> int:
    """Join pass 1 (energies, samples, peak), plan the windows and send the pass-2 chunks
    (once); a recording without speech, or that fails, is delivered at once."""
    entries, failed = _entries(ctx, job_id, params, 1)
    if failed is not None:
        _deliver(ctx, job_id, params, None, failed, bundle, params["model_version"], finish)
        return 0
    sr = bundle.spec.sr
    n = sum(int(e["n"]) for e in entries)
    try:
        audio.check_signal(n, sr, max(float(e["peak"]) for e in entries))
    except AudioError as exc:
        failed = _error_entry(exc.to_dict(), exc.http_status)
        _deliver(ctx, job_id, params, None, failed, bundle, params["model_version"], finish)
        return 0
    windows = segments.plan(np.concatenate([e["db"] for e in entries]))
    if not windows:
        result = segments.summarize(params["name"], n / sr, [], bundle.classes)
        _deliver(ctx, job_id, params, result, None, bundle, params["model_version"], finish)
        return 0
    runs = segments.window_runs(windows, ctx.settings.segment_chunk_seconds, taper=True)
    bounds = [0.0, *(run[0][0] for run in runs[1:]), float(params["duration"])]
    common = {k: v for k, v in params.items() if k not in ("index", "start", "end")}
    msgs = [
        dict(
            common,
            seg_pass=2,
            index=i,
            chunks=len(runs),
            samples=n,
            seconds=max(0.0, bounds[i + 1] - bounds[i]),
            windows=[list(w) for w in run],
        )
        for i, run in enumerate(runs)
    ]
    file = int(params["file"])
    flag = ctx.results.segment_key(job_id, file, "sent2")
    pass1 = [ctx.results.segment_key(job_id, file, w) for w in ("p1", "p1n")]

    def drop_pass1(pipe) -> None:  # planned: a folder's energies need not wait for delivery
        pipe.delete(*pass1)

    return send_once(ctx, job_id, flag, msgs, send, also=drop_pass1)


def _deliver_windows(
    ctx: Context, job_id: str, params: dict, bundle, version: str, finish: Finish
) -> None:
    """Classify every window of the recording (with its own speaker statistics) and deliver."""
    entries, failed = _entries(ctx, job_id, params, 2)
    if failed is not None:
        _deliver(ctx, job_id, params, None, failed, bundle, version, finish)
        return
    parts = [e["X"] for e in entries if e["X"] is not None]
    spans = [tuple(s) for e in entries for s in e["spans"]]
    X = np.vstack(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    segs, adapted = segments.classify(bundle, X, spans, segments.recording_stats(bundle, X))
    sr = bundle.spec.sr
    result = segments.summarize(
        params["name"], params["samples"] / sr, segs, bundle.classes, adapted
    )
    _deliver(ctx, job_id, params, result, None, bundle, version, finish)


def _deliver(
    ctx: Context,
    job_id: str,
    params: dict,
    result: dict | None,
    failed: dict | None,
    bundle,
    version: str,
    finish: Finish,
) -> None:
    """The recording's result (or ``failed``, an :func:`_error_entry`) to its job: a
    prediction's result (or its failure, with the error's own code and HTTP status), or a
    score job's rows of the file (the last file finishing the job); then its entries are
    dropped."""
    file = int(params["file"])
    error = None if failed is None else failed["error"]
    if params.get("kind") == "predict":
        if failed is not None:
            fail(ctx, job_id, _failure(failed["error"], failed.get("http_status")))
        else:
            ctx.jobs.succeed(job_id, {**result, "MODEL_VERSION": version})  # type: ignore[dict-item]
    else:
        rows = file_rows(params["path"], result, error)
        _, done = ctx.results.record_at(job_id, {file: rows}, liveness_deadline(ctx))
        total = int(params["total"])
        if done >= total:
            finish(ctx, job_id, total, version, bundle.classes, bundle.adapt)
    ctx.results.drop_segments(job_id, file)


def score_files(
    ctx: Context, job_id: str, params: dict, bundle, version: str, send: Send | None
) -> dict[int, list[dict]]:
    """A chunk of a score job with segments: {file index: its rows} of the files segmented
    here; a file longer than SER_SEGMENT_CHUNK_SECONDS is sent as chunks instead (its rows come
    when they finish)."""
    start, files, total = int(params["start"]), list(params["files"]), int(params["total"])
    rows: dict[int, list[dict]] = {}
    for i, rel in enumerate(files):
        try:
            path = str(confine(ctx.settings.data_dir, rel, kind="file"))
            result = segment_file(
                ctx,
                job_id,
                bundle,
                version,
                path,
                file=start + i,
                name=rel,
                path=rel,
                extra={"kind": "score", "total": total},
                send=send,
            )
        except SerError as exc:
            rows[start + i] = file_rows(rel, error=exc.to_dict())
            continue
        if result is not None:
            rows[start + i] = file_rows(rel, result)
    return rows
