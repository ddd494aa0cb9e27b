"""Jobs: a job's state (``?wait``), its cancellation, the recent jobs, a score job's rows."""

from __future__ import annotations

import re

from flask import Blueprint, Response, request

from api import schemas as S
from api import service
from api.errors import ApiError
from api.openapi import operation
from ser import contract as C
from ser.bulk import speakers_summary
from ser.service.results import stream_csv, stream_jsonl

bp = Blueprint("jobs", __name__)

NOT_FOUND = "unknown or expired job"


def job_body(rec: dict) -> dict:
    """The public JSON of a job record (api.schemas.Job)."""
    body = {"JOB_ID": rec["id"], "KIND": rec["kind"], "JOB_STATUS": rec["status"]}
    params = rec.get("params") or {}
    if rec["kind"] == "train":
        body["DATASET"] = params.get("dataset")
        body["PROTOCOL"] = params.get("protocol")
        if params.get("adapt"):
            body["ADAPT"] = params["adapt"]
        if params.get("activate") is False:
            body["ACTIVATE"] = False
    elif rec["kind"] == "score":
        body["FOLDER"] = params.get("folder")
        if params.get("evaluate"):
            body["EVALUATE"] = True
        if params.get("speakers"):
            body.update(speakers_summary(params["speakers"]))
    else:
        body["FILENAME"] = params.get("name") or params.get("filename")
        if params.get("speaker"):
            body["SPEAKER"] = params["speaker"]
    if rec["status"] in C.ACTIVE:
        body["PROGRESS"] = {
            "DONE": rec.get("progress_done", 0),
            "TOTAL": rec.get("progress_total", 0),
        }
        if rec.get("featurized"):  # pass 1 of a score job normalised by speakers
            body["PROGRESS"]["FEATURIZED"] = int(rec["featurized"])
    elif rec["status"] == C.SUCCEEDED:
        body.update(rec.get("result") or {})
    elif rec["status"] == C.FAILED:
        body["ERROR"] = rec.get("error") or {"CODE": "FAILED", "MESSAGE": "the job failed"}
    if rec.get("worker"):
        body["WORKER"] = rec["worker"]
    for name in ("created_at", "started_at", "finished_at"):
        if rec.get(name):
            body[name.upper()] = rec[name]
    return body


def job_response(rec: dict, status: int = 200, headers: dict | None = None) -> Response:
    """A job record as its checked JSON answer."""
    return S.respond(S.Job, job_body(rec), status, headers)


def job_or_404(job_id: str) -> dict:
    """The record of ``job_id``; 404 JOB_NOT_FOUND for an unknown, expired or odd id."""
    rec = service().jobs.get(job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) else None
    if rec is None:
        raise ApiError(404, "JOB_NOT_FOUND", f"no job {job_id} (unknown or expired)")
    return rec


@bp.route("/jobs/<job_id>", methods=["GET"])
@operation(
    "get",
    "A job's state and, when finished, its result or error",
    query=S.JobQuery,
    responses={200: (S.Job, "the job"), 400: "bad wait (INVALID_WAIT)", 404: NOT_FOUND},
)
def get_job(job_id: str):
    """A job's state; ``?wait=s`` holds until it ends (at most MAX_WAIT seconds)."""
    query = S.parse(S.JobQuery, request.args, query=True)
    rec = job_or_404(job_id)
    if query.wait > 0 and rec["status"] in C.ACTIVE:
        rec = service().jobs.wait(job_id, query.wait, rec) or rec
    return job_response(rec)


@bp.route("/jobs/<job_id>", methods=["DELETE"])
@operation(
    "delete",
    "Cancel a queued or running job",
    responses={
        200: (S.Job, "the cancelled job"),
        404: NOT_FOUND,
        409: "the job already finished (JOB_FINISHED)",
    },
)
def cancel_job(job_id: str):
    """Cancel a queued or running job (cancelling a cancelled one answers it again)."""
    rec = job_or_404(job_id)
    if rec["status"] == C.CANCELLED:
        return job_response(rec)
    changed, rec = service().jobs.cancel(job_id)
    if not changed:
        raise ApiError(
            409, "JOB_FINISHED", f"job {job_id} already finished ({rec['status'] if rec else '?'})"
        )
    return job_response(rec)


