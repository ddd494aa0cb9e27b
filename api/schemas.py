"""The HTTP contract: a pydantic model for every request body, query string and response body.

Requests are closed (``extra="forbid"``): an unknown field answers 400 ``UNKNOWN_FIELD``
before anything is queued. JSON bodies are strict (``"3"`` is not a number of repeats); query
strings are parsed leniently, since every value there is text. A refused value answers the
stable code its field declares with :class:`Invalid` (``INVALID_REPEATS``...), else
``MALFORMED_BODY``. Responses are closed too: :func:`respond` checks every body against its
model before sending it, and the OpenAPI document (api/openapi.py) is generated from these
models, so a field the document does not declare cannot be served.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from flask import Response, jsonify
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StringConstraints,
    ValidationError,
    model_validator,
)

from api.errors import ApiError
from ser import contract as C
from ser.bulk import DEFAULT_PATTERNS, MAX_SPEAKER_PATTERN
from ser.paths import check_text
from ser.service.speakers import MAX_SPEAKER_LEN, check_speaker

log = logging.getLogger("api")
M = TypeVar("M", bound=BaseModel)

MAX_LIST = 500  # jobs per GET /jobs
MAX_PAGE = 1000  # rows per page of /jobs/<id>/results
MAX_OFFSET = 10_000_000
MAX_PATTERNS = 20
MAX_CHUNK = 1000  # files per chunk when a client sets it (default: ser.bulk.chunk_size)


@dataclass(frozen=True)
class Invalid:
    """Field metadata: the error code (and message) of a refused value of this field.

    ``strings_only``: only a string is refused with ``code``; another JSON type is a
    MALFORMED_BODY (``{"protocol": 5}`` is malformed, ``{"protocol": "loso"}`` unknown).
    ``blank_is_value``: an empty query value is refused, not read as the default."""

    code: str
    message: str | None = None
    strings_only: bool = False
    blank_is_value: bool = False


class Request(BaseModel):
    """A JSON request body: closed and strict."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """A query string: closed; parsed leniently (see :func:`parse`)."""

    model_config = ConfigDict(extra="forbid")


class Body(BaseModel):
    """A response body: closed, checked as built (no coercion)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _one_of(names) -> str:
    return ", ".join(names)


# -- shared field types -----------------------------------------------------------------------
Wait = Annotated[
    float,
    Field(
        ge=0,
        allow_inf_nan=False,
        description=f"hold the request until the job ends or this many seconds pass (values "
        f"above {C.MAX_WAIT} are held at {C.MAX_WAIT})",
    ),
    AfterValidator(lambda w: min(w, C.MAX_WAIT)),
    Invalid(
        "INVALID_WAIT",
        f"wait must be a number of seconds, 0 or more (values above {C.MAX_WAIT} are held at "
        f"{C.MAX_WAIT})",
    ),
]
SpeakerId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_SPEAKER_LEN,
        description="a speaker id: printable text without control characters or '/'",
    ),
    AfterValidator(check_speaker),  # raises INVALID_SPEAKER itself, with the precise reason
]
OptionalSpeaker = Annotated[  # (the marker outside the union, where parse() finds it)
    SpeakerId | None,
    Invalid(
        "INVALID_SPEAKER",
        f"'speaker' must be a string of 1 to {MAX_SPEAKER_LEN} characters",
        blank_is_value=True,  # ?speaker= names no speaker: a mistake, not "no speaker"
    ),
]
ModelVersion = Annotated[str, Field(pattern=C.MODEL_VERSION_PATTERN)]
JobId = Annotated[str, Field(description="32 hexadecimal digits")]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Kind = Literal[C.KINDS]
Status = Literal[C.STATUSES]
AdaptMode = Literal[C.ADAPT_MODES]
Adapt = Literal[C.ADAPT_CHOICES]
Protocol = Literal[C.PROTOCOLS]
FeatureSet = Literal[C.FEATURE_SETS]
Glob = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^/]+$")]
# A path under the data root: what cannot name a file is INVALID_PATH, as confine() says it
# (before pydantic's own str check, which would call a lone surrogate merely malformed).
DataPath = Annotated[str, BeforeValidator(lambda v: check_text(v) if isinstance(v, str) else v)]
Binary = Annotated[Any, Field(json_schema_extra={"type": "string", "format": "binary"})]


