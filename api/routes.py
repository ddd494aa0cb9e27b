"""The routes: train, predict, score, jobs (and their results), models, health, openapi."""

from __future__ import annotations

import hmac
import json
import math
import re
import uuid

from flask import Blueprint, Response, current_app, jsonify, request

from api.errors import ApiError
from ser import contract as C
from ser.bulk import DEFAULT_PATTERNS, check_labels, parse_speakers, speakers_summary
from ser.contract import MAX_WAIT, PROTOCOLS, QUEUES, TASK_PREDICT, TASK_SCORE, TASK_TRAIN
from ser.errors import AudioError, NoModelError
from ser.paths import confine, relative
from ser.service import jobs as J
from ser.service.heartbeats import heartbeats
from ser.service.redis import blob_key
from ser.service.results import stream_csv, stream_jsonl
from ser.service.speakers import SpeakerNotFound, check_speaker
from worker.producer import publish

bp = Blueprint("ser", __name__)

MAX_LIST = 500
MAX_PAGE = 1000  # rows per page of /jobs/<id>/results
MAX_PATTERNS = 20
MAX_CHUNK = 1000  # files per chunk when a client sets it (default: ser.bulk.chunk_size)
FEATURES = C.FEATURE_SETS
PUBLIC = {"ser.health"}  # endpoints open without the API key

# Leading bytes of the containers libsndfile reads (the worker still decodes and validates).
_AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"FORM", b"fLaC", b"OggS", b".snd", b"caff")
_W64_MAGIC = b"riff\x2e\x91\xcf\x11"


def svc():
    return current_app.extensions["ser"]


def looks_like_audio(head: bytes) -> bool:
    """Whether ``head`` starts like a WAV/FLAC/OGG/AIFF/AU/CAF/W64/MP3 file."""
    if head[:4] in _AUDIO_MAGIC or head[:8] == _W64_MAGIC or head[:3] == b"ID3":
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # MPEG frame sync


@bp.before_request
def _authenticate():
    key = svc().settings.api_key.get_secret_value()
    if not key or request.endpoint in PUBLIC:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise ApiError(401, "UNAUTHORIZED", "missing or wrong API key (Authorization: Bearer)")
    return None


# -- helpers ----------------------------------------------------------------------------------
def _json_body() -> dict:
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...]]]]
        raise ApiError(400, "MALFORMED_BODY", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "MALFORMED_BODY", "the body must be a JSON object")
    return body


def _str_field(body: dict, name: str, default: str | None = None) -> str | None:
    value = body.get(name, default)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "MALFORMED_BODY", f"'{name}' must be a string")
    return value


def _wait_arg() -> float:
    raw = request.args.get("wait")
    if raw is None or raw == "":
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not math.isfinite(wait) or wait < 0:
        raise ApiError(400, "INVALID_WAIT", "wait must be a number of seconds between 0 and 30")
    return min(wait, MAX_WAIT)


def job_body(rec: dict) -> dict:
    """The public JSON of a job record."""
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
        if params.get("speakers"):
            body.update(speakers_summary(params["speakers"]))
    else:
        body["FILENAME"] = params.get("name") or params.get("filename")
        if params.get("speaker"):
            body["SPEAKER"] = params["speaker"]
    if rec["status"] in J.ACTIVE:
        body["PROGRESS"] = {
            "DONE": rec.get("progress_done", 0),
            "TOTAL": rec.get("progress_total", 0),
        }
        if rec.get("featurized"):  # pass 1 of a score job normalised by speakers
            body["PROGRESS"]["FEATURIZED"] = int(rec["featurized"])
    elif rec["status"] == J.SUCCEEDED:
        body.update(rec.get("result") or {})
    elif rec["status"] == J.FAILED:
        body["ERROR"] = rec.get("error") or {"CODE": "FAILED", "MESSAGE": "the job failed"}
    if rec.get("worker"):
        body["WORKER"] = rec["worker"]
    for name in ("created_at", "started_at", "finished_at"):
        if rec.get(name):
            body[name.upper()] = rec[name]
    return body


def _accepted(rec: dict, status: int = 202) -> Response:
    resp = jsonify(job_body(rec))
    resp.status_code = status
    resp.headers["Location"] = f"/jobs/{rec['id']}"
    return resp


