"""With SER_API_KEY set, every route of the app's URL map but the public ones refuses a missing
or wrong key with 401, the comparison is constant-time, and the key appears in no log."""

from __future__ import annotations

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


def app_of(stack):
    """The API's Flask app built with the stack's settings."""
    import api as api_pkg

    return api_pkg.create_app({k: v for k, v in stack.env.items() if k.startswith("SER_")})


def routes(app) -> list[tuple[str, str, str]]:
    """Every (endpoint, method, concrete path) of the Flask app, read from its URL map."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue  # Flask's file views (the console's assets, Swagger UI's): checked below
        path = re.sub(r"<(?:[^:>]+:)?job_id>", "0" * 32, rule.rule)
        path = re.sub(r"<(?:[^:>]+:)?version>", "v1", path)
        path = re.sub(r"<[^>]+>", "x", path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, path))
    return out


def test_every_route_but_the_public_ones_refuses_missing_or_wrong_keys(healthy):
    from api.middleware import PUBLIC

    base = healthy.api_server.base
    found = routes(app_of(healthy))
    assert len(found) >= 14, found
    # widening it is a decision: the probes, and the web console's page and static assets
    assert PUBLIC == {
        "meta.health",
        "meta.ready",
        "console.index",
        "console.docs",
        "static",
        "docs.static",
    }
    checked = 0
    for endpoint, method, path in found:
        for header in WRONG:
            headers = {"Authorization": header} if header is not None else {}
            resp = requests.request(method, base + path, headers=headers, timeout=20)
            if endpoint in PUBLIC:
                assert resp.status_code in (200, 503), (method, path, resp.status_code)
                continue
            assert error_of(resp, 401) == "UNAUTHORIZED", (method, path, header)
            assert resp.headers.get("WWW-Authenticate") == "Bearer"
            checked += 1
    assert checked == sum(endpoint not in PUBLIC for endpoint, _, _ in found) * len(WRONG)
    for asset in (  # the file views: open
        "/static/console/console.js",
        "/static/console/index.html",
        "/docs/assets/swagger-ui-bundle.js",
    ):
        resp = requests.get(base + asset, timeout=20)
        assert resp.status_code == 200, (asset, resp.status_code)


def test_the_document_marks_exactly_the_public_routes_open(healthy):
    from api.middleware import PUBLIC

    app = app_of(healthy)
    doc = healthy.api.get("/openapi.json").json()
    for endpoint, method, _ in routes(app):
        rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
        op = doc["paths"][rule.rule.replace("<", "{").replace(">", "}")][method.lower()]
        assert (op.get("security") == []) == (endpoint in PUBLIC), (endpoint, method)
        assert (endpoint in PUBLIC) == ("401" not in op["responses"]), (endpoint, method)


def test_the_right_key_passes(healthy):
    for header in (f"Bearer {API_KEY}", f"bearer {API_KEY}", f"Bearer  {API_KEY} "):
        resp = requests.get(
            healthy.api_server.base + "/models", headers={"Authorization": header}, timeout=10
        )
        assert resp.status_code == 200, (header, resp.text)


def test_key_comparison_is_constant_time(healthy, monkeypatch):
    """Every request's key goes through hmac.compare_digest, right or wrong, of any length."""
    from api import middleware

    seen = []
    real = middleware.hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(middleware.hmac, "compare_digest", spy)
    client = app_of(healthy).test_client()
    for given, status in ((API_KEY, 200), ("x" * len(API_KEY), 401), ("x", 401)):
        resp = client.get("/models", headers={"Authorization": f"Bearer {given}"})
        assert resp.status_code == status, resp.get_data(as_text=True)
        assert seen.pop() == (given.encode(), API_KEY.encode())


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
