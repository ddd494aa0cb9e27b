"""Work submitted as jobs: POST /train (and the prototype's GET /train), /predict, /score.

Each request is validated whole against its model (api/schemas.py) before anything is
written: a refused request leaves no job record and sends no message.
"""

from __future__ import annotations

import json
import re
import uuid

from flask import Blueprint, Response, request

from api import schemas as S
from api import service
from api.errors import ApiError
from api.jobs import job_response
from api.openapi import BINARY, LOCATION, either, operation
from ser.bulk import check_evaluate, check_labels, parse_speakers
from ser.contract import TASK_PREDICT, TASK_SCORE, TASK_TRAIN, TERMINAL
from ser.datasets import default_dataset, with_default_hint
from ser.errors import AudioError, DatasetError, NoModelError
from ser.paths import confine, relative
from ser.service import jobs as J
from ser.service.redis import blob_key
from worker.producer import publish

bp = Blueprint("submit", __name__)

NO_MODEL = "no model has been trained yet: POST /train first"

# Leading bytes of the containers libsndfile reads (the worker still decodes and validates).
_AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"FORM", b"fLaC", b"OggS", b".snd", b"caff")
_W64_MAGIC = b"riff\x2e\x91\xcf\x11"


def looks_like_audio(head: bytes) -> bool:
    """Whether ``head`` starts like a WAV/FLAC/OGG/AIFF/AU/CAF/W64/MP3 file."""
    if head[:4] in _AUDIO_MAGIC or head[:8] == _W64_MAGIC or head[:3] == b"ID3":
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # MPEG frame sync


def json_body() -> dict:
    """The request's JSON object ({} for an empty body); 400 MALFORMED_BODY otherwise."""
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


def accepted(rec: dict, status: int = 202, headers: dict | None = None) -> Response:
    """A job's answer with its Location."""
    return job_response(rec, status, {"Location": f"/jobs/{rec['id']}", **(headers or {})})


def finished_or_accepted(rec: dict, wait: float) -> Response:
    """After enqueuing: 202, or with ?wait the finished body (200, or the error's status)."""
    if wait > 0:
        rec = service().jobs.wait(rec["id"], wait, rec) or rec
        if rec["status"] in TERMINAL:
            status = 200
            if rec["status"] == J.FAILED:
                status = int(rec.get("http_status") or 500)
            return accepted(rec, status)
    return accepted(rec)


def create(kind: str, task: str, params: dict, total: int = 0, send: bool = True, also=None):
    """A QUEUED job record, its task's outbox entry and (``send``) its task message, written
    in one transaction: whatever happens to this process next, the message gets published
    (here, or by a worker's sweeper). ``also(pipe)`` adds writes (an upload) to it."""
    s = service()
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


def discard(job_id: str) -> None:
    """Drop a record that will not run and its outbox entry (that first: a QUEUED record
    left with its entry would be published by the sweeper)."""
    s = service()
    s.outbox.done(job_id)
    s.jobs.discard(job_id)


# -- train ------------------------------------------------------------------------------------
TRAIN_ANSWERS = {
    202: (S.Job, "queued, or the already queued/running training of this dataset", LOCATION),
    400: "malformed body, UNKNOWN_FIELD, unknown protocol, features or adapt, bad repeats or "
    "activate, a path outside the data root, a dataset without labels (DATASET_NO_LABELS, "
    "DATASET_BAD_LABELS) or audio (DATASET_NO_AUDIO), or no dataset named and several in the "
    "default folder (DATASET_AMBIGUOUS)",
    409: "a training of this dataset just ended; retry (TRAINING_BUSY)",
}


