"""The user's flow across every service process: two users, two notifier processes, real files."""
from __future__ import annotations

import io

import openpyxl
import requests

from reportflow_worker.builders.demo import TOTAL_LABEL, demo_columns, demo_rows, demo_totals
from support.clients import SocketClient


def download_workbook(user, report_id: str):
    r = user.request("GET", f"/v1/reports/{report_id}/download", allow_redirects=False)
    assert r.status_code == 302, r.text
    location = r.headers["Location"]
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=" in location  # a presigned, expiring URL
    file = requests.get(location, timeout=30)
    assert file.status_code == 200
    assert file.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    return openpyxl.load_workbook(io.BytesIO(file.content), read_only=True), len(file.content)


def expected_sheet(rows: int, columns: int, seed: int) -> list[list]:
    cols = demo_columns(columns)
    data = list(demo_rows(rows, columns, seed))
    sums = [sum(r[i] for r in data) if kind in ("int", "float") else 0 for i, (_n, kind) in enumerate(cols)]
    return [[name for name, _k in cols], *data, demo_totals(cols, sums)]


def as_plain(cell):
    return cell.date() if hasattr(cell, "date") and callable(cell.date) else cell


def test_each_user_is_told_only_of_their_own_reports(api, stack):
    alice, bob = api.new_user(), api.new_user()
    # each user listens on both notifier processes: delivery must cross processes through Redis
    alice_socks = [SocketClient(n.url, alice.token).connect() for n in stack.notifiers]
    bob_socks = [SocketClient(n.url, bob.token).connect() for n in stack.notifiers]
    try:
        a = alice.create({"rows": 3000, "columns": 9, "seed": 7})
        b = bob.create({"rows": 2000, "columns": 4, "seed": 8})
        for sock in alice_socks:
            sock.wait_event("report.succeeded", a["id"], 60)
        for sock in bob_socks:
            sock.wait_event("report.succeeded", b["id"], 60)

        for sock in alice_socks:
            assert {p["report_id"] for _n, p in sock.events} == {a["id"]}
            assert sock.seqs() == sorted(set(sock.seqs())), "seq strictly increasing, no repeats"
        for sock in bob_socks:
            assert {p["report_id"] for _n, p in sock.events} == {b["id"]}
        # both processes delivered the same events to alice
        assert alice_socks[0].events == alice_socks[1].events

        done = alice_socks[0].wait_event("report.succeeded", a["id"])
        assert done["rows"] == 3000 and done["size_bytes"] > 0
        assert done["download_url"] == f"/v1/reports/{a['id']}/download"
        report = alice.get(a["id"])
        assert report["status"] == "succeeded" and report["progress"] == 1.0
        assert report["rows"] == 3000 and report["size_bytes"] == done["size_bytes"]
        assert report["download_url"] == done["download_url"]
    finally:
        for sock in alice_socks + bob_socks:
            sock.disconnect()


def test_downloaded_file_has_exact_rows_header_totals_and_values(api, stack):
    user = api.new_user()
    sock = SocketClient(stack.notifiers[1].url, user.token).connect()
    try:
        rep = user.create({"rows": 1500, "columns": 10, "seed": 12345})
        sock.wait_event("report.succeeded", rep["id"], 60)
    finally:
        sock.disconnect()
    wb, size = download_workbook(user, rep["id"])
    rows = [[as_plain(c) for c in row] for row in wb.active.iter_rows(values_only=True)]
    expected = expected_sheet(1500, 10, 12345)
    assert len(rows) == 1 + 1500 + 1
    assert rows[0] == expected[0]
    assert rows[-1][0] == TOTAL_LABEL
    assert rows == expected
    assert size == user.get(rep["id"])["size_bytes"]


def test_progress_events_are_throttled_and_increasing(api, stack):
    user = api.new_user()
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    try:
        rep = user.create({"rows": 150_000, "columns": 8, "seed": 1})
        sock.wait_event("report.succeeded", rep["id"], 120)
    finally:
        sock.disconnect()
    progress = [p for n, p in sock.of_report(rep["id"]) if n == "report.progress"]
    assert progress, "a long report announces progress"
    values = [p["progress"] for p in progress]
    assert values == sorted(values) and all(0 < v < 1 for v in values)
    from datetime import datetime
    times = [datetime.fromisoformat(p["time"]) for p in progress]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= 0.15 for g in gaps), f"progress events closer than the 0.2 s interval: {gaps}"


def test_activity_report_lists_the_callers_reports_only(api, stack):
    user, other = api.new_user(), api.new_user()
    mine = [user.create({"rows": 10, "columns": 2, "seed": i})["id"] for i in range(3)]
    other.create({"rows": 10, "columns": 2, "seed": 99})
    for rid in mine:
        user.wait_status(rid, ("succeeded",))
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    try:
        act = user.create(report_type="activity")
        sock.wait_event("report.succeeded", act["id"], 60)
    finally:
        sock.disconnect()
    wb, _size = download_workbook(user, act["id"])
    rows = list(wb.active.iter_rows(values_only=True))
    assert rows[0][:3] == ("id", "type", "status")
    listed = {r[0] for r in rows[1:-1]}
    assert set(mine) <= listed and len(listed) == 4  # three demo reports plus the activity report itself
    assert rows[-1][0] == "TOTAL" and rows[-1][1] == 4
