"""The OpenAPI 3.0 document of the HTTP API (served at /openapi.json, validated in the tests)."""

from __future__ import annotations

import ser


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict:
    return _json(_ref("Error"), description)


WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "hold the request until the job ends or this many seconds pass (max 30)",
    "schema": {"type": "number", "minimum": 0, "maximum": 30},
}
UPLOAD_NAME = {
    "name": "name",
    "in": "query",
    "required": False,
    "description": "the file name reported for a clip sent as the request body",
    "schema": {"type": "string", "maxLength": 255},
}
RAW_CLIP = {"schema": {"type": "string", "format": "binary"}}
SPEAKER_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "description": "a speaker id: printable text without control characters or '/'",
}
SPEAKER_QUERY = {
    "name": "speaker",
    "in": "query",
    "required": False,
    "description": "the clip's speaker (any request shape; the body's field may say it instead)",
    "schema": SPEAKER_ID,
}
SPEAKER_PATH = {"name": "speaker", "in": "path", "required": True, "schema": SPEAKER_ID}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^v[0-9]+$"},
}
LOCATION = {"Location": {"description": "the job URL", "schema": {"type": "string"}}}

SCHEMAS: dict = {
    "Error": {
        "type": "object",
        "required": ["ERROR"],
        "properties": {
            "ERROR": {
                "type": "object",
                "required": ["CODE", "MESSAGE"],
                "properties": {"CODE": {"type": "string"}, "MESSAGE": {"type": "string"}},
            }
        },
    },
    "Progress": {
        "type": "object",
        "properties": {
            "DONE": {"type": "integer"},
            "TOTAL": {"type": "integer"},
            "FEATURIZED": {
                "type": "integer",
                "description": "score job with speakers: files through pass 1 (statistics)",
            },
        },
    },
    "Job": {
        "type": "object",
        "description": "A job; finished jobs add the result fields of their kind or ERROR.",
        "required": ["JOB_ID", "KIND", "JOB_STATUS"],
        "properties": {
            "JOB_ID": {"type": "string"},
            "KIND": {"type": "string", "enum": ["train", "predict", "score"]},
            "JOB_STATUS": {
                "type": "string",
                "enum": ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"],
            },
            "PROGRESS": _ref("Progress"),
            "CREATED_AT": {"type": "string", "format": "date-time"},
            "STARTED_AT": {"type": "string", "format": "date-time"},
            "FINISHED_AT": {"type": "string", "format": "date-time"},
            "ERROR": {"type": "object"},
            "DATASET": {"type": "string"},
            "PROTOCOL": {"type": "string"},
            "STATUS": {"type": "string", "enum": ["FITTED", "SCORED"]},
            "F1_MACRO_MEAN": {"type": "number"},
            "F1_MACRO_STD": {"type": "number"},
            "SPEAKER_F1_MACRO_MEAN": {
                "type": "number",
                "description": "speaker-independent F1 (when the dataset names speakers)",
            },
            "SPEAKER_F1_MACRO_STD": {"type": "number"},
            "REPEATS": {"type": "integer", "description": "stratified CV repetitions"},
            "ADAPT": {"type": "string", "enum": ["auto", "off", "speaker", "both"]},
            "ADAPT_CHOSEN": {"type": "string", "enum": ["off", "speaker", "both"]},
            "CHANCE_F1": {"type": "number"},
            "SPEAKER_BASELINE_F1": {"type": "number", "nullable": True},
            "SPEAKER_CONFOUNDED": {"type": "boolean"},
            "UAR": {"type": "number"},
            "ACCURACY": {"type": "number"},
            "LOG_LOSS": {"type": "number"},
            "ECE": {"type": "number"},
            "N_SAMPLES": {"type": "integer"},
            "CLASSES": {"type": "array", "items": {"type": "string"}},
            "MODEL_VERSION": {"type": "string"},
            "ACTIVATE": {
                "type": "boolean",
                "description": "train job: false when asked to keep the new version aside",
            },
            "ACTIVATED": {
                "type": "boolean",
                "description": "train job: the new version became current (false: kept aside)",
            },
            "CONFUSION_PNG": {"type": "string", "description": "URL of the confusion matrix"},
            "FILENAME": {"type": "string"},
            "EMOTION": {"type": "string"},
            "PROBABILITY": {"type": "number"},
            "PROBABILITIES": {"type": "object", "additionalProperties": {"type": "number"}},
            "SPEAKER": {"type": "string", "description": "the clip's speaker, as sent"},
            "ADAPTED": {
                "type": "boolean",
                "description": "classified with the speaker's statistics (5 clips or more)",
            },
            "FEATURES_COMPUTED": {"type": "integer", "description": "recordings decoded"},
            "FEATURES_CACHED": {"type": "integer", "description": "feature-cache hits"},
            "FOLDER": {"type": "string"},
            "COUNT": {"type": "integer", "description": "files in the folder"},
            "SUCCEEDED": {"type": "integer", "description": "files scored"},
            "FAILED": {"type": "integer", "description": "files with an ERROR row"},
            "SUMMARY": {
                "type": "object",
                "description": "emotion -> number of files",
                "additionalProperties": {"type": "integer"},
            },
            "RESULTS": {"type": "string", "description": "URL of the per-file rows"},
            "SPEAKERS": {
                "type": "string",
                "enum": ["labels", "folder", "regex"],
                "description": "score job: where its files' speakers come from",
            },
            "SPEAKER_PATTERN": {"type": "string", "description": "score job: the regex"},
            "SPEAKER_COUNT": {"type": "integer", "description": "score job: distinct speakers"},
            "ADAPTED_COUNT": {
                "type": "integer",
                "description": "score job: files classified with their speaker's statistics",
            },
            "ADAPTATION": {
                "type": "string",
                "enum": ["off", "speaker", "both"],
                "description": "score job: the pinned model's speaker adaptation (off: one "
                "pass, nothing adapted)",
            },
            "PASSES": {"type": "integer", "description": "score job: 2 with adaptation, else 1"},
            "NOTE": {"type": "string"},
        },
    },
    "ScoreRequest": {
        "type": "object",
        "required": ["folder"],
        "properties": {
            "folder": {"type": "string", "description": "directory under SER_DATA_DIR"},
            "recursive": {"type": "boolean", "default": True},
            "patterns": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": 20,
                "default": ["*.wav", "*.flac", "*.ogg"],
                "description": "file-name globs, case-insensitive",
            },
            "chunk_size": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "description": "files per chunk (default: about 8 chunks per worker process)",
            },
            "speakers": {
                "type": "string",
                "maxLength": 200,
                "description": "each file's speaker, for speaker-normalised scoring: "
                '"labels" (labels.csv in the folder, columns path and speaker), "folder" (the '
                "parent directory's name) or a regular expression with a named group speaker, "
                "searched in the path relative to the folder; files without one are scored "
                "unadapted",
            },
        },
    },
    "Row": {
        "type": "object",
        "description": "One file: its emotion and probability, or its ERROR.",
        "required": ["FILENAME"],
        "properties": {
            "FILENAME": {"type": "string", "description": "path under SER_DATA_DIR"},
            "EMOTION": {"type": "string"},
            "PROBABILITY": {"type": "number"},
            "ERROR": {"type": "object"},
            "SPEAKER": {
                "type": "string",
                "nullable": True,
                "description": "job with speakers: the file's speaker (null: none)",
            },
            "ADAPTED": {
                "type": "boolean",
                "description": "job with speakers: scored with its speaker's statistics",
            },
        },
    },
    "ResultsPage": {
        "type": "object",
        "properties": {
            "JOB_ID": {"type": "string"},
            "JOB_STATUS": {"type": "string"},
            "COUNT": {"type": "integer", "description": "files in the job"},
            "DONE": {"type": "integer"},
            "OFFSET": {"type": "integer"},
            "LIMIT": {"type": "integer"},
            "ROWS": {"type": "array", "items": _ref("Row")},
            "NEXT": {"type": "string", "nullable": True},
        },
    },
    "JobList": {
        "type": "object",
        "properties": {
            "JOBS": {"type": "array", "items": _ref("Job")},
            "COUNT": {"type": "integer"},
        },
    },
    "TrainRequest": {
        "type": "object",
        "properties": {
            "dataset": {"type": "string", "description": "directory under SER_DATA_DIR"},
            "protocol": {"type": "string", "enum": ["stratified", "speaker"]},
            "features": {"type": "string", "enum": ["default", "seed"]},
            "adapt": {
                "type": "string",
                "enum": ["auto", "off", "speaker", "both"],
                "default": "auto",
                "description": "speaker adaptation (auto: chosen by speaker-grouped validation)",
            },
            "repeats": {
                "type": "integer",
                "minimum": 1,
                "maximum": 20,
                "default": 3,
                "description": "repetitions of the stratified cross-validation",
            },
            "activate": {
                "type": "boolean",
                "default": True,
                "description": "make the new version current (false: publish it to the "
                "registry and keep the current model)",
            },
        },
    },
    "PredictRequest": {
        "type": "object",
        "required": ["filename"],
        "properties": {
            "filename": {"type": "string", "description": "file under SER_DATA_DIR"},
            "speaker": SPEAKER_ID,
        },
    },
    "PredictUpload": {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}, "speaker": SPEAKER_ID},
    },
    "Speaker": {
        "type": "object",
        "required": ["SPEAKER", "CLIPS"],
        "properties": {
            "SPEAKER": {"type": "string"},
            "CLIPS": {
                "type": "object",
                "description": "feature-spec version -> clips in the speaker's statistics",
                "additionalProperties": {"type": "integer"},
            },
            "DELETED": {"type": "boolean"},
        },
    },
    "Model": {
        "type": "object",
        "required": ["MODEL_VERSION", "CURRENT"],
        "properties": {
            "MODEL_VERSION": {"type": "string"},
            "CURRENT": {"type": "boolean"},
            "CREATED_AT": {"type": "string"},
            "DATASET": {"type": "string"},
            "PROTOCOL": {"type": "string"},
            "FEATURE_SPEC": {"type": "string"},
            "CLASSES": {"type": "array", "items": {"type": "string"}},
            "F1_MACRO_MEAN": {"type": "number"},
            "F1_MACRO_STD": {"type": "number"},
            "SPEAKER_F1_MACRO_MEAN": {"type": "number", "nullable": True},
            "SPEAKER_F1_MACRO_STD": {"type": "number", "nullable": True},
            "ADAPT": {"type": "string", "nullable": True},
            "ADAPT_CHOSEN": {"type": "string", "nullable": True},
            "N_SAMPLES": {"type": "integer"},
            "METRICS": {"type": "object"},
            "SHA256": {"type": "string"},
        },
    },
    "ModelDeleted": {
        "type": "object",
        "required": ["MODEL_VERSION", "DELETED"],
        "properties": {"MODEL_VERSION": {"type": "string"}, "DELETED": {"type": "boolean"}},
    },
    "ModelList": {
        "type": "object",
        "properties": {
            "CURRENT": {"type": "string", "nullable": True},
            "MODELS": {"type": "array", "items": _ref("Model")},
            "COUNT": {"type": "integer"},
        },
    },
    "Health": {
        "type": "object",
        "properties": {
            "STATUS": {"type": "string", "enum": ["OK", "UNAVAILABLE"]},
            "REDIS": {"type": "boolean"},
            "WORKERS": {"type": "integer"},
            "QUEUES": {"type": "object"},
            "MODEL_VERSION": {"type": "string", "nullable": True},
            "ERROR": {"type": "object"},
        },
    },
}