# -- requests ---------------------------------------------------------------------------------
class TrainRequest(Request):
    """POST /train (JSON body) and GET /train (the same fields as a query string)."""

    dataset: DataPath | None = Field(
        None,
        description="directory under SER_DATA_DIR; without it, SER_TRAIN_DATASET (default: "
        "the data root) when it labels its recordings itself (labels.csv, EMO-DB names), else "
        "its one sub-folder that does, else its only sub-folder, else the folder with its "
        "sub-folders as classes (400 DATASET_AMBIGUOUS when several sub-folders are datasets)",
    )
    protocol: Annotated[
        Protocol,
        Invalid("INVALID_PROTOCOL", f"protocol must be one of {_one_of(C.PROTOCOLS)}", True),
    ] = "stratified"
    features: Annotated[
        FeatureSet,
        Invalid("INVALID_FEATURES", f"features must be one of {_one_of(C.FEATURE_SETS)}", True),
    ] = "default"
    adapt: Annotated[
        Adapt,
        Field(description="speaker adaptation (auto: chosen by speaker-grouped validation)"),
        Invalid("INVALID_ADAPT", f"adapt must be one of {_one_of(C.ADAPT_CHOICES)}", True),
    ] = "auto"
    repeats: Annotated[
        int,
        Field(ge=1, le=C.MAX_TRAIN_REPEATS, description="repetitions of the stratified CV"),
        Invalid("INVALID_REPEATS", f"repeats must be an integer 1..{C.MAX_TRAIN_REPEATS}"),
    ] = C.TRAIN_REPEATS
    activate: Annotated[
        StrictBool,
        Field(
            description="make the new version current (false: publish it to the registry "
            "and keep the current model)"
        ),
        Invalid("INVALID_ACTIVATE", "activate must be true or false"),
    ] = True

    @model_validator(mode="before")
    @classmethod
    def _blank_is_default(cls, data: Any) -> Any:
        """An empty dataset, protocol, features or adapt asks for the default (as the
        prototype's query strings did)."""
        if isinstance(data, dict):
            names = ("dataset", "protocol", "features", "adapt")
            return {k: v for k, v in data.items() if not (k in names and v == "")}
        return data


PREDICT_HOW = (
    'send JSON {"filename": "<path under the data root>"}, multipart file=@clip, '
    "or the clip itself as an audio/* body"
)


SEGMENTS_HOW = (
    "emotion over time: the recording's speech segments, each classified, with the dominant "
    "emotion by speech time (recordings up to SER_MAX_SEGMENTED_SECONDS; a recording is one "
    "speaker, its own statistics: not with a speaker)"
)
SEGMENTS_INVALID = "'segments' must be true or false"


