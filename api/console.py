"""The web console: one HTML page at ``/`` whose JavaScript (api/static/console/) calls the
public API like any client, and ``/docs``, Swagger UI over the live ``/openapi.json`` with its
assets from the pinned flask-swagger-ui package (served under /docs/assets/, never a CDN). The
pages and their assets are open without the API key (they hold no data; the pages ask for the
key and send it with every API call)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from flask import Blueprint, current_app, send_from_directory

from api.openapi import operation

SWAGGER_UI = Path(find_spec("flask_swagger_ui").origin).parent / "dist"  # Apache-2.0

bp = Blueprint("console", __name__)
# Swagger UI's files, by Flask's static view of this blueprint: endpoint "docs.static".
docs_assets = Blueprint(
    "docs", __name__, static_folder=str(SWAGGER_UI), static_url_path="/docs/assets"
)


@bp.route("/", methods=["GET"])
@operation(
    "get",
    "The web console (HTML; no API key needed: its API calls carry the key)",
    public=True,
    responses={200: ({"text/html": {"type": "string"}}, "the console page")},
)
def index():
    """The console's page (its views are sections selected by the URL fragment)."""
    folder = current_app.static_folder + "/console"
    response = send_from_directory(folder, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'"
    )
    return response


@bp.route("/docs", methods=["GET"])
@operation(
    "get",
    "Interactive documentation of this API: Swagger UI over /openapi.json (HTML; no API key "
    "needed to load it)",
    public=True,
    responses={200: ({"text/html": {"type": "string"}}, "the documentation page")},
)
def docs():
    """Swagger UI's page; api/static/console/docs.js loads the document with the tab's key."""
    folder = current_app.static_folder + "/console"
    return send_from_directory(folder, "docs.html", max_age=0)
