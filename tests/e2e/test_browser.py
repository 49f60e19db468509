"""The web page in a real Chromium, through the ingress stand-in built from the chart's Ingress rules.

Two notifier processes sit behind the stand-in, so a long-polling session works only if the ingress keeps
it on one of them: with the chart's cookie affinity it does, with plain round-robin it breaks. The page's
own flows (sign-up, cancel, offline, accessibility, phones) are in test_web_app.py.
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict

import openpyxl
import pytest
import requests
from playwright.sync_api import expect

from support.browser import (
    S,
    new_context,
    open_page,
    row,
    shot,
    sign_in,
    start_report,
    start_site,
    toast,
    toasts,
)
from support.ingress import Ingress, chart_routes, render
from support.processes import ServerProcess
from support.waiting import free_port, wait_until

# A job that lasts several progress intervals (0.2 s in the tests) however fast the machine: the lean xlsx writer
# builds 150,000 rows in about 1.5 s on an idle machine here (20,000 took 0.2-0.3 s, about one interval, and the
# page sometimes saw no progress at all). Two columns keep the file, and reading it back, small.
ROWS, COLUMNS = 150_000, 2

# Records every status and progress value each report row of the page shows, and the connection states.
RECORDER = """
window.__seen = {}; window.__states = [];
new MutationObserver(() => {
  const st = document.getElementById("socket-state");
  if (st && window.__states[window.__states.length - 1] !== st.dataset.state) window.__states.push(st.dataset.state);
  for (const tr of document.querySelectorAll("#reports tbody tr")) {
    const s = (window.__seen[tr.dataset.reportId] ||= {statuses: [], progress: []});
    if (!s.statuses.includes(tr.dataset.status)) s.statuses.push(tr.dataset.status);
    const p = Number(tr.dataset.progress);
    if (!s.progress.includes(p)) s.progress.push(p);
  }
}).observe(document, {subtree: true, childList: true, attributes: true});
"""


@pytest.fixture(scope="module")
def site(stack):
    """The sticky stand-in (the chart's rules) and the same without affinity, on one set of services."""
    with start_site(stack, affinities=(True, False)) as s:
        s.sticky, s.plain = s.ingresses
        yield s


def signed_in(browser, url: str, user, transports: list[str] | None, online: bool = True, on_response=None):
    """A fresh browser profile on the page, signed in as `user` through the page's form."""
    context = new_context(browser, transports=transports)
    context.add_init_script(RECORDER)
    if on_response:
        context.on("response", on_response)
    page = open_page(context, url)
    sign_in(page, user.email, user.password, online=online)
    return page


def sessions(log: list[str]) -> dict[str, set[str]]:
    """Engine.IO session id -> the notifiers its requests went to (from lines of a stand-in's access log)."""
    by_sid = defaultdict(set)
    for line in log:
        m = re.search(r"[?&]sid=([^& ]+).* upstream=(\S+)", line)
        if m:
            by_sid[m.group(1)].add(m.group(2))
    return by_sid


# --- the stand-in routes as the chart does ---

UPSTREAM = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Echo(BaseHTTPRequestHandler):
    def answer(self):
        self.send_response(200); self.send_header("X-Upstream", sys.argv[1])
        self.send_header("X-Upstream-Port", sys.argv[2]); self.send_header("Content-Length", "0"); self.end_headers()
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer
    def log_message(self, *args): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Echo).serve_forever()
