"""The `activity` report: the caller's own report history, read from the database."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common.db import Report

from . import CHUNK_ROWS, ProgressCallback, xlsx_writer
from .tables import DATETIME_FORMAT, GENERAL, INTEGER_FORMAT, Column, Sheet

HEADER = ("id", "type", "status", "created_at", "finished_at", "rows", "size_bytes")
COLUMNS = (Column("id", GENERAL, 38), Column("type", GENERAL, 10), Column("status", GENERAL, 11),
           Column("created_at", DATETIME_FORMAT, 20), Column("finished_at", DATETIME_FORMAT, 20),
           Column("rows", INTEGER_FORMAT, 11), Column("size_bytes", INTEGER_FORMAT, 14))
TOTAL_LABEL = "TOTAL"


def _naive(value):
    return value.replace(tzinfo=None) if value is not None else None  # xlsx has no time zones: UTC


class _History:
    """The rows, read in chunks from one session, counted and summed on the way to the writer."""

    def __init__(self, sessions: sessionmaker[Session], user_id: uuid.UUID, on_rows: ProgressCallback):
        self.sessions, self.user_id, self.on_rows = sessions, user_id, on_rows
        self.count = self.total_rows = self.total_bytes = 0

    def rows(self) -> Iterator[list]:
        with self.sessions() as s:
            q = select(Report).where(Report.user_id == self.user_id).order_by(Report.created_at, Report.id)
            for r in s.scalars(q.execution_options(yield_per=CHUNK_ROWS)):
                yield [str(r.id), r.type, r.status, _naive(r.created_at), _naive(r.finished_at), r.rows,
                       r.size_bytes]
                self.count += 1
                self.total_rows += r.rows or 0
                self.total_bytes += r.size_bytes or 0
                if self.count % CHUNK_ROWS == 0:
                    self.on_rows(self.count, self.count)
        self.on_rows(self.count, self.count)

    def footer(self) -> list[list]:
        """The number of reports under `type`, and the sums of rows and bytes."""
        return [[TOTAL_LABEL, self.count, None, None, None, self.total_rows, self.total_bytes]]


def build_activity_sheet(path: str, sessions: sessionmaker[Session], user_id: uuid.UUID,
                         on_rows: ProgressCallback, engine: str = "lean") -> int:
    history = _History(sessions, user_id, on_rows)
    xlsx_writer(engine)(path, [Sheet("activity", COLUMNS, history.rows(), history.footer)])
    return history.count
