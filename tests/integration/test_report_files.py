"""Report files against the real servers: content types in S3, download names by format, the activity sheet
read from PostgreSQL by every xlsx engine (and read back with openpyxl)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from openpyxl import load_workbook
from sqlalchemy import update

from reportflow_common import contracts as c
from reportflow_common.db import Report, User, make_engine, make_session_factory, transaction
from reportflow_common.settings import WORKER, XLSX_ENGINES, load_settings
from reportflow_common.storage import S3Storage, report_key
from reportflow_worker.builders import build_report, report_output
from reportflow_worker.builders.tables import DATETIME_FORMAT, INTEGER_FORMAT

from .contract_checks import test_client


@pytest.fixture(scope="module")
def sessions(infra):
    engine = make_engine(infra.postgres.url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.mark.parametrize("fmt", c.REPORT_FORMATS)
def test_stored_files_carry_their_formats_content_type(infra, tmp_path, fmt):
    storage = S3Storage(load_settings(WORKER, infra.base_env()))
    output = report_output("demo", {"format": fmt})
    path = tmp_path / ("report" + output.extension)
    build_report("demo", {"rows": 5, "columns": 3, "seed": 1, "format": fmt}, str(path), lambda d, t: None,
                 sessions=None, user_id=None, xlsx_engine="lean")
    key = report_key(str(uuid.uuid4()), str(uuid.uuid4()), output.extension)
    assert storage.upload(key, str(path)) == path.stat().st_size  # the size the store confirmed
    head = infra.s3.client().head_object(Bucket=infra.s3.bucket, Key=key)
    assert key.endswith("." + fmt) and head["ContentType"] == output.content_type
    assert head["ContentLength"] == path.stat().st_size
    storage.delete(key)


def test_a_csv_report_downloads_as_a_csv_file(infra, reports_app, accounts, sessions):
    client, user = test_client(reports_app), accounts.new()
    created = client.post("/v1/reports", json={"type": "demo", "params": {"rows": 3, "format": "csv"}},
                          headers=user.headers).get_json()
    assert created["params"]["format"] == "csv"
    key = report_key(user.id, created["id"], ".csv")  # as the worker names it
    infra.s3.client().put_object(Bucket=infra.s3.bucket, Key=key, Body=b"date\r\n", ContentType="text/csv")
    with transaction(sessions) as s:
        s.execute(update(Report).where(Report.id == uuid.UUID(created["id"])).values(
            status="succeeded", storage_key=key, rows=3, size_bytes=6, progress=1.0))
    r = client.get(f"/v1/reports/{created['id']}/download", headers=user.headers)
    assert r.status_code == 302
    disposition = parse_qs(urlsplit(r.headers["Location"]).query)["response-content-disposition"][0]
    assert disposition == f'attachment; filename="demo-{created["id"]}.csv"'


def _history(sessions) -> uuid.UUID:
    """A user with three reports: one finished, one failed, one queued (no finish, no rows)."""
    start = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    with transaction(sessions) as s:
        user = User(email=f"activity-{uuid.uuid4().hex}@test.com", password_hash="x")
        s.add(user)
        s.flush()
        s.add_all([
            Report(user_id=user.id, type="demo", status="succeeded", created_at=start,
                   finished_at=start + timedelta(seconds=3), rows=1500, size_bytes=123_456),
            Report(user_id=user.id, type="demo", status="failed", created_at=start + timedelta(minutes=1),
                   finished_at=start + timedelta(minutes=2)),
            Report(user_id=user.id, type="activity", status="queued", created_at=start + timedelta(hours=1)),
        ])
        return user.id


def test_activity_sheet_is_the_same_from_every_engine(sessions, tmp_path):
    user_id = _history(sessions)
    cells = {}
    for engine in XLSX_ENGINES:
        path = tmp_path / f"activity-{engine}.xlsx"
        calls: list[tuple[int, int]] = []
        rows = build_report("activity", {}, str(path), lambda d, t, seen=calls: seen.append((d, t)),
                            sessions=sessions, user_id=user_id, xlsx_engine=engine)
        assert rows == 3 and calls[-1] == (3, 3)
        wb = load_workbook(path)
        ws = wb["activity"]
        assert ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:G4" and all(c.font.b for c in ws[1])
        assert ws["D2"].number_format == DATETIME_FORMAT and ws["G2"].number_format == INTEGER_FORMAT
        assert ws.column_dimensions["A"].width >= 36  # a whole uuid
        cells[engine] = [[cell.value for cell in row] for row in ws.iter_rows()]
        wb.close()
    reference = cells[XLSX_ENGINES[0]]
    assert reference[0] == ["id", "type", "status", "created_at", "finished_at", "rows", "size_bytes"]
    assert [r[1:3] for r in reference[1:4]] == [["demo", "succeeded"], ["demo", "failed"], ["activity", "queued"]]
    assert reference[1][3] == datetime(2025, 3, 4, 5, 6, 7, 890000)  # UTC, to the millisecond xlsx keeps
    assert reference[3][4:] == [None, None, None]
    assert reference[4] == ["TOTAL", 3, None, None, None, 1500, 123_456]
    for engine, values in cells.items():
        assert values == reference, engine