def _finished_or_accepted(rec: dict, wait: float) -> Response:
    """After enqueuing: 202, or with ?wait the finished body (200, or the error's status)."""
    if wait > 0:
        rec = svc().jobs.wait(rec["id"], wait, rec) or rec
        if rec["status"] in J.TERMINAL:
            status = 200
            if rec["status"] == J.FAILED:
                status = int(rec.get("http_status") or 500)
            return _accepted(rec, status)
    return _accepted(rec)


def _create(kind: str, task: str, params: dict, total: int = 0, send: bool = True, also=None):
    """A QUEUED job record, its task's outbox entry and (``send``) its task message, written
    in one transaction: whatever happens to this process next, the message gets published
    (here, or by a worker's sweeper). ``also(pipe)`` adds writes (an upload) to it."""
    s = svc()
    job_id = J.new_id()

    def entry(pipe) -> None:
        if also is not None:
            also(pipe)
        args = [job_id, params]
        if send:
            publish(s.messages, s.outbox, task, args, task_id=job_id, pipe=pipe)
        else:
            s.outbox.add(job_id, task, args, pipe=pipe)

    return s.jobs.create(kind, params, job_id=job_id, total=total, also=entry)


def _discard(job_id: str) -> None:
    """Drop a record that will not run and its outbox entry (that first: a QUEUED record
    left with its entry would be published by the sweeper)."""
    s = svc()
    s.outbox.done(job_id)
    s.jobs.discard(job_id)


# -- train ------------------------------------------------------------------------------------
def _repeats(body: dict, query: bool) -> int:
    """``repeats``: an integer 1..20 (a JSON number, or the digits of a query string)."""
    value = body.get("repeats")
    if value is None or (query and value == ""):
        return C.TRAIN_REPEATS
    if query and isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        value = 0
    if not 1 <= value <= C.MAX_TRAIN_REPEATS:
        raise ApiError(
            400, "INVALID_REPEATS", f"repeats must be an integer 1..{C.MAX_TRAIN_REPEATS}"
        )
    return value


def _activate(body: dict, query: bool) -> bool:
    """``activate``: a JSON boolean, or 0/1/true/false in a query string; default true."""
    value = body.get("activate")
    if value is None or (query and value == ""):
        return True
    if query and isinstance(value, str):
        value = {"1": True, "true": True, "0": False, "false": False}.get(value.lower(), value)
    if not isinstance(value, bool):
        raise ApiError(400, "INVALID_ACTIVATE", "activate must be true or false")
    return value


@bp.route("/train", methods=["POST", "GET"])
def train():
    """Queue a training (single flight per dataset, protocol, adaptation and features)."""
    s = svc()
    body = _json_body() if request.method == "POST" else dict(request.args)
    dataset = _str_field(body, "dataset") or s.settings.train_dataset
    protocol = _str_field(body, "protocol") or "stratified"
    features = _str_field(body, "features") or "default"
    adapt = _str_field(body, "adapt") or "auto"
    if protocol not in PROTOCOLS:
        raise ApiError(400, "INVALID_PROTOCOL", f"protocol must be one of {', '.join(PROTOCOLS)}")
    if features not in FEATURES:
        raise ApiError(400, "INVALID_FEATURES", f"features must be one of {', '.join(FEATURES)}")
    if adapt not in C.ADAPT_CHOICES:
        choices = ", ".join(C.ADAPT_CHOICES)
        raise ApiError(400, "INVALID_ADAPT", f"adapt must be one of {choices}")
    repeats = _repeats(body, query=request.method == "GET")
    activate = _activate(body, query=request.method == "GET")
    root = confine(s.settings.data_dir, dataset, kind="dir")
    rel = relative(s.settings.data_dir, root)
    lock = J.train_lock_name(rel, protocol, adapt, features)
    if not activate:  # a training kept aside never joins one that activates (nor vice versa)
        lock += ":aside"
    params = {
        "dataset": rel,
        "protocol": protocol,
        "features": features,
        "adapt": adapt,
        "repeats": repeats,
        "activate": activate,
        "lock": lock,
    }
    rec = _create("train", TASK_TRAIN, params, send=False)  # sent once single flight allows
    ttl = s.settings.train_time_limit + s.settings.visibility_timeout
    holder = s.jobs.acquire(lock, rec["id"], ttl)
    if holder != rec["id"]:
        _discard(rec["id"])
        existing = s.jobs.get(holder)
        if existing is None:  # it expired between the lock check and now: let the client retry
            raise ApiError(409, "TRAINING_BUSY", "a training of this dataset just ended; retry")
        resp = _accepted(existing)
        resp.headers["X-Single-Flight"] = "joined"
        return resp
    try:
        publish(s.messages, s.outbox, TASK_TRAIN, [rec["id"], params], rec["id"], recorded=True)
    except Exception:
        try:  # Redis is failing: undo what can be undone, the outbox entry first (an entry
            # left with its QUEUED record would be published later by the sweeper)
            _discard(rec["id"])
            s.jobs.release(lock, rec["id"])
        except Exception:
            pass
        raise
    return _accepted(rec)