def _form_flag(value: Any) -> Any:
    """A form or query flag: true/1/yes/on or false/0/no/off (anything else stays invalid)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
    return value


class PredictRequest(Request):
    """POST /predict, JSON: a file under the data root."""

    filename: Annotated[
        DataPath,
        Field(min_length=1, description="file under SER_DATA_DIR"),
        Invalid("MALFORMED_BODY", PREDICT_HOW),
    ]
    speaker: OptionalSpeaker = None
    segments: Annotated[
        StrictBool, Field(description=SEGMENTS_HOW), Invalid("MALFORMED_BODY", SEGMENTS_INVALID)
    ] = False


class PredictUpload(Request):
    """POST /predict, multipart/form-data: the clip as the ``file`` part."""

    file: Binary
    speaker: OptionalSpeaker = None
    segments: Annotated[
        StrictBool,
        BeforeValidator(_form_flag),
        Field(description=SEGMENTS_HOW + "; true/1 or false/0"),
        Invalid("MALFORMED_BODY", SEGMENTS_INVALID),
    ] = False


class PredictQuery(Query):
    """POST /predict query string (any body shape)."""

    wait: Wait = 0.0
    name: str | None = Field(
        None, description="the file name reported for a clip sent as the request body"
    )
    speaker: OptionalSpeaker = Field(
        None, description="the clip's speaker (the body's own field may say it instead)"
    )
    segments: Annotated[
        StrictBool,
        BeforeValidator(_form_flag),
        Field(description=SEGMENTS_HOW + " (the body's own field may say it instead)"),
        Invalid("MALFORMED_BODY", SEGMENTS_INVALID),
    ] = False


class ScoreRequest(Request):
    """POST /score: every recording in a folder under the data root."""

    folder: Annotated[
        DataPath,
        Field(min_length=1, description="directory under SER_DATA_DIR"),
        Invalid("MALFORMED_BODY", 'send JSON {"folder": "<dir under the data root>"}'),
    ]
    recursive: Annotated[
        StrictBool, Invalid("MALFORMED_BODY", "'recursive' must be true or false")
    ] = True
    patterns: Annotated[
        list[Glob],
        Field(
            min_length=1,
            max_length=MAX_PATTERNS,
            description="file-name globs, case-insensitive",
        ),
        Invalid(
            "MALFORMED_BODY",
            f"'patterns' must be 1 to {MAX_PATTERNS} file-name globs such as \"*.wav\"",
        ),
    ] = list(DEFAULT_PATTERNS)
    chunk_size: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_CHUNK,
            description="files per chunk (default: about 8 chunks per worker process)",
        ),
        Invalid("MALFORMED_BODY", f"'chunk_size' must be an integer 1..{MAX_CHUNK}"),
    ] = None
    speakers: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_SPEAKER_PATTERN,
            description="each file's speaker, for speaker-normalised scoring: "
            '"labels" (labels.csv in the folder, columns path and speaker), "folder" (the '
            "parent directory's name) or a regular expression with a named group speaker, "
            "searched in the path relative to the folder; files without one are scored "
            "unadapted",
        ),
        Invalid(
            "INVALID_SPEAKERS",
            '\'speakers\' must be "labels", "folder" or a regular expression with a group '
            f"named speaker (at most {MAX_SPEAKER_PATTERN} characters)",
        ),
    ] = None
    evaluate: Annotated[
        StrictBool,
        Field(
            description="also measure the model against the folder's labels (labels.csv, "
            "EMO-DB names or class folders); a folder without labels is refused "
            "(DATASET_NO_LABELS)"
        ),
        Invalid("MALFORMED_BODY", "'evaluate' must be true or false"),
    ] = False
    segments: Annotated[
        StrictBool,
        Field(
            description="emotion over time of every recording: a row per speech segment "
            "(FILENAME, START, END, EMOTION, PROBABILITY, PROBABILITIES, ADAPTED), one row for "
            "a file that fails or holds no speech; the job's SUMMARY adds up speech seconds "
            "per emotion (not with speakers or evaluate)"
        ),
        Invalid("MALFORMED_BODY", SEGMENTS_INVALID),
    ] = False


class JobQuery(Query):
    """GET /jobs/<id>."""

    wait: Wait = 0.0


class JobsQuery(Query):
    """GET /jobs: recent jobs, newest first."""

    kind: Annotated[
        Kind | None, Invalid("INVALID_KIND", f"kind must be one of {_one_of(C.KINDS)}")
    ] = None
    status: Annotated[
        Status | None,
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
        Invalid("INVALID_STATUS", f"status must be one of {_one_of(C.STATUSES)}"),
    ] = None
    limit: Annotated[
        int,
        Field(ge=1, le=MAX_LIST),
        Invalid("INVALID_LIMIT", f"limit must be an integer from 1 to {MAX_LIST}"),
    ] = 50


class ResultsQuery(Query):
    """GET /jobs/<id>/results: paged JSON, or every row as CSV or JSON Lines."""

    format: Annotated[
        Literal["json", "csv", "jsonl"],
        Invalid("INVALID_FORMAT", "format must be json, csv or jsonl"),
    ] = "json"
    offset: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_OFFSET,
            description="the first row of the page (rows count from 0 in file order; with "
            "segments a row per speech segment, one for a file that failed or holds no speech)",
        ),
        Invalid("INVALID_OFFSET", f"offset must be an integer 0..{MAX_OFFSET}"),
    ] = 0
    limit: Annotated[
        int,
        Field(ge=1, le=MAX_PAGE, description="rows per page, segment rows included"),
        Invalid("INVALID_LIMIT", f"limit must be an integer 1..{MAX_PAGE}"),
    ] = 100


# -- responses --------------------------------------------------------------------------------
class ErrorDetail(Body):
    CODE: str
    MESSAGE: str


class Error(Body):
    """Every error answer: ``{"ERROR": {"CODE", "MESSAGE"}}``."""

    ERROR: ErrorDetail


class Progress(Body):
    DONE: int
    TOTAL: int
    FEATURIZED: int | None = Field(
        None, description="score job with speakers: files through pass 1 (statistics)"
    )


class JobBase(Body):
    """What every job says: its id, kind, status, progress or outcome, and timestamps."""

    JOB_ID: JobId
    JOB_STATUS: Status
    PROGRESS: Progress | None = Field(None, description="while QUEUED or RUNNING")
    ERROR: ErrorDetail | None = Field(None, description="when FAILED")
    WORKER: str | None = Field(None, description="the worker node that ran it")
    CREATED_AT: Timestamp | None = None
    STARTED_AT: Timestamp | None = None
    FINISHED_AT: Timestamp | None = None
    MODEL_VERSION: str | None = None


class TrainJob(JobBase):
    """A training; SUCCEEDED adds the seed shape ``STATUS, F1_MACRO_MEAN, F1_MACRO_STD`` and
    the evaluation's figures."""

    KIND: Literal["train"]
    DATASET: str | None = None
    PROTOCOL: Protocol | None = None
    ADAPT: Adapt | None = None
    ACTIVATE: bool | None = Field(
        None, description="false when asked to keep the new version aside"
    )
    STATUS: Literal["FITTED"] | None = None
    F1_MACRO_MEAN: float | None = None
    F1_MACRO_STD: float | None = None
    SPEAKER_F1_MACRO_MEAN: float | None = Field(
        None, description="speaker-independent F1 (when the dataset names speakers)"
    )
    SPEAKER_F1_MACRO_STD: float | None = None
    UAR: float | None = None
    ACCURACY: float | None = None
    LOG_LOSS: float | None = None
    ECE: float | None = None
    N_SAMPLES: int | None = None
    CLASSES: list[str] | None = None
    REPEATS: int | None = Field(None, description="stratified CV repetitions")
    ADAPT_CHOSEN: AdaptMode | None = None
    CHANCE_F1: float | None = None
    SPEAKER_BASELINE_F1: float | None = None
    SPEAKER_CONFOUNDED: bool | None = None
    FEATURE_SPEC: str | None = None
    FAILED_FILES: int | None = Field(None, description="recordings that could not be used")
    FEATURES_COMPUTED: int | None = Field(None, description="recordings decoded")
    FEATURES_CACHED: int | None = Field(None, description="feature-cache hits")
    ACTIVATED: bool | None = Field(
        None, description="the new version became current (false: kept aside)"
    )
    CONFUSION_PNG: str | None = Field(None, description="URL of the confusion matrix")