@bp.route("/train", methods=["POST", "GET"])
@operation(
    "post",
    "Queue a training (single flight per dataset, protocol, adapt, features)",
    body={"application/json": S.TrainRequest},
    body_required=False,
    responses=TRAIN_ANSWERS,
)
@operation(
    "get",
    "Queue a training (prototype compatibility; the same fields as query parameters)",
    query=S.TrainRequest,
    responses=TRAIN_ANSWERS,
)
def train():
    """Queue a training (single flight per dataset, protocol, adaptation and features)."""
    s = service()
    if request.method == "POST":
        req = S.parse(S.TrainRequest, json_body())
    else:
        req = S.parse(S.TrainRequest, request.args, query=True)
    data_dir = s.settings.data_dir
    root = confine(data_dir, req.dataset or s.settings.train_dataset, kind="dir")
    try:
        if not req.dataset:  # the default folder, or the one dataset it holds
            root = default_dataset(root, name=relative(data_dir, root))
        # Labels findable (labels.csv's header, a listing): the worker's loader would fail
        # the job otherwise; the same check as POST /score with evaluate.
        check_evaluate(data_dir, root)
    except DatasetError as exc:
        if not req.dataset:
            raise with_default_hint(exc) from None
        raise
    rel = relative(data_dir, root)
    lock = J.train_lock_name(rel, req.protocol, req.adapt, req.features)
    if not req.activate:  # a training kept aside never joins one that activates (nor vice versa)
        lock += ":aside"
    params = {
        "dataset": rel,
        "protocol": req.protocol,
        "features": req.features,
        "adapt": req.adapt,
        "repeats": req.repeats,
        "activate": req.activate,
        "lock": lock,
    }
    if not req.dataset:  # the worker's dataset errors then say how to name one
        params["default_dataset"] = True
    rec = create("train", TASK_TRAIN, params, send=False)  # sent once single flight allows
    ttl = s.settings.train_time_limit + s.settings.visibility_timeout
    holder = s.jobs.acquire(lock, rec["id"], ttl)
    if holder != rec["id"]:
        discard(rec["id"])
        existing = s.jobs.get(holder)
        if existing is None:  # it expired between the lock check and now: let the client retry
            raise ApiError(409, "TRAINING_BUSY", "a training of this dataset just ended; retry")
        return accepted(existing, headers={"X-Single-Flight": "joined"})
    try:
        publish(s.messages, s.outbox, TASK_TRAIN, [rec["id"], params], rec["id"], recorded=True)
    except Exception:
        try:  # Redis is failing: undo what can be undone, the outbox entry first (an entry
            # left with its QUEUED record would be published later by the sweeper)
            discard(rec["id"])
            s.jobs.release(lock, rec["id"])
        except Exception:
            pass
        raise
    return accepted(rec)


