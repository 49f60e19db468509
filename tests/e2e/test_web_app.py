"""The web page as people use it, in Debian's Chromium, through the chart's ingress rules (nginx stand-in).

Sign-up to download, cancel and delete, a job that fails, keyboard only, a 375 px phone, the network
dropping (Playwright's offline mode), paging, registration switched off, tokens refreshed before they
expire; axe-core checks every view for serious and critical violations; screenshots land in
test-artifacts/browser/.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import openpyxl
import pytest
import requests
from playwright.sync_api import expect

from support.browser import (
    PHONE,
    S,
    assert_accessible,
    fits_width,
    new_context,
    open_page,
    row,
    row_ids,
    shot,
    sign_in,
    signed_in_page,
    start_report,
    start_site,
    toast,
    toasts,
)
from support.clients import Api
from support.waiting import wait_until

SMALL = 20000  # rows: about a second of work, with a few progress events
RETENTION_SECONDS = 8  # how long short_retention_site's worker keeps reports: time to see one ready, then expire
LONG = 1_000_000  # rows: long enough to be caught running and cancelled


@pytest.fixture(scope="module")
def site(stack):
    with start_site(stack) as s:
        yield s


@pytest.fixture(scope="module")
def closed_site(stack):
    """Registration switched off, and access tokens that live 8 s (the page must refresh them)."""
    with start_site(stack, auth_env={"ALLOW_REGISTRATION": "false", "ACCESS_TOKEN_TTL_SECONDS": "8"}) as s:
        yield s


@pytest.fixture(scope="module")
def failing_site(stack):
    """A worker of its own that cannot store files (its bucket does not exist): every job fails for real."""
    with start_site(stack, worker_env={"S3_BUCKET": "no-such-bucket", "WORKER_CONCURRENCY": "1"}) as s:
        yield s


def api_report_requests(page) -> list[dict]:
    """Bodies of the POST /v1/reports the page has sent (recorded by record_requests)."""
    page.evaluate("0")  # let sync Playwright deliver the request events received meanwhile
    return page.sent


def record_requests(page) -> None:
    page.sent = []
    page.on("request", lambda r: r.method == "POST" and r.url.endswith("/v1/reports")
            and page.sent.append(json.loads(r.post_data)))


def test_sign_up_sign_in_create_watch_progress_toast_and_download(browser, site, tmp_path):
    page = open_page(new_context(browser), site.url)
    # Not `make up`: no demo accounts offered or pre-filled; registration is on, so the page offers it.
    expect(page.locator("#demo-users")).to_be_hidden()
    expect(page.locator("#signin-email")).to_have_value("")
    expect(page.locator("#signup-offer")).to_have_attribute("data-registration", "open")
    assert_accessible(page, "sign-in")
    shot(page, "signin")
    page.click("#show-signup")
    expect(page.locator("#signup-view")).to_be_visible()
    expect(page.locator("#signup-title")).to_be_focused()

    # The API's field errors appear at their fields.
    email = f"web-{re.sub(r'[^a-z0-9]', '', page.evaluate('crypto.randomUUID()'))[:12]}@example.com"
    page.fill("#signup-email", email)
    page.fill("#signup-password", "short")
    page.click("#signup-button")
    expect(page.locator("#signup-password-error")).to_contain_text("8 to 128 characters")
    expect(page.locator("#signup-password")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#signup-password")).to_be_focused()
    assert_accessible(page, "sign-up with errors")
    shot(page, "signup-errors")
    page.fill("#signup-password", "correct horse battery")
    page.click("#signup-button")
    expect(page.locator("#who")).to_have_text(email, timeout=10 * S)
    expect(page.locator("#list-empty")).to_be_visible()
    expect(page.locator("#socket-state")).to_have_attribute("data-state", "online", timeout=15 * S)
    assert_accessible(page, "empty list")
    shot(page, "welcome")

    # Sign out, and back in with the new account.
    page.click("#signout-button")
    expect(page.locator("#signin-view")).to_be_visible()
    expect(page.locator("#signin-notice")).to_have_text("You have signed out.")
    sign_in(page, email, "correct horse battery")

    # Field errors of the report form come from the API too; the default format is not sent.
    record_requests(page)
    page.fill("#rows", "0")
    page.click("#create-button")
    expect(page.locator("#rows-error")).to_have_text("Rows must be between 1 and 1000000.")
    expect(page.locator("#rows")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page, "report form with errors")
    assert api_report_requests(page)[-1] == {"type": "demo", "params": {"rows": 0, "columns": 8, "seed": 42}}
    # Another format is sent; an API that does not know `format` yet says so at the field.
    page.fill("#rows", "10")
    page.select_option("#format", "csv")
    page.click("#create-button")
    wait_until(lambda: len(api_report_requests(page)) == 2, 10, "the second request")
    assert api_report_requests(page)[-1]["params"] == {"rows": 10, "columns": 8, "seed": 42, "format": "csv"}
    expect(page.locator("#format-error:not(:empty), #reports tr .r-detail:has-text('csv')").first).to_be_visible(
        timeout=10 * S)

    report_id = start_report(page, SMALL)
    expect(page.locator("#rows")).not_to_have_attribute("aria-invalid", "true")
    assert "format" not in api_report_requests(page)[-1]["params"]
    tr = row(page, report_id)
    # Watch it: running with a percentage between 0 and 100, rows planned, then ready with its details.
    seen = wait_until(lambda: (s := tr.get_attribute("data-status")) != "queued" and s, 20, "the job to start")
    if seen == "running":
        expect(tr.locator("td[data-label=Rows]")).to_contain_text("20,000")
    expect(toast(page, "report.succeeded", report_id)).to_be_visible(timeout=30 * S)
    expect(tr).to_have_attribute("data-status", "succeeded")
    expect(tr.locator("td[data-label=Rows]")).to_have_text("20,000")
    expect(tr.locator("td[data-label=Size]")).to_have_text(re.compile(r"^\d+(\.\d)? (kB|MB)$"))
    expect(tr.locator("td[data-label=Created] time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    day_and_time = re.compile(r"^[A-Z][a-z]+ \d{1,2},? .*\d:\d\d:\d\d")  # "Dec 6, 12:48:36 AM" (this year)
    expect(tr.locator("td[data-label=Finished] time")).to_have_text(day_and_time)
    the_toast = toast(page, "report.succeeded", report_id)
    expect(the_toast).to_contain_text("Report ready")
    expect(the_toast).to_contain_text("20,000 rows")
    assert_accessible(page, "list with a toast")
    shot(page, "report-ready")

    # The toast links to the report; its Download gives the real file.
    the_toast.locator("a.toast-link").click()
    expect(tr).to_be_focused()
    with page.expect_download(timeout=15 * S) as download:
        the_toast.locator("button.download").click()
    assert download.value.suggested_filename == f"demo-{report_id}.xlsx"
    download.value.save_as(saved := tmp_path / "report.xlsx")
    sheet = list(openpyxl.load_workbook(saved, read_only=True).active.iter_rows(values_only=True))
    assert len(sheet) == SMALL + 2 and len(sheet[0]) == 4  # header, the rows, totals
    assert page.errors == []
    page.context.close()


def test_progress_shows_percent_and_time_left_then_cancel_and_delete(browser, site):
    user = site.api.new_user()
    earlier = [user.create({"rows": rows, "columns": 6, "seed": 7})["id"] for rows in (50000, 2500)]
    for report_id in earlier:  # a list with some history, for the screenshots
        user.wait_status(report_id, ("succeeded",), 60)
    page = signed_in_page(browser, site.url, user)
    report_id = start_report(page, LONG, columns=8)
    tr = row(page, report_id)
    expect(tr).to_have_attribute("data-status", "running", timeout=20 * S)
    # A percentage, and once two progress events have given a rate, the time left.
    expect(tr.locator(".pct")).to_have_text(re.compile(r"^(\d\.\d|\d\d) %$"), timeout=10 * S)
    expect(tr.locator(".eta")).to_have_text(re.compile(r"^(about \d+ (s|min) left|finishing…)$"), timeout=15 * S)
    expect(tr).to_have_attribute("data-progress", re.compile(r"^[1-9]\d?$"), timeout=15 * S)  # 1 to 99
    expect(tr.locator("progress")).to_have_attribute("aria-label", re.compile("Progress of report"))
    assert_accessible(page, "list with a running report")
    shot(page, "running")

    tr.locator("button.cancel").click()
    expect(toast(page, "report.cancelled", report_id)).to_be_visible(timeout=15 * S)
    expect(tr).to_have_attribute("data-status", "cancelled")
    expect(tr.locator("button.cancel")).to_have_count(0)
    assert user.get(report_id)["status"] == "cancelled"
    shot(page, "cancelled", full_page=False)

    # Delete asks first; keeping it keeps it, deleting removes it here and in the API.
    tr.locator("button.delete").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-no")).to_be_focused()
    assert_accessible(page, "delete confirmation")
    shot(page, "confirm-delete", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(tr.locator("button.delete")).to_be_focused()
    tr.locator("button.delete").click()
    page.click("#confirm-yes")
    expect(tr).to_have_count(0)
    assert user.request("GET", f"/v1/reports/{report_id}").status_code == 404
    assert page.errors == []
    page.context.close()


def test_keyboard_alone_signs_in_starts_downloads_and_deletes(browser, site, tmp_path):
    user = site.api.new_user()
    page = open_page(new_context(browser), site.url)
    keys = page.keyboard

    def tab_to(selector: str, limit: int = 40) -> None:
        for _ in range(limit):
            keys.press("Tab")
            if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("a.skip-link")
    tab_to("#signin-email")
    keys.type(user.email)
    keys.press("Tab")
    keys.type(user.password)
    keys.press("Enter")
    expect(page.locator("#who")).to_have_text(user.email, timeout=10 * S)
    expect(page.locator("#app-title")).to_be_focused()
    tab_to("#rows")
    keys.press("Control+a")
    keys.type("300")
    keys.press("Enter")  # submits the form
    tr = page.locator("#reports tbody tr").first
    expect(tr).to_have_attribute("data-status", "succeeded", timeout=30 * S)
    # The toast first (it leaves by itself after a while): its link, then its close button.
    tab_to("#toasts .toast-link", limit=60)
    keys.press("Enter")
    expect(tr).to_be_focused()
    tab_to("#toasts .toast-close", limit=60)
    keys.press("Enter")
    expect(page.locator("#toasts .toast")).to_have_count(0)
    assert page.evaluate("document.activeElement !== document.body")
    tab_to("#reports button.download")
    with page.expect_download(timeout=15 * S) as download:
        keys.press("Enter")
    download.value.save_as(saved := tmp_path / "k.xlsx")
    assert sum(1 for _ in openpyxl.load_workbook(saved, read_only=True).active.iter_rows()) == 302
    tab_to("#reports button.delete")
    keys.press("Enter")
    expect(page.locator("#confirm-no")).to_be_focused()
    keys.press("Tab")
    expect(page.locator("#confirm-yes")).to_be_focused()
    keys.press("Enter")
    expect(page.locator("#reports tbody tr")).to_have_count(0)
    # Focus stays somewhere useful (not lost to <body>) when the focused row goes.
    assert page.evaluate("document.activeElement !== document.body")
    assert page.errors == []
    page.context.close()


def test_phone_width_shows_everything_without_sideways_scrolling(browser, site):
    user = site.api.new_user()
    finished = user.create({"rows": 50, "columns": 3, "seed": 1})["id"]
    user.wait_status(finished, ("succeeded",), 30)
    page = open_page(new_context(browser, PHONE), site.url)
    assert fits_width(page)
    assert_accessible(page, "sign-in at 375 px")
    shot(page, "phone-signin")
    sign_in(page, user.email, user.password)
    running = start_report(page, LONG, columns=8)
    expect(row(page, running)).to_have_attribute("data-status", "running", timeout=20 * S)
    for label in ("Status", "Progress", "Rows", "Created"):  # each card labels its values
        cell = row(page, running).locator(f"td[data-label={label}]")
        assert cell.evaluate("td => getComputedStyle(td, '::before').content") == f'"{label}"'
    for selector in ("#create-button", "#signout-button", f"#report-{finished} button.download",
                     f"#report-{running} button.cancel"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], selector
        assert box["height"] >= 24, f"{selector} is too small to tap"
    assert fits_width(page)
    assert_accessible(page, "list at 375 px")
    shot(page, "phone-list")
    row(page, running).locator("button.cancel").click()
    expect(toast(page, "report.cancelled", running)).to_be_visible(timeout=15 * S)
    assert fits_width(page)
    shot(page, "phone-toast", full_page=False)
    assert page.errors == []
    page.context.close()


def test_network_drop_shows_what_was_missed_once_when_back(browser, site):
    user = site.api.new_user()
    context = new_context(browser)
    page = open_page(context, site.url)
    sign_in(page, user.email, user.password)
    state = page.locator("#socket-state")

    def missed_while_offline() -> str:
        context.set_offline(True)
        expect(state).to_have_attribute("data-state", "offline", timeout=5 * S)
        report = user.create({"rows": 50, "columns": 2, "seed": 3})["id"]
        user.wait_status(report, ("succeeded",), 30)
        page.evaluate("0")
        assert row(page, report).count() == 0 and toast(page, "report.succeeded", report).count() == 0
        return report

    # Offline before the page has had any event: it has no seq to replay from, so it reloads the list.
    first = missed_while_offline()
    assert_accessible(page, "offline")
    shot(page, "offline")
    context.set_offline(False)
    expect(state).to_have_attribute("data-state", "online", timeout=15 * S)
    expect(toast(page, "report.succeeded", first)).to_have_count(1, timeout=10 * S)
    expect(row(page, first)).to_have_attribute("data-status", "succeeded")

    # A live event gives it a seq; offline again, the notifier replays what it missed from there.
    live = start_report(page, 50)
    expect(toast(page, "report.succeeded", live)).to_have_count(1, timeout=30 * S)
    second = missed_while_offline()
    context.set_offline(False)
    expect(state).to_have_attribute("data-state", "online", timeout=15 * S)
    expect(toast(page, "report.succeeded", second)).to_have_count(1, timeout=10 * S)
    expect(row(page, second).locator("td[data-label=Report] .r-name")).to_have_text("Demo sales sheet",
                                                                                   timeout=5 * S)
    # Its toast, made from the replayed event alone, gets the report's details once the API gives them.
    expect(toast(page, "report.succeeded", second)).to_contain_text("Demo sales sheet · 50 × 2", timeout=5 * S)
    # Once more down and up, then a live event: each report was told exactly once, in order.
    context.set_offline(True)
    expect(state).to_have_attribute("data-state", "offline", timeout=5 * S)
    context.set_offline(False)
    expect(state).to_have_attribute("data-state", "online", timeout=15 * S)
    last = user.create({"rows": 50, "columns": 2, "seed": 4})["id"]
    expect(toast(page, "report.succeeded", last)).to_have_count(1, timeout=30 * S)
    assert toasts(page) == [("report.succeeded", r) for r in (first, live, second, last)]
    assert page.errors == []
    shot(page, "back-online")
    context.close()


def test_registration_off_hides_sign_up_and_tokens_are_refreshed_before_they_expire(browser, closed_site, stack):
    """...and the page's socket takes each fresh token (`auth.refresh`), so it stays the one connection past
    the first token's expiry (the server would end it otherwise)."""
    page = open_page(new_context(browser, transports=["websocket"]), closed_site.url)
    websockets = []
    page.on("websocket", lambda ws: websockets.append(ws))
    expect(page.locator("#signin-view")).to_be_visible()
    expect(page.locator("#signup-offer")).to_have_attribute("data-registration", "closed")
    expect(page.locator("#signup-offer")).to_be_hidden()
    assert requests.post(closed_site.url + "/v1/auth/register", json={}, timeout=5).status_code == 404
    # The user comes from the stack's own auth (registration on there; the database is shared).
    email, password = Api(stack.auth_url, stack.reports_url).register()
    refreshes = []
    page.on("response", lambda r: r.url.endswith("/v1/auth/refresh") and refreshes.append(r.status))
    sign_in(page, email, password)
    # 8 s tokens, refreshed at 80 % of their life (6.4 s): twice within 25 s, each rotation accepted.
    wait_until(lambda: page.evaluate("0") == 0 and len(refreshes) >= 2, 25, "two token refreshes")
    assert set(refreshes) == {200}
    assert len(websockets) == 1 and not websockets[0].is_closed(), "the socket was replaced, not kept"
    expect(page.locator("#socket-state")).to_have_attribute("data-state", "online")
    report_id = start_report(page, 50)  # with the third access token, the first long expired
    expect(toast(page, "report.succeeded", report_id)).to_be_visible(timeout=30 * S)
    expect(page.locator("#signin-view")).to_be_hidden()
    assert page.errors == []
    page.context.close()


