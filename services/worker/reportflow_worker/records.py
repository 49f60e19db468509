"""Guarded state changes of a report row: each UPDATE names the state it leaves, so a late or repeated
delivery of a job can never move a finished report (queued -> running -> succeeded|failed|cancelled)."""
from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common import contracts as c
from reportflow_common.db import Report, transaction, utcnow


def claim(sessions: sessionmaker[Session], report_id: uuid.UUID) -> Report | None:
    """queued (or running, when redelivered after a crash) -> running; None when there is nothing to run."""
    with transaction(sessions) as s:
        row = s.execute(
            update(Report)
            .where(Report.id == report_id, Report.status.in_(c.ACTIVE_STATUSES), Report.cancel_requested.is_(False))
            .values(status=c.RUNNING, started_at=utcnow(), attempts=Report.attempts + 1, progress=0.0)
            .returning(Report)
        ).scalar_one_or_none()
    return row


def load(sessions: sessionmaker[Session], report_id: uuid.UUID) -> Report | None:
    with sessions() as s:
        return s.get(Report, report_id)


def record_progress(sessions: sessionmaker[Session], report_id: uuid.UUID, progress: float) -> bool:
    """Store progress; False when the job should stop (a cancel was requested, or the row is gone)."""
    with transaction(sessions) as s:
        cancel = s.execute(
            update(Report).where(Report.id == report_id, Report.status == c.RUNNING)
            .values(progress=progress).returning(Report.cancel_requested)
        ).scalar_one_or_none()
    return cancel is False


def succeed(sessions: sessionmaker[Session], report_id: uuid.UUID, rows: int, size: int, key: str) -> bool:
    with transaction(sessions) as s:
        return s.execute(
            update(Report).where(Report.id == report_id, Report.status == c.RUNNING,
                                 Report.cancel_requested.is_(False))
            .values(status=c.SUCCEEDED, rows=rows, size_bytes=size, storage_key=key, progress=1.0,
                    finished_at=utcnow(), error=None)
        ).rowcount == 1


def fail(sessions: sessionmaker[Session], report_id: uuid.UUID, error: str) -> bool:
    with transaction(sessions) as s:
        return s.execute(
            update(Report).where(Report.id == report_id, Report.status.in_(c.ACTIVE_STATUSES))
            .values(status=c.FAILED, error=error, finished_at=utcnow())
        ).rowcount == 1


def cancel(sessions: sessionmaker[Session], report_id: uuid.UUID) -> bool:
    with transaction(sessions) as s:
        return s.execute(
            update(Report).where(Report.id == report_id, Report.status.in_(c.ACTIVE_STATUSES))
            .values(status=c.CANCELLED, finished_at=utcnow())
        ).rowcount == 1
