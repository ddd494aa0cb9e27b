"""The service itself: its health (open without the key) and its OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from api import schemas as S
from api import service
from api.openapi import operation, spec
from ser.contract import QUEUES
from ser.service.heartbeats import heartbeats, readiness

bp = Blueprint("meta", __name__)


@bp.route("/health", methods=["GET"])
@operation(
    "get",
    "Redis reachable, workers online, current model (no API key needed)",
    public=True,
    responses={
        200: (S.Health, "healthy"),
        503: (S.Health, "Redis down or no worker online"),
    },
)
def health():
    """200 when Redis answers and a worker is online; 503 otherwise (with the reason)."""
    s = service()
    body: dict = {"STATUS": "OK", "REDIS": False, "WORKERS": 0, "MODEL_VERSION": None}
    try:
        s.redis.ping()
        body["REDIS"] = True
        workers = heartbeats(s.redis, s.settings.key_prefix)
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
        return S.respond(S.Health, body, 503)
    if not body["WORKERS"]:
        body["STATUS"] = "UNAVAILABLE"
        body["ERROR"] = {"CODE": "NO_WORKERS", "MESSAGE": "no worker is online"}
        return S.respond(S.Health, body, 503)
    return S.respond(S.Health, body)


@bp.route("/ready", methods=["GET"])
@operation(
    "get",
    "Ready to serve: Redis answers and every queue has a warm worker process (no API key needed)",
    public=True,
    responses={200: (S.Ready, "ready"), 503: (S.Ready, "not ready (yet)")},
)
def ready():
    """200 once Redis answers and, for each queue, a worker process online has loaded its
    libraries and the model current when it started; 503 until then (``/health`` stays the
    cheap liveness check)."""
    s = service()
    body: dict = {"READY": False, "REDIS": False, "QUEUES": {q: 0 for q in QUEUES}, "WORKERS": 0}
    try:
        state = readiness(s.redis, s.settings.key_prefix, QUEUES)
        body.update(REDIS=True, READY=state["ready"], QUEUES=state["queues"])
        body["WORKERS"] = state["workers"]
    except Exception as exc:  # Redis down: not ready
        body["ERROR"] = {"CODE": "BROKER_UNAVAILABLE", "MESSAGE": f"Redis: {type(exc).__name__}"}
    return S.respond(S.Ready, body, 200 if body["READY"] else 503)


@bp.route("/openapi.json", methods=["GET"])
@operation(
    "get",
    "This document (generated from the API's models)",
    responses={200: ({"application/json": {"type": "object"}}, "OpenAPI 3.1 document")},
)
def openapi():
    """The OpenAPI 3.1 document of this API."""
    with_auth = bool(service().settings.api_key)
    cache = current_app.extensions.setdefault("ser.openapi", {})  # the routes never change
    if with_auth not in cache:
        cache[with_auth] = spec(current_app, with_auth)
    return jsonify(cache[with_auth])
