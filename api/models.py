"""The model registry: every version, one version, its confusion matrix, activation, deletion."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from api import schemas as S
from api import service
from api.openapi import BINARY, operation

bp = Blueprint("models", __name__)

UNKNOWN = "unknown version (MODEL_NOT_FOUND)"


def model_body(meta: dict, current: str | None) -> dict:
    """The public JSON of a model version (api.schemas.ModelItem)."""
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


def _number(value: Any) -> float | None:
    """A stored figure as a float (None stays None: an empty bin, a figure not recorded)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def evaluation_body(m: dict) -> dict:
    """One protocol's figures of a version's metrics as api.schemas.ProtocolEvaluation (what a
    version trained before a figure was recorded lacks is null)."""
    per_class = {
        name: {
            "PRECISION": float(c["precision"]),
            "RECALL": float(c["recall"]),
            "F1": float(c["f1"]),
            "SUPPORT": int(c["support"]),
        }
        for name, c in (m.get("per_class") or {}).items()
    }
    per_speaker = {
        str(name): {
            "F1": float(s["f1"]),
            "ACCURACY": float(s["accuracy"]),
            "SUPPORT": int(s["support"]),
        }
        for name, s in (m.get("per_speaker") or {}).items()
    }
    bins = [
        {
            "LOWER": float(b["lower"]),
            "UPPER": float(b["upper"]),
            "COUNT": int(b["count"]),
            "CONFIDENCE": _number(b.get("confidence")),
            "ACCURACY": _number(b.get("accuracy")),
        }
        for b in m.get("reliability") or []
    ]
    matrix = m.get("confusion_matrix")
    folds = m.get("f1_macro_folds")
    return {
        "F1_MACRO_MEAN": _number(m.get("f1_macro_mean")),
        "F1_MACRO_STD": _number(m.get("f1_macro_std")),
        "F1_FOLDS": [float(f) for f in folds] if folds else None,
        "N_FOLDS": m.get("n_folds"),
        "REPEATS": m.get("repeats"),
        "UAR": _number(m.get("uar")),
        "ACCURACY": _number(m.get("accuracy")),
        "LOG_LOSS": _number(m.get("log_loss")),
        "ECE": _number(m.get("ece")),
        "CHANCE_F1": _number(m.get("chance_f1")),
        "CONFUSION_MATRIX": [[int(v) for v in row] for row in matrix] if matrix else None,
        "PER_CLASS": per_class or None,
        "PER_SPEAKER": per_speaker or None,
        "RELIABILITY": bins or None,
    }


def evaluations_body(meta: dict) -> dict | None:
    """Protocol -> figures, the version's own protocol first. The top level of its metrics is
    that protocol's, confusion matrix included; versions trained before every protocol kept
    its own matrix lack the other protocols' (null)."""
    metrics = meta.get("metrics")
    if not metrics:
        return None
    primary = metrics.get("protocol") or meta.get("protocol") or "stratified"
    every = dict(metrics.get("protocols") or {})
    every[primary] = {**every.get(primary, {}), **metrics}
    order = [primary] + [name for name in every if name != primary]
    return {name: evaluation_body(every[name]) for name in order}


@bp.route("/models", methods=["GET"])
@operation(
    "get",
    "Every model version, newest first, and the current one",
    responses={200: (S.ModelList, "the models")},
)
def list_models():
    """Every model version, newest first, and the current one."""
    reg = service().registry
    current = reg.current()
    models = [model_body(m, current) for m in reg.all_meta()]
    return S.respond(S.ModelList, {"CURRENT": current, "MODELS": models, "COUNT": len(models)})


@bp.route("/models/<version>", methods=["GET"])
@operation(
    "get",
    "Metadata and full metrics of one version",
    responses={200: (S.ModelDetail, "the model"), 404: UNKNOWN},
)
def get_model(version: str):
    """Metadata and full metrics of one version."""
    reg = service().registry
    meta = reg.meta(version)
    body = model_body(meta, reg.current())
    body["METRICS"] = meta.get("metrics")
    body["EVALUATIONS"] = evaluations_body(meta)
    body["VERSIONS"] = meta.get("versions")
    body["CONFUSION_PNG"] = f"/models/{version}/confusion.png"
    return S.respond(S.ModelDetail, body)


@bp.route("/models/<version>/confusion.png", methods=["GET"])
@operation(
    "get",
    "The cross-validated confusion matrix of one version as a PNG",
    responses={200: ({"image/png": BINARY}, "PNG image"), 404: UNKNOWN},
)
def confusion_png(version: str):
    """The cross-validated confusion matrix of one version as a PNG."""
    png = service().registry.confusion_png(version)
    return Response(png, mimetype="image/png", headers={"Cache-Control": "max-age=3600"})


@bp.route("/models/<version>/activate", methods=["POST"])
@operation(
    "post",
    "Make this version the one every worker serves (roll back or forward)",
    responses={
        200: (S.ModelItem, "the activated model"),
        404: UNKNOWN,
        500: "the artifact's signature does not verify (MODEL_SIGNATURE_INVALID)",
    },
)
def activate_model(version: str):
    """Make ``version`` the model every worker serves (roll back or forward)."""
    s = service()
    key = s.settings.require_secret_key() if s.settings.secret_key else None
    meta = s.registry.activate(version, key)
    return S.respond(S.ModelItem, model_body(meta, s.registry.current()))


@bp.route("/models/<version>", methods=["DELETE"])
@operation(
    "delete",
    "Remove a version that is not current (its bundle, metadata, PNG)",
    responses={
        200: (S.ModelDeleted, "deleted"),
        404: UNKNOWN,
        409: "the version is current (MODEL_IS_CURRENT)",
    },
)
def delete_model(version: str):
    """Remove a version that is not current (bundle, metadata, PNG); 409 for the current one."""
    meta = service().registry.delete(version)
    return S.respond(S.ModelDeleted, {"MODEL_VERSION": meta["version"], "DELETED": True})