class EmotionTime(Body):
    SECONDS: float
    SHARE: float = Field(description="share of the speech time")


class Segment(Body):
    START: float = Field(description="seconds from the recording's start")
    END: float
    EMOTION: str
    PROBABILITY: float
    PROBABILITIES: dict[str, float]


class PredictJob(JobBase):
    """A prediction; SUCCEEDED adds the seed shape ``FILENAME, EMOTION, PROBABILITY`` (with
    ``segments``: EMOTION dominates by speech time, PROBABILITY is its probability averaged
    over the speech, weighted by duration, and the segments follow)."""

    KIND: Literal["predict"]
    FILENAME: str | None = None
    SPEAKER: str | None = Field(None, description="the clip's speaker, as sent")
    EMOTION: str | None = None
    PROBABILITY: float | None = None
    PROBABILITIES: dict[str, float] | None = None
    ADAPTED: bool | None = Field(
        None,
        description="classified with the speaker's statistics (5 clips or more); segments: "
        "the windows were classified with the recording's own statistics (5 windows or more, "
        "a model that adapts to speakers)",
    )
    DURATION: float | None = Field(None, description="segments: the recording's seconds")
    SPEECH_SECONDS: float | None = Field(None, description="segments: seconds of speech found")
    SUMMARY: dict[str, EmotionTime] | None = Field(
        None,
        description="segments: speech time per emotion, the emotions with at least one "
        "segment (a score job's SUMMARY counts by the same rule, listing every class)",
    )
    SEGMENTS: list[Segment] | None = Field(
        None,
        description="segments: the speech segments in order, without overlap (an empty list "
        "when no speech was found; EMOTION and PROBABILITY are then null)",
    )


