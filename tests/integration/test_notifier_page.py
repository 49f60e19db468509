"""The notifier serves the web page: `/` with its config inline, its files, /favicon.ico; nothing else of the
package's folder."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reportflow_common.settings import NOTIFIER, load_settings

STATIC = Path(__file__).resolve().parents[2] / "services" / "notifier" / "reportflow_notifier" / "static"


@pytest.fixture(scope="module")
def make_client(infra):
    from reportflow_notifier.app import create_app

    def make(**env):
        settings = load_settings(NOTIFIER, infra.base_env(JWKS_URL="http://127.0.0.1:1/.well-known/jwks.json", **env))
        return create_app(settings).test_client()
    return make


class Assets(HTMLParser):
    """The page's script and stylesheet references, and its inline JSON config."""

    def __init__(self):
        super().__init__()
        self.refs, self.config, self._in_config, self.inline_scripts = [], None, False, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("id") == "page-config":
            assert a.get("type") == "application/json"
            self._in_config = True
        elif tag == "script":
            if a.get("src"):
                self.refs.append(a["src"])
            else:
                self.inline_scripts += 1
        elif tag in ("link", "img") and (a.get("href") or a.get("src")):
            self.refs.append(a.get("href") or a.get("src"))

    def handle_data(self, data):
        if self._in_config:
            self.config = json.loads(data)

    def handle_endtag(self, tag):
        self._in_config = False


def parse(html: str) -> Assets:
    assets = Assets()
    assets.feed(html)
    return assets


def test_page_carries_its_config_and_a_strict_policy(make_client):
    resp = make_client().get("/")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    page = parse(resp.get_data(as_text=True))
    assert page.config == {"demo_users": [], "socket_transports": ["websocket", "polling"]}
    assert page.inline_scripts == 0  # so script-src 'self' costs nothing
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert resp.headers["X-Request-ID"]


def test_demo_accounts_appear_only_when_configured_and_cannot_break_out_of_the_page(make_client):
    hostile = "p</script><script>alert(1)</script>"
    resp = make_client(DEMO_USERS=f"administrator@test.com:password1,x@test.com:{hostile}").get("/")
    html = resp.get_data(as_text=True)
    assert "<script>alert(1)" not in html
    assert parse(html).config["demo_users"] == [{"email": "administrator@test.com", "password": "password1"},
                                                {"email": "x@test.com", "password": hostile}]


def test_every_file_the_page_loads_is_served_with_a_fitting_type(make_client):
    client = make_client()
    refs = parse(client.get("/").get_data(as_text=True)).refs
    assert {"/static/app.css", "/static/js/main.js", "/static/vendor/socket.io.min.js", "/favicon.ico"} <= set(refs)
    modules = {"/static/js/main.js"}
    pending = ["/static/js/main.js"]
    while pending:  # the ES modules main.js imports, transitively
        source = (STATIC / pending.pop().removeprefix("/static/")).read_text()
        for name in re.findall(r'^import [^;]*? from "\./([\w.]+)";', source, re.M):
            if (path := f"/static/js/{name}") not in modules:
                modules.add(path)
                pending.append(path)
    assert modules >= {"/static/js/main.js", "/static/js/live.js", "/static/js/session.js", "/static/js/model.js"}
    types = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml", ".ico": "image/vnd.microsoft.icon"}
    for ref in set(refs) | modules:
        resp = client.get(ref)
        assert resp.status_code == 200, ref
        assert resp.mimetype == types[Path(ref).suffix], (ref, resp.mimetype)


def test_favicon_is_an_icon(make_client):
    resp = make_client().get("/favicon.ico")
    assert resp.status_code == 200 and resp.data[:4] == b"\x00\x00\x01\x00"  # ICO header: reserved 0, type 1


@pytest.mark.parametrize("path", ["/static/../page.py", "/static/%2e%2e/page.py", "/static/nope.js",
                                  "/templates/index.html", "/index.html"])
def test_nothing_else_is_served(make_client, path):
    resp = make_client().get(path)
    assert resp.status_code == 404
    assert resp.mimetype == "application/problem+json" and resp.json["code"] == "not_found"
