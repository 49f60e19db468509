"""The nginx stand-in (deploy/ingress/render.py), generated from the chart's HTTPRoutes and from its Ingress,
routes as Kubernetes would: every public path to its component and nothing else, the Socket.IO session kept
on one notifier by the cookie the chart asks for (Envoy Gateway's shape for the HTTPRoute, ingress-nginx's for
the Ingress), no cookie at all for a WebSocket-only notifier. Stand-in upstreams answer with their own name.
"""
from __future__ import annotations

import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from support.ingress import SOURCE_VALUES, Ingress, chart_routes, render

from .test_chart import CHART


class Echo(BaseHTTPRequestHandler):
    def answer(self):
        body = json.dumps({"upstream": self.server.name, "port": self.server.server_address[1]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def upstreams():
    if not shutil.which("nginx") and not shutil.which("/usr/sbin/nginx"):
        pytest.skip("nginx is not installed (apt-get install -y nginx)")
    servers, found = [], {}
    for name in ("auth", "reports", "notifier", "notifier", "s3"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        server.name = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        found.setdefault(name, []).append(f"127.0.0.1:{server.server_address[1]}")
    yield found
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=["gateway", "ingress"])
def stand_in(request, upstreams, tmp_path):
    ingress = Ingress(tmp_path, upstreams, source=request.param)
    ingress.start()
    yield ingress
    ingress.stop()


def expected(routes, path: str) -> str | None:
    """Kubernetes' matching, independently of the renderer: the longest matching path wins (Exact before
    Prefix); Prefix matches whole path elements."""
    best = None
    for r in routes:
        p = r.path.rstrip("/") or "/"
        hit = path == r.path if r.path_type == "Exact" else p == "/" or path == p or path.startswith(p + "/")
        rank = (len(p), r.path_type == "Exact")
        if hit and (best is None or rank > best[0]):
            best = (rank, r.component)
    return best and best[1]


def test_every_path_reaches_its_component_and_nothing_else_is_public(stand_in):
    routes = stand_in.routes
    assert {(r.path, r.component) for r in routes} >= {
        ("/v1/auth", "auth"), ("/.well-known/jwks.json", "auth"), ("/v1/reports", "reports"),
        ("/v1/openapi.json", "reports"), ("/socket.io", "notifier"), ("/static", "notifier"), ("/", "notifier"),
        ("/reports", "s3")}
    probes = {"/", "/metrics", "/healthz", "/readyz", "/nope", "/v1", "/v1/files/x", "/index.html"}
    for r in routes:
        if p := r.path.rstrip("/"):
            probes |= {r.path, p + "/", p + "/x/y", p + "x", p + ".x"}
    for path in sorted(probes):
        resp = requests.get(stand_in.url + path, timeout=5)
        want = expected(routes, path)
        got = resp.json()["upstream"] if resp.status_code == 200 else None
        assert got == want, f"{path}: to {got} ({resp.status_code}), chart: {want}"
        if want is None:
            assert resp.status_code == 404


def test_the_gateway_stand_in_keeps_a_socketio_session_on_one_notifier_with_envoy_gateways_cookie(upstreams,
                                                                                                 tmp_path):
    with_gateway = Ingress(tmp_path, upstreams, source="gateway").start()
    try:
        assert {r.path for r in with_gateway.routes if r.cookie} == {"/socket.io"}, "only the Socket.IO rule"
        for path in ("/v1/auth/login", "/v1/reports", "/", "/static/demo.js"):
            assert "set-cookie" not in requests.get(with_gateway.url + path, timeout=5).headers
        first = requests.get(with_gateway.url + "/socket.io/?EIO=4&transport=polling", timeout=5)
        assert re.fullmatch(r"rfsid=\w+; Path=/socket.io; Max-Age=86400; HttpOnly", first.headers["set-cookie"])
        chosen = first.json()["port"]
        for _ in range(5):
            again = requests.get(with_gateway.url + "/socket.io/?EIO=4&sid=x", cookies=first.cookies, timeout=5)
            assert again.json()["port"] == chosen and "set-cookie" not in again.headers
        ports = {requests.get(with_gateway.url + "/socket.io/", cookies={"rfsid": f"client{i}"}, timeout=5)
                 .json()["port"] for i in range(20)}
        assert {f"127.0.0.1:{p}" for p in ports} == set(upstreams["notifier"]), "sessions spread over both"
        blocks = re.findall(r"location [^{]*\{([^}]*)\}", with_gateway.config_path.read_text())
        socket = [b for b in blocks if "notifier_by_rfsid" in b]
        assert socket and all("proxy_read_timeout 86400s;" in b for b in socket), "request timeout 0s: none"
    finally:
        with_gateway.stop()


def test_a_websocket_only_render_has_no_cookie_and_unknown_route_fields_fail_the_render(upstreams):
    manifests = render.chart_manifests(values=("notifier.transports={websocket}",))
    routes = render.chart_routes(manifests, "gateway")
    assert not [r for r in routes if r.cookie]
    assert "rfsid" not in render.render(routes, upstreams, "127.0.0.1:1")
    (route,) = [m for m in manifests if m["kind"] == "HTTPRoute" and m["metadata"]["name"].endswith("reportflow")]
    route["spec"]["rules"][0]["filters"] = [{"type": "RequestHeaderModifier"}]
    with pytest.raises(ValueError, match="does not emulate"):
        render.chart_routes(manifests, "gateway")


def test_sources_render_the_chart_values_they_name():
    assert SOURCE_VALUES["ingress"] == (CHART / "ci" / "ingress-values.yaml",)
    assert {r.kind for r in chart_routes("gateway")} == {"HTTPRoute"}
    assert {r.kind for r in chart_routes("ingress")} == {"Ingress"}
    assert render.seconds("1h30m") == 5400 and render.seconds("0s") == 0 and render.seconds("500ms") == 0.5
    with pytest.raises(ValueError):
        render.seconds("1 hour")