# -- predict ----------------------------------------------------------------------------------
def _clean_name(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[\x00-\x1f\x7f]", "", name)[:255] or "upload"


def _is_raw_audio(mimetype: str) -> bool:
    """A request whose whole body is the clip: ``audio/*`` or ``application/octet-stream``."""
    return mimetype.startswith("audio/") or mimetype == "application/octet-stream"


def _read_upload(stream) -> bytes:
    """The uploaded bytes, within SER_MAX_UPLOAD_MB and starting like an audio container."""
    mb = svc().settings.max_upload_mb
    limit = int(mb * 1024 * 1024)
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "UPLOAD_TOO_LARGE", f"the upload exceeds {mb:g} MB")
    if not data:
        raise AudioError("AUDIO_EMPTY", "the upload is empty")
    if not looks_like_audio(data[:16]):
        raise AudioError(
            "AUDIO_UNREADABLE",
            "the upload is not a recognised audio file (WAV, FLAC, OGG, AIFF, AU, CAF, MP3)",
        )
    return data


def _one_speaker(query: str | None, field):
    """The speaker named in the query or in the body (400 when they differ)."""
    if query is not None and field is not None and query != field:
        raise ApiError(400, "INVALID_SPEAKER", "the query and the body name different speakers")
    return field if field is not None else query


@bp.route("/predict", methods=["POST"])
def predict():
    """Queue a prediction of an uploaded clip or a file under the data root.

    Three request shapes: JSON ``{"filename": ...}``; multipart ``file=@clip``; or the clip as
    the whole body (``audio/*`` or ``application/octet-stream``, name in ``?name=``), which
    spares client and server the multipart encoding. The clip's speaker (optional): a
    ``speaker`` field of the JSON body or the multipart form, or ``?speaker=``."""
    s = svc()
    wait = _wait_arg()
    mimetype = request.mimetype
    speaker = request.args.get("speaker")  # any shape; its body's own field may say it instead
    if mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(400, "MALFORMED_BODY", "multipart requests need a 'file' part")
        source, name, filename = upload.stream, upload.filename, None
        speaker = _one_speaker(speaker, request.form.get("speaker"))
    elif _is_raw_audio(mimetype):
        source, name, filename = request.stream, request.args.get("name"), None
    else:
        source, name = None, None
        body = _json_body()
        filename = _str_field(body, "filename")
        speaker = _one_speaker(speaker, body.get("speaker"))
        if not filename:
            raise ApiError(
                400,
                "MALFORMED_BODY",
                'send JSON {"filename": "<path under the data root>"}, multipart file=@clip, '
                "or the clip itself as an audio/* body",
            )
    if speaker is not None:
        speaker = check_speaker(speaker)  # 400 INVALID_SPEAKER before the upload is read
    if not s.has_model():
        raise NoModelError(message="no model has been trained yet: POST /train first")
    also = None
    if source is not None:
        data = _read_upload(source)
        blob = uuid.uuid4().hex

        def also(pipe) -> None:
            pipe.set(blob_key(s.settings.key_prefix, blob), data, ex=s.settings.blob_ttl)

        params = {"blob": blob, "name": _clean_name(name or "upload")}
    else:
        path = confine(s.settings.data_dir, filename, kind="file")
        with open(path, "rb") as fh:
            head = fh.read(16)
        if not head:
            raise AudioError("AUDIO_EMPTY", f"{filename} is empty")
        if not looks_like_audio(head):
            raise AudioError("AUDIO_UNREADABLE", f"{filename} is not a recognised audio file")
        params = {"filename": relative(s.settings.data_dir, path)}
    if speaker is not None:
        params["speaker"] = speaker
    rec = _create("predict", TASK_PREDICT, params, total=1, also=also)
    return _finished_or_accepted(rec, wait)