def _train_op(method: str) -> dict:
    op = {
        "summary": "Queue a training (single flight per dataset, protocol, adapt, features)",
        "operationId": f"train{method.title()}",
        "responses": {
            "202": {
                "description": "queued, or the already queued/running training of this dataset",
                "headers": LOCATION,
                "content": {"application/json": {"schema": _ref("Job")}},
            },
            "400": _err(
                "malformed body, unknown protocol or adapt, bad repeats or activate "
                "(INVALID_ACTIVATE), or a path outside the data root"
            ),
            "401": _err("missing or wrong API key"),
            "503": _err("broker unavailable"),
        },
    }
    if method == "post":
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref("TrainRequest")}},
        }
    else:
        op["summary"] += " (prototype compatibility; query parameters)"
        op["parameters"] = [
            {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
            for n in ("dataset", "protocol", "features", "adapt")
        ] + [
            {
                "name": "repeats",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 20},
            },
            {
                "name": "activate",
                "in": "query",
                "required": False,
                "description": "true/1 (default) or false/0: keep the new version aside",
                "schema": {"type": "boolean"},
            },
        ]
    return op


def spec(with_auth: bool = False) -> dict:
    """The OpenAPI document; ``with_auth`` declares the bearer scheme on every operation."""
    job = _json(_ref("Job"), "the job")
    paths = {
        "/train": {"post": _train_op("post"), "get": _train_op("get")},
        "/predict": {
            "post": {
                "summary": "Queue a prediction of an uploaded clip or a file under the data root",
                "operationId": "predict",
                "parameters": [WAIT, UPLOAD_NAME, SPEAKER_QUERY],
                "requestBody": {
                    "required": True,
                    "description": "a path under the data root (JSON), or the clip: as a "
                    "multipart file part, or as the whole body (audio/*, octet-stream)",
                    "content": {
                        "application/json": {"schema": _ref("PredictRequest")},
                        "multipart/form-data": {"schema": _ref("PredictUpload")},
                        "audio/*": RAW_CLIP,
                        "application/octet-stream": RAW_CLIP,
                    },
                },
                "responses": {
                    "200": _json(_ref("Job"), "finished within ?wait"),
                    "202": {
                        "description": "queued",
                        "headers": LOCATION,
                        "content": {"application/json": {"schema": _ref("Job")}},
                    },
                    "400": _err("malformed body, a path outside the data root, or a bad speaker"),
                    "401": _err("missing or wrong API key"),
                    "409": _err("no model has been trained yet"),
                    "413": _err("upload larger than SER_MAX_UPLOAD_MB"),
                    "415": _err("not audio (or, with ?wait, audio that cannot be analysed)"),
                    "503": _err("broker unavailable"),
                },
            }
        },
        "/score": {
            "post": {
                "summary": "Queue the scoring of every recording in a folder under the data root",
                "operationId": "score",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ScoreRequest")}},
                },
                "responses": {
                    "202": {
                        "description": "queued; poll the job, then GET its results",
                        "headers": LOCATION,
                        "content": {"application/json": {"schema": _ref("Job")}},
                    },
                    "400": _err(
                        "malformed body, a folder outside the data root, INVALID_SPEAKERS, "
                        'or speakers "labels" without a labels.csv (LABELS_NOT_FOUND) or its '
                        "speaker column (DATASET_NO_SPEAKERS)"
                    ),
                    "401": _err("missing or wrong API key"),
                    "409": _err("no model has been trained yet"),
                    "503": _err("broker unavailable"),
                },
            }
        },
        "/jobs/{job_id}/results": {
            "parameters": [JOB_ID],
            "get": {
                "summary": "Per-file rows of a score job: paged JSON, or streamed CSV / JSONL",
                "operationId": "getJobResults",
                "parameters": [
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["json", "csv", "jsonl"]},
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "rows in file order (files not done yet left out)",
                        "content": {
                            "application/json": {"schema": _ref("ResultsPage")},
                            "text/csv": {"schema": {"type": "string"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "400": _err("bad format, offset or limit"),
                    "401": _err("missing or wrong API key"),
                    "404": _err("unknown or expired job"),
                    "409": _err("not a score job"),
                },
            },
        },
        "/jobs": {
            "get": {
                "summary": "Recent jobs, newest first",
                "operationId": "listJobs",
                "parameters": [
                    {
                        "name": "kind",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["train", "predict", "score"]},
                    },
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"],
                        },
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                ],
                "responses": {
                    "200": _json(_ref("JobList"), "the jobs"),
                    "400": _err("bad filter"),
                    "401": _err("missing or wrong API key"),
                },
            }
        },
        "/jobs/{job_id}": {
            "parameters": [JOB_ID],
            "get": {
                "summary": "A job's state and, when finished, its result or error",
                "operationId": "getJob",
                "parameters": [WAIT],
                "responses": {
                    "200": job,
                    "400": _err("bad wait"),
                    "401": _err("missing or wrong API key"),
                    "404": _err("unknown or expired job"),
                },
            },
            "delete": {
                "summary": "Cancel a queued or running job",
                "operationId": "cancelJob",
                "responses": {
                    "200": _json(_ref("Job"), "the cancelled job"),
                    "401": _err("missing or wrong API key"),
                    "404": _err("unknown or expired job"),
                    "409": _err("the job already finished"),
                },
            },
        },
        "/models": {
            "get": {
                "summary": "Every model version and the current one",
                "operationId": "listModels",
                "responses": {
                    "200": _json(_ref("ModelList"), "the models"),
                    "401": _err("missing or wrong API key"),
                },
            }
        },
        "/models/{version}": {
            "parameters": [VERSION],
            "get": {
                "summary": "Metadata and metrics of one version",
                "operationId": "getModel",
                "responses": {
                    "200": _json(_ref("Model"), "the model"),
                    "401": _err("missing or wrong API key"),
                    "404": _err("unknown version"),
                },
            },
            "delete": {
                "summary": "Remove a version that is not current (its bundle, metadata, PNG)",
                "operationId": "deleteModel",
                "responses": {
                    "200": _json(_ref("ModelDeleted"), "deleted"),
                    "401": _err("missing or wrong API key"),
                    "404": _err("unknown version (MODEL_NOT_FOUND)"),
                    "409": _err("the version is current (MODEL_IS_CURRENT)"),
                },
            },
        },
        "/models/{version}/confusion.png": {
            "parameters": [VERSION],
            "get": {
                "summary": "The cross-validated confusion matrix as a PNG",
                "operationId": "getConfusionPng",
                "responses": {
                    "200": {
                        "description": "PNG image",
                        "content": {
                            "image/png": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    "401": _err("missing or wrong API key"),
                    "404": _err("unknown version"),
                },
            },
        },
        "/models/{version}/activate": {
            "parameters": [VERSION],
            "post": {
                "summary": "Make this version the one every worker serves",
                "operationId": "activateModel",
                "responses": {
                    "200": _json(_ref("Model"), "the activated model"),
                    "401": _err("missing or wrong API key"),
                    "404": _err("unknown version"),
                    "500": _err("the artifact's signature does not verify"),
                },
            },
        },
        "/speakers/{speaker}": {
            "parameters": [SPEAKER_PATH],
            "get": {
                "summary": "The clips a speaker's statistics hold, per feature-spec version",
                "operationId": "getSpeaker",
                "responses": {
                    "200": _json(_ref("Speaker"), "the speaker"),
                    "400": _err("not a valid speaker id"),
                    "401": _err("missing or wrong API key"),
                    "404": _err("no statistics for this speaker"),
                },
            },
            "delete": {
                "summary": "Forget a speaker's statistics",
                "operationId": "forgetSpeaker",
                "responses": {
                    "200": _json(_ref("Speaker"), "what was forgotten (DELETED: true)"),
                    "400": _err("not a valid speaker id"),
                    "401": _err("missing or wrong API key"),
                    "404": _err("no statistics for this speaker"),
                },
            },
        },
        "/health": {
            "get": {
                "summary": "Redis reachable, workers online, current model (no API key needed)",
                "operationId": "health",
                "security": [],
                "responses": {
                    "200": _json(_ref("Health"), "healthy"),
                    "503": _json(_ref("Health"), "Redis down or no worker online"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3 document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "401": _err("missing or wrong API key"),
                },
            }
        },
    }
    doc: dict = {
        "openapi": "3.0.3",
        "info": {
            "title": "Speech emotion recognition service",
            "version": ser.__version__,
            "description": "Train and predict as jobs; poll /jobs/{id} (or use ?wait).",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if with_auth:
        doc["security"] = [{"bearer": []}]
    return doc
