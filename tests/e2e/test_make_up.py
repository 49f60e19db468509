"""`make up` as a newcomer runs it: embedded PostgreSQL and Redis, one origin, demo users, restart keeps data."""
from __future__ import annotations

import io
import os
import shutil
import signal

import openpyxl
import pytest
import requests

from support.clients import Api, SocketClient, User
from support.processes import BIN, ServerProcess
from support.waiting import free_port, wait_until

DEMO = ("administrator@test.com", "password1")


def start_up(data_dir, port: int, log_dir) -> ServerProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL") and not k.startswith("PROMETHEUS_")}
    env.update(UP_DATA_DIR=str(data_dir), UP_PORT=str(port), LOG_LEVEL="WARNING")
    proc = ServerProcess(f"up-{port}", [str(BIN / "reportflow-up")], env, log_dir, url=f"http://127.0.0.1:{port}")
    proc.start(ready_path=None)
    wait_until(lambda: proc.alive() and "reportflow is running" in proc.output(), 120,
               f"make up to print its banner\n{proc.tail()}")
    return proc


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    data = tmp_path_factory.mktemp("up-data")
    port = free_port()
    proc = start_up(data, port, data)
    try:
        yield proc, data, port
    finally:
        proc.stop(60)


def login(base: str, email: str, password: str) -> User:
    api = Api(base, base)
    return User(api, email, password, api.login(email, password))


def test_one_origin_serves_the_demo_page_api_and_socket(up):
    proc, _data, port = up
    base = proc.url
    page = requests.get(base + "/", timeout=10)
    assert page.status_code == 200 and "<title>reportflow</title>" in page.text
    assert requests.get(base + "/static/vendor/socket.io.min.js", timeout=10).text.startswith("/*!")
    assert requests.get(base + "/.well-known/jwks.json", timeout=10).json()["keys"]

    user = login(base, *DEMO)
    sock = SocketClient(base, user.token).connect()
    try:
        rep = user.create({"rows": 500, "columns": 5, "seed": 3})
        sock.wait_event("report.succeeded", rep["id"], 60)
    finally:
        sock.disconnect()
    link = user.request("GET", f"/v1/reports/{rep['id']}/download", allow_redirects=False)
    assert link.status_code == 302 and link.headers["Location"].startswith("/v1/files/")
    file = requests.get(base + link.headers["Location"], timeout=10)
    assert file.status_code == 200 and "attachment" in file.headers["Content-Disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(file.content), read_only=True).active
    assert sum(1 for _ in sheet.iter_rows()) == 1 + 500 + 1
    tampered = requests.get(base + link.headers["Location"].replace("signature=", "signature=0"), timeout=10)
    assert tampered.status_code == 403 and tampered.json()["code"] == "forbidden"


def test_one_origin_refuses_hostile_requests_as_problems(up):
    """The devstack web process runs gunicorn's gevent worker too: its refusals are problem+json, and a
    rejected long-polling POST is answered (python-engineio alone would park it)."""
    from support.rawhttp import get, raw_request
    proc, _data, _port = up
    for request, status in ((get("/v1/auth/me", b"Authorization: Bearer " + b"a" * 100_000), 431),
                            (get("/v1/reports", b"Idempotency-Key: " + b"k" * 10_000), 431),
                            (get("/socket.io/", b"X-Request-ID: " + b"r" * 10_000), 431),
                            (get("/healthz", b"X-Note: a\x00b"), 400), (get("/", b"X-Note: a\rb"), 400)):
        r = raw_request(proc.url, request)
        assert r.status == status and r.headers["content-type"] == "application/problem+json", r
    with requests.Session() as http:
        opened = http.get(proc.url + "/socket.io/?EIO=4&transport=polling", timeout=10)
        sid = opened.text.split('"sid":"', 1)[1].split('"', 1)[0]
        noop = http.post(f"{proc.url}/socket.io/?EIO=4&transport=polling&sid={sid}", data="6", timeout=10)
        assert noop.status_code == 400 and noop.headers["Content-Type"] == "application/problem+json"
    email = "nul\x00@example.com"
    r = requests.post(proc.url + "/v1/auth/register", json={"email": email, "password": "long enough"}, timeout=10)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "email"


def test_restart_keeps_users_reports_and_files(up, tmp_path):
    proc, data, port = up
    user = login(proc.url, "username@test.com", "password2")
    rep = user.create({"rows": 50, "columns": 2, "seed": 9})
    user.wait_status(rep["id"], ("succeeded",))

    proc.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.proc.wait(60) == 0
    assert not (data / "postgres" / "pgdata" / "postmaster.pid").exists(), "PostgreSQL stopped with it"

    again = start_up(data, port, tmp_path)
    try:
        user = login(again.url, "username@test.com", "password2")
        assert user.get(rep["id"])["status"] == "succeeded"
        r = user.request("GET", f"/v1/reports/{rep['id']}/download")  # follows the redirect
        assert r.status_code == 200 and r.content[:2] == b"PK"
    finally:
        again.stop(60)
    up_proc = start_up(data, port, data)  # the module's fixture stops whatever runs last
    proc.proc = up_proc.proc


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_demo_page_in_a_real_browser(up, tmp_path):
    from playwright.sync_api import sync_playwright

    proc, _data, _port = up
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            page = browser.new_page(accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(proc.url + "/")
            page.fill("#email", DEMO[0])
            page.fill("#password", DEMO[1])
            page.click("#login-button")
            page.wait_for_selector("#socket-state[data-state=online]", timeout=20_000)
            page.fill("#rows", "3000")
            page.click("#create-button")
            page.wait_for_selector("#notifications li[data-event='report.succeeded']", timeout=60_000)
            page.screenshot(path=str(tmp_path / "demo-page.png"), full_page=True)
            with page.expect_download() as download:
                page.locator("tr[data-status=succeeded] button.download").first.click()
            saved = tmp_path / "report.xlsx"
            download.value.save_as(saved)
            rows = sum(1 for _ in openpyxl.load_workbook(saved, read_only=True).active.iter_rows())
            assert rows >= 2
            assert errors == []
        finally:
            browser.close()