# -- bulk scoring -----------------------------------------------------------------------------
@bp.route("/score", methods=["POST"])
def score():
    """Queue the scoring of every recording in a folder under the data root."""
    s = svc()
    body = _json_body()
    folder = _str_field(body, "folder")
    if not folder:
        raise ApiError(400, "MALFORMED_BODY", 'send JSON {"folder": "<dir under the data root>"}')
    recursive = body.get("recursive", True)
    if not isinstance(recursive, bool):
        raise ApiError(400, "MALFORMED_BODY", "'recursive' must be true or false")
    patterns = body.get("patterns", list(DEFAULT_PATTERNS))
    if (
        not isinstance(patterns, list)
        or not 1 <= len(patterns) <= MAX_PATTERNS
        or not all(isinstance(p, str) and 0 < len(p) <= 100 and "/" not in p for p in patterns)
    ):
        raise ApiError(
            400,
            "MALFORMED_BODY",
            f"'patterns' must be 1 to {MAX_PATTERNS} file-name globs such as \"*.wav\"",
        )
    chunk = body.get("chunk_size")
    if chunk is not None and (
        isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= MAX_CHUNK
    ):
        raise ApiError(400, "MALFORMED_BODY", f"'chunk_size' must be an integer 1..{MAX_CHUNK}")
    speakers = body.get("speakers")
    if speakers is not None:
        parse_speakers(speakers)  # 400 INVALID_SPEAKERS
    root = confine(s.settings.data_dir, folder, kind="dir")
    if speakers == "labels":  # its header only: the worker reads it whole
        check_labels(s.settings.data_dir, root)
    version = s.registry.current()
    if version is None:
        raise NoModelError(message="no model has been trained yet: POST /train first")
    # The model is pinned here: every chunk scores with it, whatever training ends meanwhile.
    params = {
        "folder": relative(s.settings.data_dir, root),
        "recursive": recursive,
        "patterns": patterns,
        "model_version": version,
    }
    if chunk:
        params["chunk_size"] = chunk
    if speakers is not None:
        params["speakers"] = speakers
    return _accepted(_create("score", TASK_SCORE, params))


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise ApiError(400, f"INVALID_{name.upper()}", f"{name} must be an integer {lo}..{hi}")
    return value


@bp.route("/jobs/<job_id>/results", methods=["GET"])
def job_results(job_id: str):
    """Per-file rows of a score job: paged JSON, or everything as ``?format=csv|jsonl``."""
    rec = _job_or_404(job_id)
    if rec["kind"] != "score":
        raise ApiError(409, "NOT_A_SCORE_JOB", f"job {job_id} is a {rec['kind']} job")
    s = svc()
    store = s.results
    total = int(rec.get("progress_total") or 0)
    fmt = request.args.get("format", "json")
    if fmt in ("csv", "jsonl"):
        raw = store.iter_raw(job_id, total)
        if fmt == "csv":
            gen, mimetype = stream_csv(raw), "text/csv"
        else:
            gen, mimetype = stream_jsonl(raw), "application/x-ndjson"
        headers = {"Content-Disposition": f'attachment; filename="{job_id}.{fmt}"'}
        return Response(gen, mimetype=mimetype, headers=headers)
    if fmt != "json":
        raise ApiError(400, "INVALID_FORMAT", "format must be json, csv or jsonl")
    offset = _int_arg("offset", 0, 0, 10_000_000)
    limit = _int_arg("limit", 100, 1, MAX_PAGE)
    rows = store.page(job_id, offset, min(limit, max(0, total - offset)))
    nxt = offset + limit if offset + limit < total else None
    return jsonify(
        {
            "JOB_ID": job_id,
            "JOB_STATUS": rec["status"],
            "COUNT": total,
            "DONE": rec.get("progress_done", 0),
            "OFFSET": offset,
            "LIMIT": limit,
            "ROWS": rows,
            "NEXT": f"/jobs/{job_id}/results?offset={nxt}&limit={limit}" if nxt else None,
        }
    )


