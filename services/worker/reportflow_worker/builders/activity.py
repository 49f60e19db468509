"""The `activity` report: the caller's own report history, read from the database."""
from __future__ import annotations

import uuid

from openpyxl import Workbook
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common.db import Report

from . import CHUNK_ROWS, ProgressCallback

HEADER = ("id", "type", "status", "created_at", "finished_at", "rows", "size_bytes")


def _naive(value):
    return value.replace(tzinfo=None) if value is not None else None  # xlsx has no time zones: UTC


def build_activity_sheet(path: str, sessions: sessionmaker[Session], user_id: uuid.UUID,
                         on_rows: ProgressCallback) -> int:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("activity")
    ws.append(list(HEADER))
    count = total_rows = total_bytes = 0
    with sessions() as s:
        q = select(Report).where(Report.user_id == user_id).order_by(Report.created_at, Report.id)
        for r in s.scalars(q.execution_options(yield_per=CHUNK_ROWS)):
            ws.append([str(r.id), r.type, r.status, _naive(r.created_at), _naive(r.finished_at), r.rows,
                       r.size_bytes])
            count += 1
            total_rows += r.rows or 0
            total_bytes += r.size_bytes or 0
            if count % CHUNK_ROWS == 0:
                on_rows(count, count)
    ws.append(["TOTAL", count, None, None, None, total_rows, total_bytes])
    on_rows(count, count)
    wb.save(path)
    return count
