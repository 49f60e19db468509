"""The web page in Debian's Chromium through Playwright: the site it runs on, and what tests do with a page.

Never `playwright install`: the browser is /usr/bin/chromium. axe-core (installed by `make tools` under
.tools/node) is added to every page of a context before the page's own scripts, so the page's
Content-Security-Policy (script-src 'self') stays in force while the tests check accessibility.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from .clients import Api
from .ingress import Ingress, stack_upstreams
from .processes import ServerProcess
from .stack import service, start_auth, start_notifier, start_reports
from .waiting import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
AXE = ROOT / ".tools" / "node" / "node_modules" / "axe-core" / "axe.min.js"
S = 1000  # Playwright timeouts are in ms
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium under Playwright (tests/conftest.py's `browser` fixture: one per test module)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Site:
    """The page's origin(s): the chart's ingress rules in front of notifiers, reports, auth and storage."""

    def __init__(self, ingresses: list[Ingress], notifiers: list[ServerProcess], worker: ServerProcess | None = None):
        self.ingresses, self.notifiers, self.worker = ingresses, notifiers, worker  # worker: its own, if any
        self.url = ingresses[0].url
        self.api = Api(self.url, self.url)  # users register and log in through the ingress too


@contextmanager
def start_site(stack, affinities: tuple[bool, ...] = (True,), auth_env: dict | None = None,
               worker_env: dict | None = None):
    """Two notifiers that accept the stand-ins' origins, reports signing download links for the first one's
    origin (as the chart's dev install does), and one ingress stand-in per entry of `affinities` (True: the
    chart's cookie affinity). With `auth_env`, an auth of its own with those settings (the stack's signing
    key and database); with `worker_env`, a worker of its own with those settings, taking this site's jobs
    from a broker database of their own (the stack's worker never sees them)."""
    ports = [free_port() for _ in affinities]
    origins = [f"http://127.0.0.1:{p}" for p in ports]
    jwks = stack.auth_url + "/.well-known/jwks.json"
    own_broker = {"BROKER_URL": stack.infra.redis.url.rsplit("/", 1)[0] + "/5"} if worker_env is not None else {}
    started: list = []
    worker = None
    try:
        notifiers = [start_notifier(stack.infra, jwks, SOCKETIO_ALLOWED_ORIGINS=",".join(origins)) for _ in range(2)]
        started += notifiers
        reports = start_reports(stack.infra, jwks, S3_PUBLIC_ENDPOINT_URL=origins[0], **own_broker)
        started.append(reports)
        if worker_env is not None:  # alive is enough: its settings may be meant to make it unready
            worker = service(stack.infra, "worker-site", "reportflow-worker", **own_broker, **worker_env)
            started.append(worker.start(ready_path="/healthz", timeout=60))
        upstreams = stack_upstreams(stack, notifiers=notifiers, reports=reports)
        if auth_env is not None:
            auth = start_auth(stack.infra, **auth_env)
            started.append(auth)
            upstreams["auth"] = [auth.url.removeprefix("http://")]
        ingresses = []
        for port, affinity in zip(ports, affinities, strict=True):
            ingress = Ingress(stack.infra.workdir, upstreams, affinity=affinity, port=port)
            started.append(ingress)
            ingresses.append(ingress.start())
        yield Site(ingresses, notifiers, worker)
    finally:
        for process in reversed(started):
            process.stop()


def new_context(browser, viewport: dict | None = None, transports: list[str] | None = None,
                **options) -> BrowserContext:
    """A fresh browser profile; every page in it gets axe-core and records its errors in page.errors."""
    context = browser.new_context(accept_downloads=True, viewport=viewport or DESKTOP, **options)
    if AXE.exists():
        context.add_init_script(path=str(AXE))
    if transports:
        context.add_init_script(f"window.REPORTFLOW_TRANSPORTS = {json.dumps(transports)};")
    return context


def open_page(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.errors = []  # uncaught exceptions and console errors, but not failed requests (the 4xx the page expects)
    page.on("pageerror", lambda e: page.errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
            and page.errors.append(f"console: {m.text}"))
    page.goto(url + "/")
    expect(page.locator("#signin-view")).to_be_visible(timeout=10 * S)
    return page


def sign_in(page: Page, email: str, password: str, online: bool = True) -> None:
    page.fill("#signin-email", email)
    page.fill("#signin-password", password)
    page.click("#signin-button")
    expect(page.locator("#who")).to_have_text(email, timeout=10 * S)
    if online:
        expect(page.locator("#socket-state")).to_have_attribute("data-state", "online", timeout=15 * S)


def signed_in_page(browser, site_url: str, user, viewport: dict | None = None,
                   transports: list[str] | None = None) -> Page:
    page = open_page(new_context(browser, viewport, transports), site_url)
    sign_in(page, user.email, user.password)
    return page


def row(page: Page, report_id: str):
    return page.locator(f"#reports tr[data-report-id='{report_id}']")


def row_ids(page: Page) -> list[str]:
    return page.locator("#reports tbody tr").evaluate_all("trs => trs.map(t => t.dataset.reportId)")


def start_report(page: Page, rows: int, columns: int = 4, fmt: str = "xlsx") -> str:
    """Fill the form and start a demo report; returns the new row's report id."""
    before = set(row_ids(page))
    page.select_option("#report-type", "demo")
    page.fill("#rows", str(rows))
    page.fill("#columns", str(columns))
    page.select_option("#format", fmt)
    page.click("#create-button")
    (report_id,) = wait_until(lambda: set(row_ids(page)) - before, 10, "the new report's row")
    return report_id


def toasts(page: Page) -> list[tuple[str, str]]:
    """(event, report id) of the toasts on screen, oldest first."""
    pairs = page.locator("#toasts .toast[data-event]").evaluate_all(
        "ts => ts.map(t => [t.dataset.event, t.dataset.reportId])")
    return [tuple(p) for p in pairs]


def toast(page: Page, event: str, report_id: str):
    return page.locator(f"#toasts .toast[data-event='{event}'][data-report-id='{report_id}']")


def shot(page: Page, name: str, full_page: bool = True) -> Path:
    """A screenshot kept under test-artifacts/browser/ (git-ignored; CI keeps the folder)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}", file=sys.stderr)
    return path


def accessibility_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line per element."""
    assert AXE.exists(), f"axe-core is missing: `make tools` installs it ({AXE})"
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ["violations"]});
        return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
          .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" "))}));
    }""")
    return [f"{v['impact']} {v['id']} ({v['help']}): {node}" for v in result for node in v["nodes"]]


def assert_accessible(page: Page, view: str) -> None:
    problems = accessibility_problems(page)
    assert not problems, f"axe on the {view} view:\n  " + "\n  ".join(problems)


def fits_width(page: Page) -> bool:
    """Nothing makes the page scroll sideways."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
