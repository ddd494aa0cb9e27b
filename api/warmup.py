"""An API process's warm-up before its first request: one rehearsed prediction through the
app's own request path (ser.service.rehearsal), so the first real upload costs what the next
ones do (bench/first_prediction.py).

The rehearsal is a real ``POST /predict`` (a multipart upload) and, once its job is marked
finished as a worker would, a wait for it and ``GET /jobs/<id>?wait``, through the app's test
client: routing, the API key check, the multipart parse, validation, the job record, its task
message and outbox entry in one transaction, the wait on the finish token, the finished job's
answer, the Prometheus series of both routes. Everything it
writes is on keys of its own, its message on a list of its own that no worker reads; nothing
is counted (its series are made at 0) and nothing is logged.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
import wave

import redis

from ser.service import rehearsal
from ser.service.redis import blob_key
from worker.producer import queue_key

log = logging.getLogger(__name__)

ENVIRON_FLAG = "ser.rehearsal"  # WSGI environ key of a rehearsal's requests (not counted)


class _Detour:
    """Task messages pushed on one list of the rehearsal's own (no worker reads it)."""

    def __init__(self, messages, queue: str) -> None:
        self.messages, self.queue = messages, queue
        self.key = queue_key(queue, messages.options)

    def push(self, client, name: str, args: list, task_id: str, queue: str | None = None) -> None:
        self.messages.push(client, name, args, task_id, self.queue)


def _clip() -> bytes:
    """A short silent WAV (the API only checks that an upload starts like audio)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 1600)
    return buf.getvalue()


def rehearse(app, make_service) -> bool:
    """Answer one rehearsed prediction (see the module) with ``app``, its service swapped
    for one on the rehearsal's keys (``make_service(settings, messages)``: the app factory's
    own construction) for the time of it. Call before the app serves. Returns whether both
    answers were as a real client's would be (202, then 200)."""
    real = app.extensions["ser"]
    # (a pid alone repeats across containers sharing one Redis)
    settings = rehearsal.settings_for(real.settings, f"api:{uuid.uuid4().hex[:8]}:{os.getpid()}")
    messages = _Detour(real.messages, f"{settings.key_prefix}queue")
    dry = make_service(settings, messages)
    dry.jobs.logged = False  # its job's transitions are not the service's
    keys = [dry.registry.current_key]
    key = real.settings.api_key.get_secret_value()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    app.extensions["ser"] = dry
    try:
        keys += rehearsal.seed_job_keys(dry.redis, dry.jobs, dry.outbox, lists=(messages.key,))
        dry.redis.set(dry.registry.current_key, rehearsal.NAMESPACE, ex=rehearsal.TTL)
        client = app.test_client()
        environ = {ENVIRON_FLAG: True}
        posted = client.post(
            "/predict",
            data={"file": (io.BytesIO(_clip()), "warm-up.wav")},
            headers=headers,
            environ_base=environ,
        )
        job_id = (posted.get_json(silent=True) or {}).get("JOB_ID")
        if not job_id:
            log.warning("the API's warm-up prediction was refused: %s", posted.status)
            return False
        rec = dry.jobs.get(job_id) or {}
        keys += [dry.jobs.key(job_id), dry.jobs.done_key(job_id)]
        if blob := (rec.get("params") or {}).get("blob"):
            keys.append(blob_key(settings.key_prefix, blob))
        # The job finished as a worker would finish it; a wait for it as ?wait waits (its
        # finish token is there: no blocking), and the finished job's answer.
        dry.jobs.start(job_id, rehearsal.TTL, rehearsal.NAMESPACE)
        dry.jobs.succeed(job_id, {"EMOTION": rehearsal.NAMESPACE, "PROBABILITY": 1.0})
        dry.jobs.wait(job_id, 1.0, rec)
        polled = client.get(f"/jobs/{job_id}?wait=1", headers=headers, environ_base=environ)
        return posted.status_code == 202 and polled.status_code == 200
    except Exception as exc:  # Redis down or slow, or a bug: the first request pays it
        log.warning("the API's warm-up prediction could not run: %r", exc)
        return False
    finally:
        app.extensions["ser"] = real
        try:
            dry.redis.delete(*keys)
        except redis.RedisError:  # they expire on their own
            pass