class ClassFigures(Body):
    PRECISION: float
    RECALL: float
    F1: float
    SUPPORT: int


class Evaluation(Body):
    """How the pinned model did on the folder's labelled files (``evaluate: true``)."""

    LABELS: Literal["labels_csv", "emodb", "folders"] | None = Field(
        None, description="where the labels came from"
    )
    EVALUATED: int | None = Field(None, description="files scored and labelled with a class")
    F1_MACRO: float | None = None
    UAR: float | None = Field(None, description="unweighted average recall")
    ACCURACY: float | None = None
    CLASSES: list[str] | None = Field(None, description="the model's classes, matrix order")
    PER_CLASS: dict[str, ClassFigures] | None = None
    CONFUSION_MATRIX: list[list[int]] | None = Field(
        None, description="rows: the true class; columns: the prediction"
    )
    UNKNOWN_LABELS: dict[str, int] | None = Field(
        None, description="labels the model does not know -> files (left out)"
    )
    UNLABELLED: int | None = Field(None, description="files without a label (left out)")
    FAILED: int | None = Field(None, description="files that could not be scored (left out)")
    CONFUSION_PNG: str | None = Field(None, description="URL of the confusion matrix")
    TRAINING_DATASET: str | None = Field(
        None, description="the dataset the pinned model was trained on (from its metadata)"
    )
    TRAINING_DATA: bool | None = Field(
        None,
        description="true: the folder is, holds or lies in the model's training dataset, or "
        "evaluated files were trained on; the figures then measure memory, not generalisation",
    )
    TRAINING_OVERLAP: int | None = Field(
        None,
        description="evaluated files that are in the model's training dataset (as it reads "
        "now; every file under it when it no longer loads)",
    )
    ERROR: ErrorDetail | None = Field(
        None, description="the labels could not be read at the end (the rows stand)"
    )


class EmotionSegments(Body):
    SECONDS: float = Field(description="speech seconds of this emotion over every file")
    SHARE: float = Field(description="share of all the speech time")
    SEGMENTS: int


class ScoreJob(JobBase):
    """The scoring of a folder; SUCCEEDED adds the counts and the URL of the rows."""

    KIND: Literal["score"]
    FOLDER: str | None = None
    SPEAKERS: Literal["labels", "folder", "regex"] | None = Field(
        None, description="where its files' speakers come from"
    )
    SPEAKER_PATTERN: str | None = Field(None, description="the regex")
    STATUS: Literal["SCORED"] | None = None
    COUNT: int | None = Field(None, description="files in the folder")
    SUCCEEDED: int | None = Field(None, description="files scored")
    FAILED: int | None = Field(None, description="files with an ERROR row")
    SUMMARY: dict[str, int] | dict[str, EmotionSegments] | None = Field(
        None,
        description="emotion -> number of files (segments: speech seconds, share, segments)",
    )
    SEGMENTS: int | None = Field(None, description="segments: speech segments in all files")
    SPEECH_SECONDS: float | None = Field(None, description="segments: speech in all files")
    CLASSES: list[str] | None = Field(None, description="segments: the model's classes")
    RESULTS: str | None = Field(None, description="URL of the per-file rows")
    SPEAKER_COUNT: int | None = Field(None, description="distinct speakers")
    ADAPTED_COUNT: int | None = Field(
        None, description="files classified with their speaker's statistics"
    )
    ADAPTATION: AdaptMode | None = Field(
        None, description="the pinned model's speaker adaptation (off: one pass)"
    )
    PASSES: int | None = Field(None, description="2 with adaptation, else 1")
    NOTE: str | None = None
    EVALUATE: bool | None = Field(None, description="evaluation against labels requested")
    EVALUATION: Evaluation | None = None


class Job(RootModel[Annotated[TrainJob | PredictJob | ScoreJob, Field(discriminator="KIND")]]):
    """A job of any kind."""


class JobList(Body):
    JOBS: list[Job]
    COUNT: int


