"""Hostile HTTP: malformed and oversized bodies, wrong content types, odd file names, paths that
try to leave the data root, unknown ids, wrong methods. Always a JSON error with a stable code,
never a 500 (tests/stack/test_http.py has the basic cases; these are the nastier ones)."""

from __future__ import annotations

import os

import pytest
import requests

from tests.stack.reliability.conftest import MAX_UPLOAD_MB, error_of

NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "path, data, ctype, code",
    [
        ("/predict", "{nope", "application/json", "MALFORMED_BODY"),
        ("/predict", '"just a string"', "application/json", "MALFORMED_BODY"),
        ("/predict", "null", "application/json", "MALFORMED_BODY"),
        ("/predict", b"\xff\xfe\x00{", "application/json", "MALFORMED_BODY"),
        ("/predict", NESTED, "application/json", "MALFORMED_BODY"),
        ("/predict", '{"filename": {"a": 1}}', "application/json", "MALFORMED_BODY"),
        ("/predict", '{"filename": ""}', "application/json", "MALFORMED_BODY"),
        ("/predict", "<predict file='a.wav'/>", "application/xml", "MALFORMED_BODY"),
        ("/predict", "filename=clips/calm.wav", "application/x-www-form-urlencoded", None),
        ("/predict", "--x\r\n\r\n", "multipart/form-data", "MALFORMED_BODY"),
        ("/predict", "--x--\r\n", "multipart/form-data; boundary=x", "MALFORMED_BODY"),
        ("/train", NESTED, "application/json", "MALFORMED_BODY"),
        ("/train", "[1, 2]", "application/json", "MALFORMED_BODY"),
        ("/train", '{"protocol": 5}', "application/json", "MALFORMED_BODY"),
        ("/train", '{"features": "mfcc"}', "application/json", "INVALID_FEATURES"),
        ("/train", "\x00\x00", "text/plain", "MALFORMED_BODY"),
    ],
)
def test_malformed_bodies_are_400(healthy, path, data, ctype, code):
    resp = healthy.api.post(path, data=data, headers={"Content-Type": ctype})
    got = error_of(resp, 400)
    if code is not None:
        assert got == code


@pytest.mark.parametrize("path", ["/predict", "/train"])
def test_huge_bodies_are_413(healthy, path):
    body = b'{"filename": "' + b"a" * (MAX_UPLOAD_MB * 1024 * 1024 + 200_000) + b'"}'
    resp = healthy.api.post(path, data=body, headers={"Content-Type": "application/json"})
    assert error_of(resp, 413) == "UPLOAD_TOO_LARGE"


