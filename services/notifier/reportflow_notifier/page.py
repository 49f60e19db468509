"""The web page the notifier serves: `/` with its public config, its files under /static, and /favicon.ico.

create_app registers this blueprint; the page itself (static/js) talks to the APIs and the socket on the
same origin. Nothing here knows about sockets or events.
"""
from __future__ import annotations

from flask import Blueprint, Response, render_template

from reportflow_common.settings import Settings

# script-src 'self': no inline script runs (the config below is an inert JSON block). connect-src allows
# http(s): downloads follow a redirect to the storage's presigned URL, which may be another origin (MinIO).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self' http: https: ws: wss:; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'; object-src 'none'")


def page_config(settings: Settings) -> dict:
    """What the page needs to know of the server before anyone signs in; every field is public.
    The socket tries WebSocket first (no sticky sessions needed), long-polling only where this notifier allows it."""
    return {"demo_users": [{"email": email, "password": password} for email, password in settings.demo_accounts],
            "socket_transports": [t for t in ("websocket", "polling") if t in settings.transports]}


def page_blueprint(settings: Settings) -> Blueprint:
    """Called once by create_app; `settings` decides what the page's config says."""
    bp = Blueprint("page", __name__, static_folder="static", static_url_path="/static", template_folder="templates")
    config = page_config(settings)

    @bp.get("/")
    def index():
        resp = Response(render_template("index.html", page_config=config), mimetype="text/html")
        resp.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    @bp.get("/favicon.ico")
    def favicon():
        return bp.send_static_file("favicon.ico")

    return bp
