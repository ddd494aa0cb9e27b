"""End to end through HTTP: gunicorn API -> Redis -> real Celery workers -> job records."""

from __future__ import annotations

import time

import pytest

from ser.service.jobs import JobStore
from ser.service.outbox import Outbox
from tests.fixtures import API_KEY, MAX_UPLOAD_MB
from tests.harness import Api, make_client, upload, wait_until

JOB_ID_KEYS = {"JOB_ID", "KIND", "JOB_STATUS"}


def error_of(resp, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert set(body) >= {"ERROR"} and set(body["ERROR"]) == {"CODE", "MESSAGE"}, body
    assert body["ERROR"]["MESSAGE"]
    return body["ERROR"]["CODE"]


# -- health, auth, spec -----------------------------------------------------------------------
def test_health_needs_no_key_and_reports_workers(api_url, settings):
    resp = Api(api_url, None).get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["STATUS"] == "OK" and body["REDIS"] is True and body["WORKERS"] >= 1
    assert body["QUEUES"]["ser.train"]["WORKERS"] >= 1
    assert body["QUEUES"]["ser.predict"]["WORKERS"] >= 1


@pytest.mark.parametrize("path", ["/jobs", "/models", "/openapi.json", "/train"])
def test_every_other_endpoint_needs_the_key(api_url, path):
    anon = Api(api_url, None)
    resp = anon.get(path)
    assert error_of(resp, 401) == "UNAUTHORIZED"
    assert resp.headers.get("WWW-Authenticate") == "Bearer"
    assert API_KEY not in resp.text
    assert error_of(Api(api_url, "wrong-key").get(path), 401) == "UNAUTHORIZED"
    assert error_of(anon.get(path, headers={"Authorization": API_KEY}), 401) == "UNAUTHORIZED"


def test_an_upload_refused_before_it_is_read_closes_its_connection(api_url, data_dir):
    anon = Api(api_url, None)
    clip = (data_dir / "clips" / "excited.wav").read_bytes()
    big = clip + b"\0" * 300_000  # more than the server drains on its own
    resp = anon.post("/predict", data=big, headers={"Content-Type": "audio/wav"})
    assert error_of(resp, 401) == "UNAUTHORIZED"
    assert resp.headers.get("Connection") == "close"
    small = anon.post("/predict", data=clip[:20_000], headers={"Content-Type": "audio/wav"})
    assert error_of(small, 401) == "UNAUTHORIZED"
    assert small.headers.get("Connection") == "keep-alive"


def test_openapi_document_is_valid_and_complete(api, service_env):
    from openapi_spec_validator import validate

    import api as api_pkg

    resp = api.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    validate(doc)
    assert doc["security"] == [{"bearer": []}]
    app = api_pkg.create_app({k: v for k, v in service_env.items() if k.startswith("SER_")})
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue  # Flask's file views (console and Swagger UI assets): left out on purpose
        path = rule.rule.replace("<", "{").replace(">", "}")
        assert path in doc["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], (path, method)


# -- train, predict, jobs: the seed shapes ----------------------------------------------------
def test_train_returns_202_then_fitted_result(api, trained):
    body = trained
    assert body["KIND"] == "train" and body["STATUS"] == "FITTED"
    assert 0.9 <= body["F1_MACRO_MEAN"] <= 1.0 and body["F1_MACRO_STD"] >= 0
    assert body["MODEL_VERSION"].startswith("v")
    assert body["CLASSES"] == ["calm", "excited", "tense"]
    model = api.get(f"/models/{body['MODEL_VERSION']}").json()
    assert model["METRICS"]["confusion_matrix"] and model["DATASET"] == "ds"
    # the model page's figures, computed at training time from the out-of-fold predictions
    evals = model["EVALUATIONS"]
    assert list(evals) == ["stratified", "speaker"]
    for figures in evals.values():
        assert sum(map(sum, figures["CONFUSION_MATRIX"])) == body["N_SAMPLES"]
        assert sum(b["COUNT"] for b in figures["RELIABILITY"]) == body["N_SAMPLES"]
        assert sum(s["SUPPORT"] for s in figures["PER_SPEAKER"].values()) == body["N_SAMPLES"]
        assert set(figures["PER_CLASS"]) == set(body["CLASSES"]) and figures["F1_FOLDS"]
    assert evals["stratified"]["F1_MACRO_MEAN"] == body["F1_MACRO_MEAN"]


def test_train_accepted_shape_and_location(api, trained):
    resp = api.post("/train", json={"dataset": "ds_emodb", "protocol": "speaker"})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert JOB_ID_KEYS <= set(body) and body["KIND"] == "train"
    assert body["JOB_STATUS"] in ("QUEUED", "RUNNING")
    assert body["PROGRESS"].keys() == {"DONE", "TOTAL"}
    assert resp.headers["Location"] == f"/jobs/{body['JOB_ID']}"
    done = api.wait_job(body["JOB_ID"])
    assert done["JOB_STATUS"] == "SUCCEEDED" and done["PROTOCOL"] == "speaker", done
    # the newest training is what predictions now use
    assert api.get("/models").json()["CURRENT"] == done["MODEL_VERSION"]


def test_get_train_is_kept_for_the_prototype(api, trained):
    resp = api.get("/train?dataset=ds")
    assert resp.status_code == 202, resp.text
    assert api.wait_job(resp.json()["JOB_ID"])["JOB_STATUS"] == "SUCCEEDED"


@pytest.mark.parametrize("label", ["calm", "excited", "tense"])
def test_predict_upload_with_wait_answers_200(
    api, trained, data_dir, label, redis_client, settings
):
    resp = upload(api, data_dir / "clips" / f"{label}.wav", wait=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    outbox = Outbox(redis_client, settings.key_prefix)  # the task dropped its entry itself
    wait_until(lambda: redis_client.hget(outbox.msg_key, body["JOB_ID"]) is None, 5, "outbox")
    assert redis_client.zscore(outbox.index_key, body["JOB_ID"]) is None
    assert body["JOB_STATUS"] == "SUCCEEDED" and body["KIND"] == "predict"
    assert body["FILENAME"] == f"{label}.wav"
    assert body["EMOTION"] == label
    assert body["PROBABILITY"] == max(body["PROBABILITIES"].values())
    assert abs(sum(body["PROBABILITIES"].values()) - 1) < 1e-6
    assert body["MODEL_VERSION"].startswith("v")


@pytest.mark.parametrize("ctype", ["audio/wav", "application/octet-stream", "audio/x-wav"])
def test_predict_raw_body_upload(api, trained, data_dir, ctype):
    """The clip as the whole request body (what `ser predict` sends): same job, no multipart."""
    clip = (data_dir / "clips" / "tense.wav").read_bytes()
    resp = api.post(
        "/predict?wait=30&name=take%201.wav", data=clip, headers={"Content-Type": ctype}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["JOB_STATUS"] == "SUCCEEDED" and body["EMOTION"] == "tense"
    assert body["FILENAME"] == "take 1.wav"
    # no ?wait: 202 and a job to poll; no ?name: a neutral name, path parts never kept
    queued = api.post("/predict", data=clip, headers={"Content-Type": ctype})
    assert queued.status_code == 202, queued.text
    assert api.wait_job(queued.json()["JOB_ID"])["FILENAME"] == "upload"
    odd = api.post(
        "/predict?wait=30&name=../../etc/pass%0Awd", data=clip, headers={"Content-Type": ctype}
    )
    assert odd.status_code == 200 and odd.json()["FILENAME"] == "passwd", odd.text


def test_raw_body_upload_errors(api, trained, data_dir):
    def raw(data: bytes):
        return api.post("/predict?wait=30", data=data, headers={"Content-Type": "audio/wav"})

    limit = MAX_UPLOAD_MB * 1024 * 1024

    def refused(resp):  # a body refused before its end: the connection is not reused
        assert resp.headers.get("Connection") == "close", resp.headers
        return error_of(resp, 413)

    assert refused(raw(b"RIFF" + b"\0" * limit)) == "UPLOAD_TOO_LARGE"

    def chunks():  # no Content-Length: the limit holds while reading
        yield b"RIFF"
        for _ in range(limit // 65536 + 2):
            yield b"\0" * 65536

    assert refused(raw(chunks())) == "UPLOAD_TOO_LARGE"
    # the same session goes on: nothing was sent into a connection about to close
    assert error_of(raw(b""), 415) == "AUDIO_EMPTY"
    notes = (data_dir / "clips" / "notes.wav").read_bytes()
    assert error_of(raw(notes), 415) == "AUDIO_UNREADABLE"
    silent = raw((data_dir / "clips" / "silent.wav").read_bytes())
    assert silent.status_code == 415 and silent.json()["ERROR"]["CODE"] == "AUDIO_SILENT"
    assert silent.headers.get("Connection") == "keep-alive"  # a small body: drained, reused
    # any other type is read as JSON, and refused as such
    text = api.post("/predict", data=b"hello", headers={"Content-Type": "text/plain"})
    assert error_of(text, 400) == "MALFORMED_BODY"
    # refused unread when its Content-Length is past the limit
    assert refused(raw(b"RIFF" + b"\0" * (limit + 200_000))) == "UPLOAD_TOO_LARGE"
    assert api.get("/health").status_code == 200


def test_predict_by_filename_then_poll(api, trained):
    resp = api.post("/predict", json={"filename": "clips/excited.wav"})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["JOB_ID"]
    assert resp.headers["Location"] == f"/jobs/{job_id}"
    body = api.get(f"/jobs/{job_id}?wait=30").json()
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    assert {"FILENAME", "EMOTION", "PROBABILITY", "PROBABILITIES", "MODEL_VERSION"} <= set(body)
    assert body["FILENAME"] == "clips/excited.wav" and body["EMOTION"] == "excited"


def test_symlink_inside_the_root_is_allowed(api, trained):
    resp = api.post("/predict?wait=30", json={"filename": "inside_link.wav"})
    assert resp.status_code == 200 and resp.json()["EMOTION"] == "calm", resp.text


def test_jobs_listing_filters(api, trained):
    body = api.get("/jobs?kind=predict&limit=2").json()
    assert body["COUNT"] == len(body["JOBS"]) <= 2
    assert all(j["KIND"] == "predict" for j in body["JOBS"])
    ok = api.get("/jobs?status=succeeded&limit=500").json()["JOBS"]
    assert ok and all(j["JOB_STATUS"] == "SUCCEEDED" for j in ok)
    assert error_of(api.get("/jobs?kind=bogus"), 400) == "INVALID_KIND"
    assert error_of(api.get("/jobs?status=DONE"), 400) == "INVALID_STATUS"
    assert error_of(api.get("/jobs?limit=0"), 400) == "INVALID_LIMIT"


def test_models_and_confusion_png(api, trained):
    listing = api.get("/models").json()
    assert listing["CURRENT"] and listing["COUNT"] == len(listing["MODELS"]) >= 1
    assert sum(m["CURRENT"] for m in listing["MODELS"]) == 1
    version = trained["MODEL_VERSION"]
    png = api.get(f"/models/{version}/confusion.png")
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    assert error_of(api.get("/models/v999999"), 404) == "MODEL_NOT_FOUND"
    assert error_of(api.get("/models/nope/confusion.png"), 404) == "MODEL_NOT_FOUND"


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, code",
    [
        ({"filename": "../etc/passwd"}, "INVALID_PATH"),
        ({"filename": "/etc/passwd"}, "INVALID_PATH"),
        ({"filename": "clips/../../x.wav"}, "INVALID_PATH"),
        ({"filename": "escape.wav"}, "INVALID_PATH"),
        ({"filename": "escape_dir/secret.wav"}, "INVALID_PATH"),
        ({"filename": "clips/calm\u0000.wav"}, "INVALID_PATH"),
        ({"filename": "clips/missing.wav"}, "PATH_NOT_FOUND"),
        ({"filename": "clips"}, "PATH_NOT_FOUND"),
        ({"filename": 3}, "MALFORMED_BODY"),
        ({}, "MALFORMED_BODY"),
    ],
)
def test_predict_refuses_bad_paths_with_400(api, trained, body, code):
    assert error_of(api.post("/predict", json=body), 400) == code


@pytest.mark.parametrize(
    "body, code",
    [
        ({"dataset": "../"}, "INVALID_PATH"),
        ({"dataset": "/tmp"}, "INVALID_PATH"),
        ({"dataset": "escape_dir"}, "INVALID_PATH"),
        ({"dataset": "nope"}, "PATH_NOT_FOUND"),
        ({"dataset": "ds", "protocol": "loso"}, "INVALID_PROTOCOL"),
        ({"dataset": ["ds"]}, "MALFORMED_BODY"),
    ],
)
def test_train_refuses_bad_requests_with_400(api, body, code):
    assert error_of(api.post("/train", json=body), 400) == code


def test_malformed_json_is_400(api, trained):
    headers = {"Content-Type": "application/json"}
    assert error_of(api.post("/predict", data="{nope", headers=headers), 400) == "MALFORMED_BODY"
    assert error_of(api.post("/train", data="[1, 2]", headers=headers), 400) == "MALFORMED_BODY"
    assert error_of(api.post("/predict", files={"other": ("a", b"x")}), 400) == "MALFORMED_BODY"


def test_bad_wait_is_400(api, trained):
    assert error_of(api.get("/jobs/" + "0" * 32 + "?wait=soon"), 400) == "INVALID_WAIT"
    assert error_of(api.get("/jobs/" + "0" * 32 + "?wait=-1"), 400) == "INVALID_WAIT"
    # the refusal says what is accepted: above MAX_WAIT is held at it, not refused
    message = api.get("/jobs/" + "0" * 32 + "?wait=abc").json()["ERROR"]["MESSAGE"]
    assert "0 or more" in message and "above 30 are held at 30" in message, message
    assert api.get(f"/jobs/{trained['JOB_ID']}?wait=100").status_code == 200


def test_unknown_job_is_404_never_pending(api):
    assert error_of(api.get("/jobs/" + "0" * 32), 404) == "JOB_NOT_FOUND"
    assert error_of(api.get("/jobs/not-a-job"), 404) == "JOB_NOT_FOUND"
    assert error_of(api.delete("/jobs/" + "f" * 32), 404) == "JOB_NOT_FOUND"
    assert error_of(api.get("/nowhere"), 404) == "NOT_FOUND"
    assert error_of(api.put("/predict"), 405) == "METHOD_NOT_ALLOWED"


def test_upload_too_large_is_413(api, trained):
    big = b"RIFF" + b"\0" * (MAX_UPLOAD_MB * 1024 * 1024 + 10)
    resp = api.post("/predict", files={"file": ("big.wav", big)})
    assert error_of(resp, 413) == "UPLOAD_TOO_LARGE"


def test_not_audio_is_415(api, trained, data_dir):
    assert error_of(upload(api, data_dir / "clips" / "notes.wav"), 415) == "AUDIO_UNREADABLE"
    empty = api.post("/predict", files={"file": ("e.wav", b"")})
    assert error_of(empty, 415) == "AUDIO_EMPTY"
    by_name = api.post("/predict", json={"filename": "clips/notes.wav"})
    assert error_of(by_name, 415) == "AUDIO_UNREADABLE"


def test_unanalysable_audio_fails_the_job_with_its_code(api, trained, data_dir):
    resp = upload(api, data_dir / "clips" / "silent.wav", wait=30)
    assert resp.status_code == 415, resp.text
    body = resp.json()
    assert body["JOB_STATUS"] == "FAILED" and body["ERROR"]["CODE"] == "AUDIO_SILENT"
    # the same record, later, through /jobs (200: the job itself was found)
    again = api.get(f"/jobs/{body['JOB_ID']}")
    assert again.status_code == 200 and again.json()["ERROR"]["CODE"] == "AUDIO_SILENT"
    # a truncated header reaches the worker and fails there, not in the API
    raw = (data_dir / "clips" / "calm.wav").read_bytes()[:60]
    resp = api.post("/predict?wait=30", files={"file": ("cut.wav", raw)})
    assert resp.status_code == 415 and resp.json()["JOB_STATUS"] == "FAILED", resp.text


# -- single flight and cancel -----------------------------------------------------------------
def test_single_flight_training(api, trained):
    first = api.post("/train", json={"dataset": "ds_big"})
    second = api.post("/train", json={"dataset": "ds_big"})
    assert first.status_code == second.status_code == 202
    assert first.json()["JOB_ID"] == second.json()["JOB_ID"]
    assert second.headers.get("X-Single-Flight") == "joined"
    # another protocol is another training; this folder layout names no speakers, which
    # only the worker finds out (the API checks the path and that labels are there, cheaply)
    other = api.post("/train", json={"dataset": "ds_big", "protocol": "speaker"})
    assert other.status_code == 202, other.text
    assert other.json()["JOB_ID"] != first.json()["JOB_ID"]
    assert "X-Single-Flight" not in other.headers
    done = api.wait_job(first.json()["JOB_ID"])
    assert done["JOB_STATUS"] == "SUCCEEDED", done
    refused = api.wait_job(other.json()["JOB_ID"])
    assert refused["JOB_STATUS"] == "FAILED", refused
    assert refused["ERROR"]["CODE"] == "DATASET_NO_SPEAKERS", refused
    # after the end, a new request is a new training
    third = api.post("/train", json={"dataset": "ds_big"})
    assert third.json()["JOB_ID"] != first.json()["JOB_ID"]
    assert api.wait_job(third.json()["JOB_ID"])["JOB_STATUS"] == "SUCCEEDED"


def test_cancel_queued_prediction_and_running_training(api, trained, redis_client, settings):
    before = api.get("/models").json()["COUNT"]
    train = api.post("/train", json={"dataset": "ds_cancel"}).json()
    # one worker process: this prediction waits behind the training
    queued = api.post("/predict", json={"filename": "clips/calm.wav"}).json()
    resp = api.delete(f"/jobs/{queued['JOB_ID']}")
    assert resp.status_code == 200 and resp.json()["JOB_STATUS"] == "CANCELLED"
    again = api.delete(f"/jobs/{queued['JOB_ID']}")
    assert again.status_code == 200 and again.json()["JOB_STATUS"] == "CANCELLED"
    # cancel the training once it is running
    deadline = time.monotonic() + 60
    while api.get(f"/jobs/{train['JOB_ID']}").json()["JOB_STATUS"] == "QUEUED":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    resp = api.delete(f"/jobs/{train['JOB_ID']}")
    assert resp.status_code == 200 and resp.json()["JOB_STATUS"] == "CANCELLED", resp.text
    # the worker notices, releases the single-flight lock and publishes nothing
    lock = f"{settings.key_prefix}lock:train:stratified:auto:default:ds_cancel"
    deadline = time.monotonic() + 60
    while redis_client.exists(lock):
        assert time.monotonic() < deadline, "the cancelled training never stopped"
        time.sleep(0.05)
    assert api.get("/models").json()["COUNT"] == before
    # the skipped prediction stays cancelled once the worker reaches it
    ping = api.post("/predict?wait=30", json={"filename": "clips/calm.wav"})
    assert ping.status_code == 200
    body = api.get(f"/jobs/{queued['JOB_ID']}").json()
    assert body["JOB_STATUS"] == "CANCELLED" and "EMOTION" not in body
    # a finished job cannot be cancelled
    assert error_of(api.delete(f"/jobs/{ping.json()['JOB_ID']}"), 409) == "JOB_FINISHED"


# -- the contract: closed requests, closed responses ------------------------------------------
def queued_state(redis_client, settings) -> tuple:
    """Everything a queued request leaves behind: job records and task messages."""
    jobs = JobStore(redis_client, settings.key_prefix, settings.job_ttl)
    outbox = Outbox(redis_client, settings.key_prefix)
    return (
        redis_client.zcard(jobs.index_key),
        redis_client.zcard(outbox.index_key),
        redis_client.hlen(outbox.msg_key),
        [r["id"] for r in jobs.list(limit=20)],
    )


@pytest.mark.parametrize(
    "method, path, kwargs, field",
    [
        ("post", "/train", {"json": {"datset": "ds"}}, "datset"),
        ("post", "/train", {"json": {"dataset": "ds", "repeat": 2}}, "repeat"),
        ("get", "/train?dataset=ds&protocl=speaker", {}, "protocl"),
        ("post", "/predict", {"json": {"filename": "clips/calm.wav", "speeker": "a"}}, "speeker"),
        ("post", "/predict", {"json": {"filenme": "clips/calm.wav"}}, "filenme"),
        ("post", "/predict?wiat=30", {"json": {"filename": "clips/calm.wav"}}, "wiat"),
        ("post", "/score", {"json": {"folder": "clips", "recursiv": False}}, "recursiv"),
        ("get", "/jobs?kinds=train", {}, "kinds"),
    ],
)
def test_unknown_field_is_400_and_queues_nothing(
    api, trained, redis_client, settings, method, path, kwargs, field
):
    before = queued_state(redis_client, settings)
    resp = getattr(api, method)(path, **kwargs)
    assert error_of(resp, 400) == "UNKNOWN_FIELD"
    assert repr(field) in resp.json()["ERROR"]["MESSAGE"], resp.text
    assert queued_state(redis_client, settings) == before  # no job record, no message


def test_unknown_multipart_part_is_400_and_queues_nothing(
    api, trained, data_dir, redis_client, settings
):
    before = queued_state(redis_client, settings)
    clip = (data_dir / "clips" / "calm.wav").read_bytes()
    resp = api.post("/predict", files={"file": ("a.wav", clip)}, data={"speakr": "a"})
    assert error_of(resp, 400) == "UNKNOWN_FIELD" and "'speakr'" in resp.text
    assert queued_state(redis_client, settings) == before


def response_validator(doc: dict, path: str, method: str, status: int):
    """A JSON Schema validator of the JSON body ``doc`` declares for this answer."""
    from jsonschema import Draft202012Validator

    content = doc["paths"][path][method]["responses"][str(status)]["content"]
    schema = dict(content["application/json"]["schema"], components=doc["components"])
    return Draft202012Validator(schema)


def test_every_response_body_matches_its_closed_schema(
    api, trained, data_dir, redis_client, settings
):
    """Real bodies of every JSON route (jobs of each kind in each status) validate against
    the served document, whose response objects are closed: an undeclared field fails."""
    doc = api.get("/openapi.json").json()
    version = trained["MODEL_VERSION"]
    ok = upload(api, data_dir / "clips" / "calm.wav", wait=30)
    failed = upload(api, data_dir / "clips" / "silent.wav", wait=30)
    queued = api.post("/predict", json={"filename": "clips/tense.wav"})
    score = api.post("/score", json={"folder": "clips", "speakers": "folder"})
    scored = api.wait_job(score.json()["JOB_ID"])
    assert scored["JOB_STATUS"] == "SUCCEEDED", scored
    # a record no message will ever run: QUEUED for as long as the test needs, then cancelled
    jobs = JobStore(redis_client, settings.key_prefix, settings.job_ttl)
    waiting = jobs.create("train", {"dataset": "ds", "protocol": "stratified"})["id"]
    still = api.get(f"/jobs/{waiting}")
    cancelled = api.delete(f"/jobs/{waiting}")
    assert still.json()["JOB_STATUS"] == "QUEUED" and cancelled.json()["JOB_STATUS"] == "CANCELLED"
    answers = [
        ("/health", "get", api.get("/health")),
        ("/models", "get", api.get("/models")),
        ("/models/{version}", "get", api.get(f"/models/{version}")),
        ("/jobs", "get", api.get("/jobs?limit=500")),
        ("/jobs/{job_id}", "get", api.get(f"/jobs/{trained['JOB_ID']}")),
        ("/jobs/{job_id}", "get", still),
        ("/jobs/{job_id}", "delete", cancelled),
        ("/jobs/{job_id}", "get", api.get(f"/jobs/{scored['JOB_ID']}")),
        ("/jobs/{job_id}/results", "get", api.get(f"/jobs/{scored['JOB_ID']}/results")),
        ("/predict", "post", ok),
        ("/predict", "post", failed),
        ("/predict", "post", queued),
        ("/score", "post", score),
        ("/jobs", "get", api.get("/jobs?kind=nope")),
    ]
    kinds = {j["KIND"] for j in answers[3][2].json()["JOBS"]}
    statuses = {j["JOB_STATUS"] for j in answers[3][2].json()["JOBS"]}
    assert (
        kinds == {"train", "predict", "score"} and {"SUCCEEDED", "FAILED", "CANCELLED"} <= statuses
    )
    for path, method, resp in answers:
        validator = response_validator(doc, path, method, resp.status_code)
        body = resp.json()
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, (path, resp.status_code, errors[:3])
        # the check can fail: one undeclared field, at the top or inside a job, is refused
        assert not validator.is_valid(dict(body, UNDECLARED=1)), path
    listing = answers[3][2].json()
    listing["JOBS"][0]["UNDECLARED"] = 1
    assert not response_validator(doc, "/jobs", "get", 200).is_valid(listing)


def test_the_api_refuses_to_serve_an_undeclared_field(service_env, trained, monkeypatch):
    """A route whose body strays from its model answers 500, never the stray field."""
    from api import models

    real = models.model_body
    monkeypatch.setattr(models, "model_body", lambda *a: dict(real(*a), UNDECLARED=1))
    resp = make_client(service_env, SER_API_KEY="").get("/models")
    assert resp.status_code == 500 and resp.get_json()["ERROR"]["CODE"] == "INTERNAL_ERROR"
    assert "UNDECLARED" not in resp.get_data(as_text=True)