class Row(Body):
    """One file of a score job: its emotion and probability, or its ERROR (a job with
    segments: one row per speech segment of the file)."""

    FILENAME: str = Field(description="path under SER_DATA_DIR")
    SPEAKER: str | None = Field(None, description="job with speakers: the file's speaker")
    START: float | None = Field(None, description="job with segments: seconds into the file")
    END: float | None = Field(None, description="job with segments")
    EMOTION: str | None = None
    PROBABILITY: float | None = None
    PROBABILITIES: dict[str, float] | None = Field(None, description="job with segments")
    ERROR: ErrorDetail | None = None
    ADAPTED: bool | None = Field(
        None,
        description="job with speakers: scored with its speaker's statistics; with segments: "
        "with the recording's own",
    )


class ResultsPage(Body):
    """A page of a score job's rows. OFFSET and LIMIT count rows, not files: a row per file,
    or with segments a row per speech segment (a file that failed or holds no speech: one
    row), so a page of long recordings holds LIMIT rows at most. Without segments a page
    leaves out the files not done yet. With segments the rows are those of the files done, in
    file order, up to the first file not done yet (every row once the job has finished): a
    row keeps its position, so following NEXT neither loses nor repeats a row; while the job
    runs, the last page so far has a null NEXT (ask again from OFFSET plus its rows)."""

    JOB_ID: JobId
    JOB_STATUS: Status
    COUNT: int = Field(description="files in the job")
    DONE: int = Field(description="files done")
    OFFSET: int = Field(description="the page's first row")
    LIMIT: int = Field(description="rows per page")
    ROWS: list[Row]
    NEXT: str | None = Field(description="URL of the next page (null: the last one)")
    ROW_COUNT: int | None = Field(
        None,
        description="rows stored so far (every row once the job has finished; with segments, "
        "of every file done, in order or not)",
    )


class ModelItem(Body):
    """A model version in the registry."""

    MODEL_VERSION: str
    CURRENT: bool
    CREATED_AT: Timestamp | None
    DATASET: str | None
    PROTOCOL: Protocol | None
    FEATURE_SPEC: str | None
    CLASSES: list[str] | None
    F1_MACRO_MEAN: float | None
    F1_MACRO_STD: float | None
    SPEAKER_F1_MACRO_MEAN: float | None
    SPEAKER_F1_MACRO_STD: float | None
    ADAPT: Adapt | None
    ADAPT_CHOSEN: AdaptMode | None
    N_SAMPLES: int | None
    FINGERPRINT: str | None = Field(description="the training data's fingerprint")
    SIZE_BYTES: int | None = Field(description="size of the signed bundle")
    SHA256: str | None
    JOB_ID: JobId | None = Field(description="the training job that made it")


class SpeakerFigures(Body):
    F1: float = Field(description="F1-macro over the classes the speaker voices or is given")
    ACCURACY: float
    SUPPORT: int = Field(description="the speaker's clips")


class ReliabilityBin(Body):
    """One bin of the reliability diagram: out-of-fold clips whose top-class probability
    falls in (LOWER, UPPER]."""

    LOWER: float
    UPPER: float
    COUNT: int
    CONFIDENCE: float | None = Field(description="mean top-class probability (null: empty)")
    ACCURACY: float | None = Field(description="share of them predicted right (null: empty)")


class ProtocolEvaluation(Body):
    """A version's cross-validation under one protocol, from its out-of-fold predictions.

    The figures that need the predictions themselves (CONFUSION_MATRIX of the protocol not
    requested, PER_SPEAKER, RELIABILITY) are null for versions trained before they were
    recorded."""

    F1_MACRO_MEAN: float | None = None
    F1_MACRO_STD: float | None = None
    F1_FOLDS: list[float] | None = Field(None, description="F1-macro of every test fold")
    N_FOLDS: int | None = None
    REPEATS: int | None = Field(None, description="repetitions of the stratified CV")
    UAR: float | None = Field(None, description="unweighted average recall")
    ACCURACY: float | None = None
    LOG_LOSS: float | None = None
    ECE: float | None = Field(None, description="expected calibration error")
    CHANCE_F1: float | None = None
    CONFUSION_MATRIX: list[list[int]] | None = Field(
        None, description="rows: the true class; columns: the prediction (CLASSES order)"
    )
    PER_CLASS: dict[str, ClassFigures] | None = None
    PER_SPEAKER: dict[str, SpeakerFigures] | None = Field(
        None, description="per speaker (datasets that name speakers)"
    )
    RELIABILITY: list[ReliabilityBin] | None = Field(
        None, description="the reliability diagram's bins (those of ECE)"
    )


