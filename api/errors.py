"""One JSON error shape everywhere: ``{"ERROR": {"CODE", "MESSAGE"}}``."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from ser.errors import SerError

log = logging.getLogger("api")

# Werkzeug's HTTP errors under stable codes.
HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "UPLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


class ApiError(SerError):
    """An HTTP-level refusal with an explicit status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.http_status = status


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    """The JSON error response."""
    resp = jsonify({"ERROR": {"CODE": code, "MESSAGE": message}})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _unavailable_types() -> tuple[type[BaseException], ...]:
    import redis
    from kombu.exceptions import OperationalError

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError)


def register(app: Flask) -> None:
    """Install the handlers on ``app``."""
    unavailable = _unavailable_types()

    @app.errorhandler(SerError)
    def _ser_error(exc: SerError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        return error_response(exc.http_status, exc.code, exc.message, headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        code = HTTP_CODES.get(status, (exc.name or "ERROR").upper().replace(" ", "_"))
        message = exc.description or exc.name
        if status == 413:
            limit = app.extensions["ser"].settings.max_upload_mb
            message = f"the upload exceeds SER_MAX_UPLOAD_MB ({limit:g} MB)"
        resp = error_response(status, code, message)
        if status == 405 and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, unavailable):
            log.warning("broker unavailable: %s", type(exc).__name__)
            return error_response(
                503, "BROKER_UNAVAILABLE", "Redis (the broker and job store) is not reachable"
            )
        log.exception("unhandled error")
        return error_response(500, "INTERNAL_ERROR", "internal error; see the API log")