def test_a_login_logged_out_elsewhere_signs_the_page_out_and_says_why(browser, site):
    user = site.api.new_user()
    page = open_page(new_context(browser), site.url)
    logins = []
    page.on("response", lambda r: r.url.endswith("/v1/auth/login") and r.ok and logins.append(r.json()))
    sign_in(page, user.email, user.password)
    (tokens,) = logins
    r = requests.post(site.url + "/v1/auth/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"},
                      timeout=10)
    assert r.status_code == 204
    expect(page.locator("#signin-view")).to_be_visible(timeout=5 * S)
    expect(page.locator("#signin-notice")).to_have_text("This session was signed out. Please sign in again.")
    assert page.errors == []
    page.context.close()


def test_older_reports_come_page_by_page_with_the_api_cursor(browser, site):
    user = site.api.new_user()
    made = [user.create({"rows": 1, "columns": 1, "seed": i})["id"] for i in range(23)]
    page = signed_in_page(browser, site.url, user)
    expect(page.locator("#reports tbody tr")).to_have_count(20)  # the page asks for 20 at a time
    assert row_ids(page) == made[::-1][:20]  # newest first
    more = page.locator("#more-button")
    expect(more).to_be_visible()
    more.click()
    expect(page.locator("#reports tbody tr")).to_have_count(23)
    assert row_ids(page) == made[::-1]
    expect(more).to_be_hidden()
    # A report made now (elsewhere) lands at the top without disturbing the older pages.
    newest = user.create({"rows": 1, "columns": 1, "seed": 99})["id"]
    expect(row(page, newest)).to_have_attribute("data-status", "succeeded", timeout=30 * S)
    assert row_ids(page) == [newest, *made[::-1]]
    assert page.errors == []
    page.context.close()


