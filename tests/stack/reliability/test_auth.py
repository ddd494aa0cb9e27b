"""With SER_API_KEY set, every route but /health refuses a missing or wrong key with 401, the
comparison is constant-time, and the key appears in no log."""

from __future__ import annotations

import ast
import inspect
import re

import requests

from tests.stack.reliability.conftest import API_KEY, error_of

WRONG = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer wrong",
    f"Bearer {API_KEY[:-1]}",
    f"Bearer {API_KEY}x",
    f"Bearer {API_KEY.upper()}",
    f"Basic {API_KEY}",
    f"Token {API_KEY}",
    API_KEY,
    f"Bearer\t{API_KEY[:5]}",
]


def routes(stack) -> list[tuple[str, str]]:
    """Every (method, concrete path) of the Flask app, read from its URL map."""
    import api as api_pkg

    config = {k: v for k, v in stack.env.items() if k.startswith("SER_")}
    app = api_pkg.create_app(config)
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?job_id>", "0" * 32, rule.rule)
        path = re.sub(r"<(?:[^:>]+:)?version>", "v1", path)
        path = re.sub(r"<[^>]+>", "x", path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return out


def test_every_route_but_health_refuses_missing_or_wrong_keys(healthy):
    base = healthy.api_server.base
    found = routes(healthy)
    assert len(found) >= 10, found
    checked = 0
    for method, path in found:
        for header in WRONG:
            headers = {"Authorization": header} if header is not None else {}
            resp = requests.request(method, base + path, headers=headers, timeout=20)
            if path == "/health":
                assert resp.status_code in (200, 503), (method, path, resp.status_code)
                continue
            assert error_of(resp, 401) == "UNAUTHORIZED", (method, path, header)
            assert resp.headers.get("WWW-Authenticate") == "Bearer"
            checked += 1
    assert checked >= 9 * len(WRONG)


def test_the_right_key_passes(healthy):
    for header in (f"Bearer {API_KEY}", f"bearer {API_KEY}", f"Bearer  {API_KEY} "):
        resp = requests.get(
            healthy.api_server.base + "/models", headers={"Authorization": header}, timeout=10
        )
        assert resp.status_code == 200, (header, resp.text)


def test_key_comparison_is_constant_time():
    """The key check uses hmac.compare_digest, never == on the secret."""
    from api import routes as r

    source = inspect.getsource(r._authenticate)
    tree = ast.parse(source.lstrip())
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "hmac.compare_digest" in calls, calls
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    for node in compares:
        assert "key" not in ast.unparse(node).replace("not key", ""), ast.unparse(node)


def test_key_is_never_logged_or_served(healthy):
    api = healthy.api
    # errors, successes and refusals all pass through the logs
    api.get("/jobs?limit=5")
    api.post("/predict", data="{nope", headers={"Content-Type": "application/json"})
    requests.get(
        healthy.api_server.base + "/models",
        headers={"Authorization": f"Bearer {API_KEY}x"},
        timeout=10,
    )
    assert API_KEY not in api.get("/openapi.json").text
    assert API_KEY not in requests.get(healthy.api_server.base + "/health", timeout=10).text
    assert API_KEY not in healthy.all_logs()
    # the worker and API settings reprs hide it too
    from ser import config

    assert API_KEY not in repr(config.load(healthy.env))