"""


def expected_component(path: str) -> str | None:
    """Kubernetes' rules, independently of the renderer: the longest matching path wins; Prefix matches
    whole path elements (/v1/auth matches /v1/auth and /v1/auth/x, not /v1/authx)."""
    best = None
    for r in chart_routes():
        p = r.path.rstrip("/") or "/"
        hit = path == r.path if r.path_type == "Exact" else p == "/" or path == p or path.startswith(p + "/")
        if hit and (best is None or len(p) > len(best[0])):
            best = (p, r.component)
    return best and best[1]


def test_stand_in_routes_every_chart_path_to_its_component_and_nothing_else(stack, tmp_path):
    routes = chart_routes()
    components = sorted({r.component for r in routes})
    assert {"auth", "reports", "notifier"} <= set(components)
    assert {(r.path, r.component) for r in routes} >= {("/v1/auth", "auth"), ("/v1/reports", "reports"),
                                                       ("/socket.io", "notifier"), ("/", "notifier")}
    echoes, upstreams = [], defaultdict(list)
    try:
        for component in components + ["notifier"]:  # two notifiers, like the stack
            port = free_port()
            echo = ServerProcess(f"echo-{component}-{port}", [sys.executable, "-c", UPSTREAM, component, str(port)],
                                 {}, tmp_path, url=f"http://127.0.0.1:{port}")
            echoes.append(echo.start(ready_path="/"))
            upstreams[component].append(f"127.0.0.1:{port}")
        ingress = Ingress(tmp_path, dict(upstreams))
        echoes.append(ingress)
        ingress.start()
        probes = {"/", "/metrics", "/healthz", "/readyz", "/nope", "/v1", "/v1/files/x"}
        for r in routes:
            if p := r.path.rstrip("/"):
                probes |= {r.path, p + "/", p + "/x/y", p + "x", p + ".x"}
        for path in sorted(probes):
            resp = requests.get(ingress.url + path, timeout=5)
            want = expected_component(path)
            assert resp.headers.get("X-Upstream") == want, f"{path}: to {resp.headers.get('X-Upstream')}, " \
                                                           f"chart: {want} ({resp.status_code})"
        # Cookie affinity, only where the chart asks for it: set when absent, then one notifier per cookie.
        cookie = {r.cookie for r in routes if r.cookie}
        assert cookie == {"rfsid"}
        sticky = {r.path for r in routes if r.cookie}
        for path in ("/v1/auth/login", "/v1/reports", "/.well-known/jwks.json"):
            assert "set-cookie" not in requests.get(ingress.url + path, timeout=5).headers
        for path in sticky:
            first = requests.get(ingress.url + path, timeout=5)
            assert re.match(r"rfsid=\w+; Path=/; Max-Age=86400; SameSite=Lax; HttpOnly$", first.headers["set-cookie"])
            again = requests.get(ingress.url + path, cookies=first.cookies, timeout=5)
            assert "set-cookie" not in again.headers
            assert again.headers["X-Upstream"] == "notifier"
        ports = set()
        for key in "abcdefghij":
            served = {requests.get(ingress.url + f"/socket.io/?k={i}", cookies={"rfsid": key}, timeout=5)
                      .headers["X-Upstream-Port"] for i in range(3)}
            assert len(served) == 1, f"cookie {key} went to {served}"
            ports |= served
        assert {f"127.0.0.1:{p}" for p in ports} == set(upstreams["notifier"])  # cookies spread over both notifiers
        # The chart's long timeouts (for idle WebSockets and long polls) on every sticky location.
        blocks = re.findall(r"location [^{]*\{([^}]*)\}", ingress.config_path.read_text())
        socket_blocks = [b for b in blocks if "notifier_by_rfsid" in b]
        sticky = [r for r in routes if r.component == "notifier"]
        assert len(socket_blocks) == sum(len(render.nginx_locations(r)) for r in sticky)
        assert all("proxy_read_timeout 3600s;" in b and "proxy_send_timeout 3600s;" in b for b in socket_blocks)
    finally:
        for process in reversed(echoes):
            process.stop()


def test_stack_behind_the_stand_in_answers_on_one_origin(ingress, start_ingress):
    """The `ingress` fixture (the shared stack's services) and a round-robin one from `start_ingress`."""
    plain = start_ingress(affinity=False)
    for base in (ingress.url, plain.url):
        assert requests.get(base + "/.well-known/jwks.json", timeout=5).json()["keys"]
        assert requests.get(base + "/v1/reports", timeout=5).status_code == 401
        assert "socket-state" in requests.get(base + "/", timeout=5).text
        icon = requests.get(base + "/favicon.ico", timeout=5)
        assert icon.status_code == 200 and icon.content[:4] == b"\x00\x00\x01\x00"
        handshake = requests.get(base + "/socket.io/?EIO=4&transport=polling", timeout=5)
        assert handshake.status_code == 200 and '"sid"' in handshake.text
        assert ("rfsid" in handshake.cookies) == (base == ingress.url)


# --- the page through the stand-in ---

@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
def test_two_users_see_progress_and_only_their_own_report_and_download_it(browser, site, transports, tmp_path):
    users = [site.api.new_user(), site.api.new_user()]
    mark = len(site.sticky.access_log())
    pages = [signed_in(browser, site.sticky.url, u, transports) for u in users]
    ids = [start_report(page, ROWS, COLUMNS) for page in pages]
    for page, own in zip(pages, ids, strict=True):
        expect(toast(page, "report.succeeded", own)).to_have_count(1, timeout=30 * S)
    for page, own, other in zip(pages, ids, reversed(ids), strict=True):
        assert toasts(page) == [("report.succeeded", own)], toasts(page)
        seen = page.evaluate("window.__seen")
        assert other not in seen and row(page, other).count() == 0
        assert "running" in seen[own]["statuses"] and any(0 < p < 100 for p in seen[own]["progress"]), seen[own]
        expect(row(page, own)).to_have_attribute("data-status", "succeeded")
        assert page.errors == []
    kind = transports[0]
    for i, page in enumerate(pages):
        shot(page, f"two-users-{kind}-{i + 1}")
        with page.expect_download(timeout=15 * S) as download:
            row(page, ids[i]).locator("button.download").click()
        assert download.value.suggested_filename == f"demo-{ids[i]}.xlsx"
        download.value.save_as(saved := tmp_path / download.value.suggested_filename)
        sheet = list(openpyxl.load_workbook(saved, read_only=True).active.iter_rows(values_only=True))
        assert len(sheet) == ROWS + 2 and len(sheet[0]) == COLUMNS  # header, the rows, totals
    for page in pages:
        page.context.close()
    # The transport really was the one forced (nginx logs a WebSocket when it closes), and every
    # Engine.IO session stayed on one notifier.
    def socket_log():
        return [x for x in site.sticky.access_log()[mark:] if "/socket.io/" in x]
    wait_until(lambda: {m for x in socket_log() for m in re.findall(r"transport=(\w+)", x)} == {kind}, 10,
               f"{kind} requests, and only those, in the access log")
    assert not [x for x in socket_log() if " 400 " in x], socket_log()
    assert all(len(ups) == 1 for ups in sessions(socket_log()).values()), sessions(socket_log())


def test_polling_without_affinity_cannot_connect(browser, site):
    """The control: the same page, notifiers and polling, through round-robin. Each session's 2nd request
    reaches the other notifier, which answers 400 (unknown session): the page never gets online."""
    user = site.api.new_user()
    socket_responses = []
    page = signed_in(browser, site.plain.url, user, ["polling"], online=False,
                     on_response=lambda r: "/socket.io/" in r.url and socket_responses.append(r))

    def failed_sids() -> set[str]:
        page.evaluate("0")  # sync Playwright hands over the events received meanwhile only inside a call
        return {re.search(r"sid=([^&]+)", r.url).group(1) for r in socket_responses if r.status == 400}
    wait_until(lambda: len(failed_sids()) >= 2, 15, "two polling sessions refused (the page retries)")
    # Socket.IO reports a session closed before its connect as a disconnect: the page never says online.
    assert "online" not in page.evaluate("window.__states")
    expect(page.locator("#socket-state")).not_to_have_attribute("data-state", "online")
    # Each handshake worked (the origin is allowed); what failed is the session's next request, sent to
    # the notifier that never opened it. Through the sticky stand-in the same requests succeed (above).
    with_sid = [r for r in socket_responses if "sid=" in r.url]
    assert with_sid and all(r.status == 400 and "Invalid session" in r.text() for r in with_sid), \
        [(r.url, r.status) for r in with_sid]
    handshakes = [r for r in socket_responses if "sid=" not in r.url]
    assert len(handshakes) >= 2 and all(r.status == 200 and '"sid"' in r.text() for r in handshakes)
    shot(page, "polling-without-affinity")
    page.context.close()