# -- predict ----------------------------------------------------------------------------------
def _clean_name(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[\x00-\x1f\x7f]", "", name)[:255] or "upload"


def _is_raw_audio(mimetype: str) -> bool:
    """A request whose whole body is the clip: ``audio/*`` or ``application/octet-stream``."""
    return mimetype.startswith("audio/") or mimetype == "application/octet-stream"


def _read_upload(stream) -> bytes:
    """The uploaded bytes, within SER_MAX_UPLOAD_MB and starting like an audio container."""
    mb = service().settings.max_upload_mb
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


def _one_speaker(query: str | None, field: str | None) -> str | None:
    """The speaker named in the query or in the body (400 when they differ)."""
    if query is not None and field is not None and query != field:
        raise ApiError(400, "INVALID_SPEAKER", "the query and the body name different speakers")
    return field if field is not None else query


@bp.route("/predict", methods=["POST"])
@operation(
    "post",
    "Queue a prediction of an uploaded clip or a file under the data root",
    query=S.PredictQuery,
    body={
        "application/json": S.PredictRequest,
        "multipart/form-data": S.PredictUpload,
        "audio/*": BINARY,
        "application/octet-stream": BINARY,
    },
    body_description="a path under the data root (JSON), or the clip: as a multipart file "
    "part, or as the whole body (audio/*, octet-stream)",
    responses={
        200: (S.Job, "finished within ?wait"),
        202: (S.Job, "queued", LOCATION),
        400: (
            either(S.Error, S.Job),
            "malformed body, UNKNOWN_FIELD, a path outside the data root, a bad speaker or a "
            "speaker with segments "
            "(with ?wait: also the FAILED job of a clip the worker refused)",
        ),
        409: "no model has been trained yet (NO_MODEL)",
        413: "upload larger than SER_MAX_UPLOAD_MB",
        415: (
            either(S.Error, S.Job),
            "not audio (with ?wait: also the FAILED job of audio that cannot be analysed)",
        ),
        500: (either(S.Error, S.Job), "with ?wait: the FAILED job of an unexpected error"),
        504: (either(S.Error, S.Job), "with ?wait: the FAILED job that hit its time limit"),
    },
)
def predict():
    """Queue a prediction of an uploaded clip or a file under the data root.

    Three request shapes: JSON ``{"filename": ...}``; multipart ``file=@clip``; or the clip as
    the whole body (``audio/*`` or ``application/octet-stream``, name in ``?name=``), which
    spares client and server the multipart encoding. The clip's speaker (optional): a
    ``speaker`` field of the JSON body or the multipart form, or ``?speaker=``. Emotion over
    time (``segments``): the same field, form field or ``?segments=1``."""
    s = service()
    query = S.parse(S.PredictQuery, request.args, query=True)
    mimetype = request.mimetype
    filename = None
    if mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(400, "MALFORMED_BODY", "multipart requests need a 'file' part")
        form = S.parse(S.PredictUpload, {**request.form.to_dict(), **request.files.to_dict()})
        source, name = upload.stream, upload.filename
        speaker = _one_speaker(query.speaker, form.speaker)
        segments = query.segments or form.segments
    elif _is_raw_audio(mimetype):
        source, name, speaker = request.stream, query.name, query.speaker
        segments = query.segments
    else:
        body = S.parse(S.PredictRequest, json_body())
        source, name, filename = None, None, body.filename
        speaker = _one_speaker(query.speaker, body.speaker)
        segments = query.segments or body.segments
    if segments and speaker is not None:
        raise ApiError(
            400,
            "INVALID_SPEAKER",
            "with segments a recording is its own speaker: its windows are classified with "
            "the recording's own statistics, not a stored speaker's; leave out speaker",
        )
    if not s.has_model():
        raise NoModelError(message=NO_MODEL)
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
    if segments:
        params["segments"] = True
    rec = create("predict", TASK_PREDICT, params, total=1, also=also)
    return finished_or_accepted(rec, query.wait)


# -- bulk scoring -----------------------------------------------------------------------------
@bp.route("/score", methods=["POST"])
@operation(
    "post",
    "Queue the scoring of every recording in a folder under the data root",
    body={"application/json": S.ScoreRequest},
    responses={
        202: (S.Job, "queued; poll the job, then GET its results", LOCATION),
        400: "malformed body, UNKNOWN_FIELD, a folder outside the data root, INVALID_SPEAKERS, "
        'speakers "labels" without a labels.csv (LABELS_NOT_FOUND) or its speaker column '
        "(DATASET_NO_SPEAKERS), or segments with speakers or evaluate",
        409: "no model has been trained yet (NO_MODEL)",
    },
)
def score():
    """Queue the scoring of every recording in a folder under the data root."""
    s = service()
    req = S.parse(S.ScoreRequest, json_body())
    if req.segments and req.speakers is not None:
        raise ApiError(
            400,
            "INVALID_SPEAKERS",
            "with segments each recording is its own speaker (its own statistics); leave out "
            "speakers",
        )
    if req.segments and req.evaluate:
        raise ApiError(
            400, "MALFORMED_BODY", "evaluate compares one label per file; not with segments"
        )
    if req.speakers is not None:
        parse_speakers(req.speakers)  # 400 INVALID_SPEAKERS (a regex without its group...)
    root = confine(s.settings.data_dir, req.folder, kind="dir")
    if req.speakers == "labels":  # its header only: the worker reads it whole
        check_labels(s.settings.data_dir, root)
    if req.evaluate:  # labels findable: checked cheaply here, read whole by the worker
        check_evaluate(s.settings.data_dir, root)
    version = s.registry.current()
    if version is None:
        raise NoModelError(message=NO_MODEL)
    # The model is pinned here: every chunk scores with it, whatever training ends meanwhile.
    params = {
        "folder": relative(s.settings.data_dir, root),
        "recursive": req.recursive,
        "patterns": req.patterns,
        "model_version": version,
    }
    if req.chunk_size:
        params["chunk_size"] = req.chunk_size
    if req.speakers is not None:
        params["speakers"] = req.speakers
    if req.evaluate:
        params["evaluate"] = True
    if req.segments:
        params["segments"] = True
    return accepted(create("score", TASK_SCORE, params))