class ModelDetail(ModelItem):
    """One version with its full metrics."""

    METRICS: dict[str, Any] | None
    EVALUATIONS: dict[str, ProtocolEvaluation] | None = Field(
        description="protocol -> its cross-validation figures (PROTOCOL's first): the typed "
        "view of METRICS, for charts"
    )
    VERSIONS: dict[str, Any] | None = Field(description="library versions it was trained with")
    CONFUSION_PNG: str = Field(description="URL of the confusion matrix")


class ModelList(Body):
    CURRENT: str | None
    MODELS: list[ModelItem]
    COUNT: int


class ModelDeleted(Body):
    MODEL_VERSION: str
    DELETED: Literal[True]


class Speaker(Body):
    """The clips a speaker's statistics hold, per feature-spec version."""

    SPEAKER: str
    CLIPS: dict[str, int] = Field(description="feature-spec version -> clips")
    DELETED: Literal[True] | None = Field(None, description="DELETE: they are forgotten")


class QueueState(Body):
    WORKERS: int = Field(description="worker nodes consuming it")
    WAITING: int = Field(description="messages waiting")


class Health(Body):
    STATUS: Literal["OK", "UNAVAILABLE"]
    REDIS: bool
    WORKERS: int
    QUEUES: dict[str, QueueState] | None = None
    MODEL_VERSION: str | None
    ERROR: ErrorDetail | None = None


class Ready(Body):
    READY: bool
    REDIS: bool
    WORKERS: int = Field(description="worker nodes online")
    QUEUES: dict[str, int] = Field(description="queue -> warm worker processes consuming it")
    ERROR: ErrorDetail | None = None


# -- applying the contract --------------------------------------------------------------------
def parse(model: type[M], data: Any, *, query: bool = False) -> M:
    """``data`` validated as ``model``, or the ApiError (400) that refuses it.

    A null value (or, in a query string, an empty one) means the field's default. In a query
    every value is text, so numbers and booleans are read from it (``?repeats=3``)."""
    if isinstance(data, dict):
        data = {
            k: v
            for k, v in data.items()
            if v is not None and not (query and v == "" and not _blank_is_value(model, k))
        }
    try:
        return model.model_validate(data, strict=False if query else None)
    except ValidationError as exc:
        raise refusal(model, exc) from None


def _marker(model: type[BaseModel], name: str) -> Invalid | None:
    field = model.model_fields.get(name)
    return next((m for m in field.metadata if isinstance(m, Invalid)), None) if field else None


def _blank_is_value(model: type[BaseModel], name: str) -> bool:
    marker = _marker(model, name)
    return marker is not None and marker.blank_is_value


def refusal(model: type[BaseModel], exc: ValidationError) -> ApiError:
    """The 400 for the first problem (an unknown field first: likely a typo of a known one)."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    name = str(err["loc"][0]) if err["loc"] else ""
    if err["type"] == "extra_forbidden":
        known = _one_of(model.model_fields)
        return ApiError(400, "UNKNOWN_FIELD", f"unknown field {name!r} (known: {known})")
    if err["type"] == "model_type" or not name:
        return ApiError(400, "MALFORMED_BODY", "the body must be a JSON object")
    marker = _marker(model, name)
    if marker is not None and not (marker.strings_only and not isinstance(err["input"], str)):
        return ApiError(400, marker.code, marker.message or f"{name!r}: {err['msg']}")
    return ApiError(400, "MALFORMED_BODY", f"{name!r}: {err['msg']}")


def respond(
    model: type[BaseModel], body: dict, status: int = 200, headers: dict | None = None
) -> Response:
    """The JSON response of ``body`` once checked against ``model`` (a field the contract does
    not declare is a bug of this service: a 500, logged, rather than an undocumented field)."""
    try:
        model.model_validate(body)
    except ValidationError as exc:
        log.error("a %s response breaks its schema: %s", model.__name__, exc)
        raise
    resp = jsonify(body)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp
