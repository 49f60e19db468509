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
def test_page_offers_the_demo_accounts_and_works_end_to_end(up, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from support.browser import ARGS, CHROMIUM, S, assert_accessible, new_context, open_page, shot

    proc, _data, _port = up
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = open_page(new_context(browser), proc.url)
            # `make up` says it is: its seeded accounts are offered, the first one pre-filled.
            expect(page.locator("#demo-users")).to_be_visible()
            expect(page.locator("#signin-email")).to_have_value(DEMO[0])
            expect(page.locator("#signin-password")).to_have_value(DEMO[1])
            expect(page.locator("#demo-users button[data-demo-email]")).to_have_count(2)
            assert_accessible(page, "make up's sign-in")
            shot(page, "make-up-signin")
            page.click(f"#demo-users button[data-demo-email='{DEMO[0]}']")
            expect(page.locator("#who")).to_have_text(DEMO[0], timeout=20 * S)
            expect(page.locator("#socket-state")).to_have_attribute("data-state", "online", timeout=20 * S)
            page.fill("#rows", "3000")
            page.click("#create-button")
            done = page.locator("#toasts .toast[data-event='report.succeeded']")
            expect(done).to_have_count(1, timeout=60 * S)
            report_id = done.get_attribute("data-report-id")
            assert_accessible(page, "make up's list")
            shot(page, "make-up-list")
            with page.expect_download() as download:
                page.locator(f"#report-{report_id} button.download").click()
            saved = tmp_path / "report.xlsx"
            download.value.save_as(saved)
            assert sum(1 for _ in openpyxl.load_workbook(saved, read_only=True).active.iter_rows()) == 3002
            assert requests.get(proc.url + "/favicon.ico", timeout=10).content[:4] == b"\x00\x00\x01\x00"
            assert page.errors == []
        finally:
            browser.close()