def test_huge_chunked_body_is_413(healthy):
    """No Content-Length (chunked): the limit still holds while reading."""

    def chunks():
        for _ in range(MAX_UPLOAD_MB + 2):
            yield b"x" * (1024 * 1024)

    resp = healthy.api.post("/predict", data=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code in (400, 413), resp.text
    assert resp.json()["ERROR"]["CODE"] in ("UPLOAD_TOO_LARGE", "MALFORMED_BODY")


@pytest.mark.parametrize(
    "name",
    [
        "émotion 😀 ünïcode.wav",
        "nul\x00byte.wav",
        "../../../etc/passwd",
        "/absolute/path/clip.wav",
        "C:\\Windows\\system32\\clip.wav",
        "\u202egnp.wav",  # right-to-left override
        "a" * 1000 + ".wav",
        "new\r\nline.wav",
    ],
)
def test_upload_file_names_are_cleaned(healthy, name):
    data = (healthy.data_dir / "clips" / "calm.wav").read_bytes()
    resp = healthy.api.post("/predict?wait=20", files={"file": (name, data)})
    assert resp.status_code == 200, resp.text
    shown = resp.json()["FILENAME"]
    assert "/" not in shown and "\\" not in shown and "\x00" not in shown and "\n" not in shown
    assert 0 < len(shown) <= 255


@pytest.fixture(scope="module")
def odd_files(stack):
    clips = stack.data_dir / "clips"
    unicode_name = clips / "émotion 😀.wav"
    unicode_name.write_bytes((clips / "calm.wav").read_bytes())
    locked = clips / "locked.wav"
    locked.write_bytes((clips / "calm.wav").read_bytes())
    locked.chmod(0)
    return {"unicode": unicode_name.relative_to(stack.data_dir).as_posix()}


@pytest.mark.parametrize(
    "filename, code",
    [
        ("../../etc/passwd", "INVALID_PATH"),
        ("clips/../../etc/passwd", "INVALID_PATH"),
        ("/etc/passwd", "INVALID_PATH"),
        ("~root/.bashrc", "INVALID_PATH"),
        ("escape.wav", "INVALID_PATH"),  # symlink to a file outside
        ("escape_dir/secret.wav", "INVALID_PATH"),  # symlinked directory outside
        ("clips/up_link.wav", "INVALID_PATH"),  # relative symlink climbing out
        ("abs_link.wav", "INVALID_PATH"),  # absolute symlink to /etc/passwd
        ("loop_a", "INVALID_PATH"),  # symlink loop
        ("clips/calm.wav\x00.txt", "INVALID_PATH"),
        ("clips/\ud800.wav", "INVALID_PATH"),  # lone surrogate: not encodable as a path
        ("x" * 5000, "INVALID_PATH"),
        ("%2e%2e/%2e%2e/etc/passwd", "PATH_NOT_FOUND"),  # no URL decoding of names
        ("..\\..\\etc\\passwd", "PATH_NOT_FOUND"),  # a backslash is just a character
        ("clips/nope ünï.wav", "PATH_NOT_FOUND"),
        ("clips/", "PATH_NOT_FOUND"),
        (" ", "INVALID_PATH"),
    ],
)
def test_predict_paths_outside_or_odd_are_400(healthy, odd_files, filename, code):
    assert error_of(healthy.api.post("/predict", json={"filename": filename}), 400) == code


@pytest.mark.parametrize(
    "dataset, code",
    [
        ("../..", "INVALID_PATH"),
        ("/etc", "INVALID_PATH"),
        ("escape_dir", "INVALID_PATH"),
        ("loop_a", "INVALID_PATH"),
        ("ds\x00", "INVALID_PATH"),
        ("\udcff", "INVALID_PATH"),
        ("clips/calm.wav", "PATH_NOT_FOUND"),
    ],
)
def test_train_paths_outside_or_odd_are_400(healthy, dataset, code):
    assert error_of(healthy.api.post("/train", json={"dataset": dataset}), 400) == code
    if dataset.isascii():  # a lone surrogate cannot even be put in a URL
        assert error_of(healthy.api.get("/train", params={"dataset": dataset}), 400) == code


def test_unreadable_and_unicode_files(healthy, odd_files):
    resp = healthy.api.post("/predict?wait=20", json={"filename": odd_files["unicode"]})
    assert resp.status_code == 200 and resp.json()["FILENAME"] == odd_files["unicode"], resp.text
    if os.geteuid() != 0:  # root reads anything
        resp = healthy.api.post("/predict", json={"filename": "clips/locked.wav"})
        assert error_of(resp, 400) == "PATH_NOT_READABLE"


@pytest.mark.parametrize(
    "job_id",
    ["0" * 32, "F" * 32, "x" * 2000, "ünïcødé", "%00", "..%2fmodels", "0" * 31 + "\u0660"],
)
def test_unknown_job_ids_are_404(healthy, job_id):
    # "%2f" decodes to "/", which no job route matches: the router's own 404
    codes = ("JOB_NOT_FOUND", "NOT_FOUND") if "%2f" in job_id else ("JOB_NOT_FOUND",)
    assert error_of(healthy.api.get(f"/jobs/{job_id}"), 404) in codes
    assert error_of(healthy.api.get(f"/jobs/{job_id}?wait=1"), 404) in codes
    assert error_of(healthy.api.delete(f"/jobs/{job_id}"), 404) in codes


@pytest.mark.parametrize(
    "version", ["v0", "v99999999", "V1", "v1 ", "v-1", "v" + "9" * 40, "../current", "current"]
)
def test_unknown_model_versions_are_404(healthy, version):
    # "../current" is normalised away by the client: the router's own 404
    codes = ("MODEL_NOT_FOUND", "NOT_FOUND") if ".." in version else ("MODEL_NOT_FOUND",)
    for path in (f"/models/{version}", f"/models/{version}/confusion.png"):
        assert error_of(healthy.api.get(path), 404) in codes, path
    assert error_of(healthy.api.post(f"/models/{version}/activate"), 404) in codes


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/predict"),
        ("PUT", "/predict"),
        ("DELETE", "/predict"),
        ("PATCH", "/train"),
        ("DELETE", "/train"),
        ("POST", "/jobs"),
        ("PUT", "/jobs/" + "0" * 32),
        ("POST", "/jobs/" + "0" * 32),
        ("POST", "/models"),
        ("PUT", "/models/v1"),
        ("GET", "/models/v1/activate"),
        ("POST", "/health"),
        ("DELETE", "/openapi.json"),
    ],
)
def test_wrong_methods_are_405_with_allow(healthy, method, path):
    resp = getattr(healthy.api, method.lower())(path)
    assert error_of(resp, 405) == "METHOD_NOT_ALLOWED"
    assert resp.headers.get("Allow")


@pytest.mark.parametrize(
    "query, code",
    [
        ("/jobs/" + "0" * 32 + "?wait=nan", "INVALID_WAIT"),
        ("/jobs/" + "0" * 32 + "?wait=inf", "INVALID_WAIT"),
        ("/jobs/" + "0" * 32 + "?wait=1e400", "INVALID_WAIT"),
        ("/jobs/" + "0" * 32 + "?wait=%00", "INVALID_WAIT"),
        ("/jobs?limit=0", "INVALID_LIMIT"),
        ("/jobs?limit=1e3", "INVALID_LIMIT"),
        ("/jobs?limit=99999999999999999999999", "INVALID_LIMIT"),
        ("/jobs?kind=%00", "INVALID_KIND"),
        ("/jobs?status=done", "INVALID_STATUS"),
    ],
)
def test_bad_query_values_are_400(healthy, query, code):
    assert error_of(healthy.api.get(query), 400) == code


def test_unknown_paths_and_odd_headers_are_json(healthy):
    assert error_of(healthy.api.get("/nowhere/../../etc/passwd"), 404) == "NOT_FOUND"
    assert error_of(healthy.api.get("/%00"), 404) == "NOT_FOUND"
    base = healthy.api_server.base
    resp = requests.get(base + "/jobs", headers={"Authorization": "Bearer " + "é" * 10}, timeout=10)
    assert error_of(resp, 401) == "UNAUTHORIZED"
    resp = requests.get(base + "/jobs", headers={"Authorization": "x" * 6000}, timeout=10)
    assert resp.status_code in (400, 401, 431), resp.status_code