@bp.route("/jobs", methods=["GET"])
@operation(
    "get",
    "Recent jobs, newest first",
    query=S.JobsQuery,
    responses={
        200: (S.JobList, "the jobs"),
        400: "bad filter (INVALID_KIND, INVALID_STATUS, INVALID_LIMIT, UNKNOWN_FIELD)",
    },
)
def list_jobs():
    """Recent jobs, newest first: ``?kind=train|predict|score&status=...&limit=50``."""
    query = S.parse(S.JobsQuery, request.args, query=True)
    found = service().jobs.list(kind=query.kind, status=query.status, limit=query.limit)
    return S.respond(S.JobList, {"JOBS": [job_body(r) for r in found], "COUNT": len(found)})


@bp.route("/jobs/<job_id>/results", methods=["GET"])
@operation(
    "get",
    "The rows of a score job: paged JSON, or streamed CSV / JSONL",
    query=S.ResultsQuery,
    responses={
        200: (
            {
                "application/json": S.ResultsPage,
                "text/csv": {"type": "string"},
                "application/x-ndjson": {"type": "string"},
            },
            "rows in file order (with segments: then time order); OFFSET and LIMIT count rows",
        ),
        400: "bad format, offset or limit",
        404: NOT_FOUND,
        409: "not a score job (NOT_A_SCORE_JOB)",
    },
)
def job_results(job_id: str):
    """The rows of a score job: paged JSON, or everything as ``?format=csv|jsonl``.

    ``offset`` and ``limit`` count rows: a row per file, or with segments a row per speech
    segment (a file that failed or holds no speech: one row), so a page holds at most
    ``limit`` rows however long the recordings."""
    query = S.parse(S.ResultsQuery, request.args, query=True)
    rec = job_or_404(job_id)
    if rec["kind"] != "score":
        raise ApiError(409, "NOT_A_SCORE_JOB", f"job {job_id} is a {rec['kind']} job")
    store = service().results
    total = int(rec.get("progress_total") or 0)
    segments = bool((rec.get("params") or {}).get("segments"))
    if query.format != "json":
        raw = store.iter_raw(job_id, total)
        if query.format == "csv":
            classes = (rec.get("result") or {}).get("CLASSES")
            gen, mimetype = stream_csv(raw, segments, classes), "text/csv"
        else:
            gen, mimetype = stream_jsonl(raw), "application/x-ndjson"
        headers = {"Content-Disposition": f'attachment; filename="{job_id}.{query.format}"'}
        return Response(gen, mimetype=mimetype, headers=headers)
    offset, limit = query.offset, query.limit
    if segments:  # rows of the files done, in order, up to the first one not done yet
        rows, more = store.page_rows(job_id, offset, limit, total)
        nxt = offset + limit if more else None
        row_count = store.row_count(job_id)
    else:  # a row per file: the file at OFFSET first (files not done yet left out)
        rows = store.page(job_id, offset, min(limit, max(0, total - offset)))
        nxt = offset + limit if offset + limit < total else None
        row_count = store.count(job_id)
    page = {
        "JOB_ID": job_id,
        "JOB_STATUS": rec["status"],
        "COUNT": total,
        "DONE": rec.get("progress_done", 0),
        "OFFSET": offset,
        "LIMIT": limit,
        "ROWS": rows,
        "NEXT": f"/jobs/{job_id}/results?offset={nxt}&limit={limit}" if nxt else None,
    }
    if row_count is not None:
        page["ROW_COUNT"] = row_count
    return S.respond(S.ResultsPage, page)


@bp.route("/jobs/<job_id>/confusion.png", methods=["GET"])
@operation(
    "get",
    "The confusion matrix of a score job run with evaluate: true",
    responses={
        200: ({"image/png": {"type": "string", "format": "binary"}}, "the PNG"),
        404: "unknown job, or no evaluation picture (NO_CONFUSION_PNG)",
    },
)
def job_confusion_png(job_id: str):
    """The PNG the worker drew for a score job's EVALUATION."""
    job_or_404(job_id)
    png = service().results.png(job_id)
    if png is None:
        raise ApiError(404, "NO_CONFUSION_PNG", f"job {job_id} has no confusion matrix")
    return Response(png, mimetype="image/png", headers={"Cache-Control": "max-age=3600"})