# -- jobs -------------------------------------------------------------------------------------
def _job_or_404(job_id: str) -> dict:
    rec = svc().jobs.get(job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) else None
    if rec is None:
        raise ApiError(404, "JOB_NOT_FOUND", f"no job {job_id} (unknown or expired)")
    return rec


@bp.route("/jobs/<job_id>", methods=["GET"])
def get_job(job_id: str):
    """A job's state; ``?wait=s`` holds until it ends (at most 30 s)."""
    wait = _wait_arg()
    rec = _job_or_404(job_id)
    if wait > 0 and rec["status"] in J.ACTIVE:
        rec = svc().jobs.wait(job_id, wait, rec) or rec
    return jsonify(job_body(rec))


@bp.route("/jobs/<job_id>", methods=["DELETE"])
def cancel_job(job_id: str):
    """Cancel a queued or running job."""
    rec = _job_or_404(job_id)
    if rec["status"] == J.CANCELLED:
        return jsonify(job_body(rec))
    changed, rec = svc().jobs.cancel(job_id)
    if not changed:
        raise ApiError(
            409, "JOB_FINISHED", f"job {job_id} already finished ({rec['status'] if rec else '?'})"
        )
    return jsonify(job_body(rec))


@bp.route("/jobs", methods=["GET"])
def list_jobs():
    """Recent jobs, newest first: ``?kind=train|predict|score&status=...&limit=50``."""
    kind = request.args.get("kind") or None
    status = (request.args.get("status") or "").upper() or None
    if kind is not None and kind not in J.KINDS:
        raise ApiError(400, "INVALID_KIND", f"kind must be one of {', '.join(J.KINDS)}")
    if status is not None and status not in J.STATUSES:
        raise ApiError(400, "INVALID_STATUS", f"status must be one of {', '.join(J.STATUSES)}")
    try:
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_LIST:
        raise ApiError(400, "INVALID_LIMIT", f"limit must be an integer from 1 to {MAX_LIST}")
    found = svc().jobs.list(kind=kind, status=status, limit=limit)
    return jsonify({"JOBS": [job_body(r) for r in found], "COUNT": len(found)})


# -- models -----------------------------------------------------------------------------------
def model_body(meta: dict, current: str | None) -> dict:
    """The public JSON of a model version."""
    metrics = meta.get("metrics") or {}
    f1 = meta.get("f1_macro") or {  # versions before it was recorded: from the metrics
        name: {"mean": m.get("f1_macro_mean"), "std": m.get("f1_macro_std")}
        for name, m in (metrics.get("protocols") or {}).items()
    }
    speaker_f1 = f1.get("speaker") or {}
    return {
        "MODEL_VERSION": meta["version"],
        "CURRENT": meta["version"] == current,
        "CREATED_AT": meta.get("created_at"),
        "DATASET": meta.get("dataset"),
        "PROTOCOL": meta.get("protocol"),
        "FEATURE_SPEC": meta.get("feature_spec"),
        "CLASSES": meta.get("classes"),
        "F1_MACRO_MEAN": metrics.get("f1_macro_mean"),
        "F1_MACRO_STD": metrics.get("f1_macro_std"),
        "SPEAKER_F1_MACRO_MEAN": speaker_f1.get("mean"),
        "SPEAKER_F1_MACRO_STD": speaker_f1.get("std"),
        "ADAPT": meta.get("adapt"),
        "ADAPT_CHOSEN": meta.get("adapt_chosen", metrics.get("adapt_chosen")),
        "N_SAMPLES": metrics.get("n_samples"),
        "FINGERPRINT": meta.get("fingerprint"),
        "SIZE_BYTES": meta.get("size_bytes"),
        "SHA256": meta.get("sha256"),
        "JOB_ID": meta.get("job_id"),
    }


