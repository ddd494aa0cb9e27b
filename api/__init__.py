"""The HTTP front: a Flask application factory over Redis (job records, registry) and Celery.

The API validates requests, stores uploads as short-lived Redis blobs, sends tasks by NAME and
serves job records. It never imports the audio or learning libraries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask

from ser import config as ser_config
from ser.service.jobs import JobStore
from ser.service.outbox import Outbox
from ser.service.redis import redis_client
from ser.service.registry import Registry
from ser.service.results import ResultStore
from ser.service.speakers import SpeakerStore

UPLOAD_OVERHEAD = 64 * 1024  # multipart headers and boundaries around the file
DRAINED_BY_SERVER = 64 * 1024  # gunicorn reads at most this much of a body the app left unread

MODEL_SEEN_FOR = 2.0  # seconds a "a model exists" answer is reused (models are never deleted)


@dataclass
class Service:
    """What the routes use: settings, the Redis-backed stores and the task message builder."""

    settings: ser_config.Settings
    redis: Any
    jobs: JobStore
    registry: Registry
    messages: Any  # worker.producer.TaskMessages: task messages pushed in our transactions
    outbox: Outbox  # every task message until a worker ran it (lost ones are republished)
    results: ResultStore  # rows of bulk jobs
    speakers: SpeakerStore  # per-speaker feature statistics (GET/DELETE /speakers/<id>)
    _model_seen: float = -1e9

    def has_model(self) -> bool:
        """Whether a model has been trained (the answer "yes" is reused for a moment: one
        Redis read less per prediction; "no" is always checked again)."""
        now = time.monotonic()
        if now - self._model_seen < MODEL_SEEN_FOR:
            return True
        if self.registry.current() is None:
            return False
        self._model_seen = now
        return True


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


def _settings(config: Mapping[str, Any] | None) -> ser_config.Settings:
    overrides = {k: str(v) for k, v in (config or {}).items() if k.startswith("SER_")}
    return ser_config.load(overrides=overrides)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; ``config`` overrides the environment (SER_* keys) and Flask settings."""
    from api import errors, routes
    from worker import producer

    settings = _settings(config)
    app = Flask(__name__)
    app.config.update({k: v for k, v in (config or {}).items() if not k.startswith("SER_")})
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_upload_mb * 1024 * 1024) + UPLOAD_OVERHEAD
    app.json.sort_keys = False
    client = redis_client(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=40,  # above the longest ?wait (30 s) held in a blocking command
    )
    app.extensions["ser"] = Service(
        settings=settings,
        redis=client,
        jobs=JobStore(client, settings.key_prefix, settings.job_ttl),
        registry=Registry(client, settings.key_prefix),
        messages=producer.connect(settings),
        outbox=Outbox(client, settings.key_prefix),
        results=ResultStore(client, settings.key_prefix, settings.job_ttl),
        speakers=SpeakerStore(client, settings.key_prefix, settings.job_ttl),
    )
    errors.register(app)
    app.register_blueprint(routes.bp)
    app.wsgi_app = CloseAfterRefusedBody(app.wsgi_app)
    if not app.debug and not app.testing:
        logging.getLogger("api").setLevel(logging.INFO)
    return app
