"""The web console: one HTML page at ``/`` whose JavaScript (api/static/console/) calls the
public API like any client. The page and its assets are open without the API key (they hold
no data; the page asks for the key and sends it with every API call)."""

from __future__ import annotations

from flask import Blueprint, current_app, send_from_directory

from api.openapi import operation

bp = Blueprint("console", __name__)


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