@bp.route("/models", methods=["GET"])
def list_models():
    """Every model version, newest first, and the current one."""
    reg = svc().registry
    current = reg.current()
    models = [model_body(m, current) for m in reg.all_meta()]
    return jsonify({"CURRENT": current, "MODELS": models, "COUNT": len(models)})


@bp.route("/models/<version>", methods=["GET"])
def get_model(version: str):
    """Metadata and full metrics of one version."""
    reg = svc().registry
    meta = reg.meta(version)
    body = model_body(meta, reg.current())
    body["METRICS"] = meta.get("metrics")
    body["VERSIONS"] = meta.get("versions")
    body["CONFUSION_PNG"] = f"/models/{version}/confusion.png"
    return jsonify(body)


@bp.route("/models/<version>/confusion.png", methods=["GET"])
def confusion_png(version: str):
    """The cross-validated confusion matrix of one version as a PNG."""
    png = svc().registry.confusion_png(version)
    return Response(png, mimetype="image/png", headers={"Cache-Control": "max-age=3600"})


@bp.route("/models/<version>/activate", methods=["POST"])
def activate_model(version: str):
    """Make ``version`` the model every worker serves (roll back or forward)."""
    s = svc()
    key = s.settings.require_secret_key() if s.settings.secret_key else None
    meta = s.registry.activate(version, key)
    return jsonify(model_body(meta, s.registry.current()))


@bp.route("/models/<version>", methods=["DELETE"])
def delete_model(version: str):
    """Remove a version that is not current (bundle, metadata, PNG); 409 for the current one."""
    meta = svc().registry.delete(version)
    return jsonify({"MODEL_VERSION": meta["version"], "DELETED": True})


# -- speakers ---------------------------------------------------------------------------------
def _speaker_clips(speaker: str, forget: bool = False) -> dict:
    s = svc()
    speaker = check_speaker(speaker)
    clips = s.speakers.forget(speaker) if forget else s.speakers.clips(speaker)
    if not clips:
        raise SpeakerNotFound(message=f"no statistics for speaker {speaker!r}")
    return {"SPEAKER": speaker, "CLIPS": clips}


@bp.route("/speakers/<speaker>", methods=["GET"])
def get_speaker(speaker: str):
    """The clips a speaker's statistics hold, per feature-spec version."""
    return jsonify(_speaker_clips(speaker))


@bp.route("/speakers/<speaker>", methods=["DELETE"])
def forget_speaker(speaker: str):
    """Forget a speaker's statistics (every feature-spec version); answers what they held."""
    return jsonify(dict(_speaker_clips(speaker, forget=True), DELETED=True))


# -- health and spec --------------------------------------------------------------------------
def _workers() -> list[dict]:
    s = svc()
    return heartbeats(s.redis, s.settings.key_prefix)


@bp.route("/health", methods=["GET"])
def health():
    """200 when Redis answers and a worker is online; 503 otherwise (with the reason)."""
    s = svc()
    body: dict = {"STATUS": "OK", "REDIS": False, "WORKERS": 0, "MODEL_VERSION": None}
    try:
        s.redis.ping()
        body["REDIS"] = True
        workers = _workers()
        body["WORKERS"] = len(workers)
        body["QUEUES"] = {
            q: {
                "WORKERS": sum(q in (w.get("queues") or []) for w in workers),
                "WAITING": int(s.redis.llen(q)),
            }
            for q in QUEUES
        }
        body["MODEL_VERSION"] = s.registry.current()
    except Exception as exc:  # any Redis failure is "unavailable", not a 500
        body["STATUS"] = "UNAVAILABLE"
        body["ERROR"] = {"CODE": "BROKER_UNAVAILABLE", "MESSAGE": f"Redis: {type(exc).__name__}"}
        return jsonify(body), 503
    if not body["WORKERS"]:
        body["STATUS"] = "UNAVAILABLE"
        body["ERROR"] = {"CODE": "NO_WORKERS", "MESSAGE": "no worker is online"}
        return jsonify(body), 503
    return jsonify(body)


@bp.route("/openapi.json", methods=["GET"])
def openapi():
    """The OpenAPI 3 document of this API."""
    from api.openapi import spec

    return jsonify(spec(bool(svc().settings.api_key)))
