"""The HTTP front: a Flask application factory over Redis (job records, registry) and Celery.

The API validates requests against its contract (api/schemas.py), stores uploads as
short-lived Redis blobs, sends tasks by NAME and serves job records. It never imports the
audio or learning libraries. Blueprints by resource: submit (train, predict, score), jobs,
models, speakers, meta (health, the OpenAPI document), console (the web page at /, its
assets under /static/console/, Swagger UI at /docs); middleware holds what applies to every
request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from ser import config as ser_config
from ser.service.jobs import JobStore
from ser.service.outbox import Outbox
from ser.service.redis import redis_client
from ser.service.registry import Registry
from ser.service.results import ResultStore
from ser.service.speakers import SpeakerStore

NO_RETRY = Retry(NoBackoff(), 0)
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


def service() -> Service:
    """The Service of the app handling the current request."""
    return current_app.extensions["ser"]


def _settings(config: Mapping[str, Any] | None) -> ser_config.Settings:
    overrides = {k: str(v) for k, v in (config or {}).items() if k.startswith("SER_")}
    return ser_config.load(overrides=overrides)


def _warm_up(app: Flask, client) -> None:
    """Pay a process's first-request costs before the first request: the Redis connection,
    and one rehearsed prediction through the whole request path (api.warmup). With Redis down
    this costs a refused connect; the first request then connects. The first upload after
    start cost ≈5-10 ms more than the next ones without a warm-up (bench/first_prediction.py)."""
    from api import warmup

    try:
        client.ping()
    except redis.RedisError:
        return
    settings = app.extensions["ser"].settings
    if settings.skip_warmup:
        return
    # Its own client: short timeouts and no retries, so that a Redis that stalls now cannot
    # hold this process's start past gunicorn's boot timeout (the first request then pays).
    own = redis_client(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=2, retry=NO_RETRY
    )
    try:
        warmup.rehearse(app, lambda settings, messages: _service(settings, own, messages))
    finally:
        own.close()


def _service(settings: ser_config.Settings, client, messages) -> Service:
    """The routes' Service over ``client`` for ``settings``."""
    prefix = settings.key_prefix
    return Service(
        settings=settings,
        redis=client,
        jobs=JobStore(client, prefix, settings.job_ttl),
        registry=Registry(client, prefix),
        messages=messages,
        outbox=Outbox(client, prefix),
        results=ResultStore(client, prefix, settings.job_ttl),
        speakers=SpeakerStore(client, prefix, settings.job_ttl),
    )


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; ``config`` overrides the environment (SER_* keys) and Flask settings."""
    from api import console, errors, jobs, meta, metrics, middleware, models, speakers, submit
    from worker import producer

    settings = _settings(config)
    app = Flask(__name__)
    app.config.update({k: v for k, v in (config or {}).items() if not k.startswith("SER_")})
    app.json.sort_keys = False
    client = redis_client(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=40,  # above the longest ?wait (30 s) held in a blocking command
    )
    app.extensions["ser"] = _service(settings, client, producer.connect(settings))
    errors.register(app)
    middleware.install(app)
    for module in (submit, jobs, models, speakers, meta, console):
        app.register_blueprint(module.bp)
    app.register_blueprint(console.docs_assets)
    metrics.install(app)
    _warm_up(app, client)
    if not app.debug and not app.testing and not logging.getLogger().handlers:
        # Under gunicorn: our INFO lines (one per job transition, ser.service.jobs) to stderr,
        # which `ser up` writes to $SER_STATE_DIR/logs/api.log.
        logging.basicConfig(
            level=logging.WARNING, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
        )
        for name in ("api", "ser"):
            logging.getLogger(name).setLevel(logging.INFO)
    return app
