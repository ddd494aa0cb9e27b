"""What applies to every request: the API key, the body-size limit, and closing a connection
whose refused body was left unread."""

from __future__ import annotations

import hmac

from flask import Flask, current_app, request

from api.errors import ApiError

UPLOAD_OVERHEAD = 64 * 1024  # multipart headers and boundaries around the file
DRAINED_BY_SERVER = 64 * 1024  # gunicorn reads at most this much of a body the app left unread
# Endpoints open without the API key: the probes, and the web console's pages and assets (they
# hold no data; the pages send the key they ask for with each API call).
PUBLIC = {"meta.health", "meta.ready", "console.index", "console.docs", "static", "docs.static"}


def install(app: Flask) -> None:
    """The body limit, the key check before every request, and the connection wrapper."""
    settings = app.extensions["ser"].settings
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_upload_mb * 1024 * 1024) + UPLOAD_OVERHEAD
    app.before_request(authenticate)
    app.wsgi_app = CloseAfterRefusedBody(app.wsgi_app)


def authenticate() -> None:
    """401 unless the request is public or carries ``Authorization: Bearer <SER_API_KEY>``
    (compared in constant time)."""
    key = current_app.extensions["ser"].settings.api_key.get_secret_value()
    if not key or request.endpoint is None or request.endpoint in PUBLIC:
        return None  # (no endpoint: the router's own 404 or 405 follows, nothing is served)
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise ApiError(401, "UNAUTHORIZED", "missing or wrong API key (Authorization: Bearer)")
    return None


class CloseAfterRefusedBody:
    """WSGI wrapper: an error answer to a request whose body may be left unread closes the
    connection, and says so.

    gunicorn drains at most 64 KB of an unread body before reusing a keep-alive connection;
    past that it closes the connection after answering ``Connection: keep-alive``, and a
    client that sends its next request on it meets a reset. For a refused large or chunked
    body (413, 401, ...) the server is asked to close and announce ``Connection: close``
    (gunicorn's ``force_close``; the WSGI ``start_response`` it passes is its response's).
    """

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        def start(status, headers, exc_info=None):
            if int(status[:3]) >= 400 and _body_may_be_unread(environ):
                force_close = getattr(
                    getattr(start_response, "__self__", None), "force_close", None
                )
                if force_close is not None:
                    force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def _body_may_be_unread(environ) -> bool:
    """Whether the request carries more body than the server drains on its own."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return True
    try:
        return int(environ.get("CONTENT_LENGTH") or 0) > DRAINED_BY_SERVER
    except ValueError:
        return True