@pytest.fixture()
def short_retention_site(stack):
    """A worker of its own that keeps the reports it makes RETENTION_SECONDS: time moved by a setting. Any
    worker's reconciler ends a retention that is due (the stack's too), so the metric is summed over both.
    (The module's failing_site, whose worker cannot reach the bucket, is not up yet: its tests come after.)"""
    with start_site(stack, worker_env={"REPORT_RETENTION_SECONDS": str(RETENTION_SECONDS),
                                       "WORKER_CONCURRENCY": "1"}) as s:
        yield s


def expired_total(*workers) -> float:
    """reportflow_worker_reports_expired_total, summed over the workers' /metrics."""
    total = 0.0
    for worker in workers:
        for line in requests.get(worker.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith("reportflow_worker_reports_expired_total "):
                total += float(line.split()[1])
    return total


def kept_until_text(page, iso: str) -> str:
    """What the page writes for `expires_at`, by its own formatter (the browser's locale and time zone)."""
    return "kept until " + page.evaluate("async (iso) => (await import('/static/js/model.js')).formatDateTime(iso)",
                                         iso)


def test_retention_shown_and_an_expired_report_told_and_gone(browser, site, short_retention_site, stack):
    """Nothing faked: a report is kept (its "kept until" is the API's expires_at), then one made by a worker
    that keeps reports RETENTION_SECONDS expires for real: the worker's reconciler makes it `expired` and
    deletes its object from the bucket (the metric moves), its download is 410 `gone`, and the page says so,
    on the download and on the next sign-in."""
    # Kept for the default retention (the stack's worker: a week).
    keeper = site.api.new_user()
    kept = keeper.create({"rows": 5, "columns": 2, "seed": 1})["id"]
    kept_report = keeper.wait_status(kept, ("succeeded",), 30)
    assert datetime.fromisoformat(kept_report["expires_at"]) - datetime.fromisoformat(kept_report["finished_at"]) \
        == timedelta(days=7)
    page = signed_in_page(browser, site.url, keeper)
    expect(row(page, kept).locator("td[data-label=Finished]")).to_contain_text(
        kept_until_text(page, kept_report["expires_at"]))
    page.context.close()

    # Made on the site whose worker keeps reports RETENTION_SECONDS; watched on the page until it is ready.
    short = short_retention_site
    user = short.api.new_user()
    page = signed_in_page(browser, short.url, user)
    report_id = start_report(page, 5, 2)
    tr = row(page, report_id)
    expect(tr).to_have_attribute("data-status", "succeeded", timeout=30 * S)
    expect(tr.locator("button.download")).to_have_count(1)
    ready = user.get(report_id)
    assert datetime.fromisoformat(ready["expires_at"]) - datetime.fromisoformat(ready["finished_at"]) \
        == timedelta(seconds=RETENTION_SECONDS)
    bucket, prefix = stack.infra.s3.client(), f"reports/{user.me()['id']}/{report_id}"

    def objects() -> list[str]:
        return [o["Key"] for o in bucket.list_objects_v2(Bucket=stack.infra.s3.bucket, Prefix=prefix)
                .get("Contents", [])]
    assert len(objects()) == 1
    workers = (stack.worker, short.worker)
    before = expired_total(*workers)

    # The retention ends: the report stays, expired; its file is gone from the bucket; the metric moved.
    expired = user.wait_status(report_id, ("expired",), RETENTION_SECONDS + 30)
    assert (expired["expires_at"], expired["rows"]) == (ready["expires_at"], ready["rows"])
    assert "download_url" not in expired
    wait_until(lambda: objects() == [], 30, "the expired report's object to be deleted from the bucket")
    wait_until(lambda: expired_total(*workers) - before >= 1, 15, "reportflow_worker_reports_expired_total to move")
    gone = user.request("GET", f"/v1/reports/{report_id}/download", allow_redirects=False)
    assert gone.status_code == 410 and gone.headers["Content-Type"].startswith("application/problem+json")
    assert gone.json()["code"] == "gone"

    # The page still offers the download it knew of: the API's 410 is explained, and the row updated.
    tr.locator("button.download").click()
    note = page.locator(f"#toasts .toast-error[data-report-id='{report_id}']")
    expect(note).to_contain_text("This report has expired")
    expect(tr).to_have_attribute("data-status", "expired")
    expect(tr.locator(".badge")).to_have_text("Expired")
    expect(tr.locator("button.download")).to_have_count(0)
    expect(tr.locator("button.delete")).to_have_count(1)
    expect(tr.locator("td[data-label=Finished]")).not_to_contain_text("kept until")
    assert_accessible(page, "list with an expired report")
    shot(page, "expired")
    assert page.errors == []
    page.context.close()

    # Signed in afresh, the list says it too; the owner can delete it.
    page = signed_in_page(browser, short.url, user)
    tr = row(page, report_id)
    expect(tr).to_have_attribute("data-status", "expired")
    expect(tr.locator("button.download")).to_have_count(0)
    tr.locator("button.delete").click()
    page.click("#confirm-yes")
    expect(tr).to_have_count(0)
    assert user.request("GET", f"/v1/reports/{report_id}").status_code == 404
    assert page.errors == []
    page.context.close()


def test_a_failed_job_is_told_and_stays_told(browser, failing_site):
    user = failing_site.api.new_user()
    page = signed_in_page(browser, failing_site.url, user)
    report_id = start_report(page, 100)
    told = toast(page, "report.failed", report_id)
    expect(told).to_be_visible(timeout=60 * S)
    expect(told).to_contain_text("Report failed")
    expect(told).to_contain_text("The report could not be built (internal error).")
    tr = row(page, report_id)
    expect(tr).to_have_attribute("data-status", "failed")
    expect(tr.locator(".badge")).to_have_text("Failed")
    expect(tr.locator(".r-error")).to_have_text("The report could not be built (internal error).")
    expect(tr.locator("button.download")).to_have_count(0)
    expect(tr.locator("button.delete")).to_have_count(1)
    assert user.get(report_id)["status"] == "failed"
    assert_accessible(page, "list with a failed report")
    shot(page, "failed", full_page=False)
    # A failure is not a toast that leaves on its own: it goes when dismissed.
    assert told.evaluate("t => t.classList.contains('toast-failed')")
    told.locator(".toast-close").click()
    expect(told).to_have_count(0)
    assert page.errors == []
    page.context.close()
