"""The outbox: terminal events (report.succeeded|failed|cancelled) committed in PostgreSQL with the state
they announce, then published to the event log.

Whoever finishes a job (the worker, its reconciler, the reports service cancelling a queued job) calls
`add_terminal_event` inside that transaction and `OutboxPublisher.publish_after_commit` after it; the
reconciler publishes whatever is still pending. Publishing is idempotent (`EventLog.publish_once`), so a
retry never numbers the same event twice.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, timedelta

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .contracts import CANCELLED, EVENT_CANCELLED, EVENT_FAILED, EVENT_SUCCEEDED, FAILED, SUCCEEDED
from .db import OutboxEvent, Report, transaction, utcnow
from .events import EventLog

log = logging.getLogger(__name__)
_MARK_PUBLISHED = "UPDATE event_outbox SET published_at = %(now)s WHERE id = %(id)s AND published_at IS NULL"


def terminal_event(report: Report) -> tuple[str, dict]:
    """The event that announces a report's terminal state, built from its row (one definition for every
    producer: the worker, the reconciler, the reports service)."""
    report_id = str(report.id)
    if report.status == SUCCEEDED:
        return EVENT_SUCCEEDED, {
            "report_id": report_id, "rows": report.rows, "size_bytes": report.size_bytes,
            "download_url": f"/v1/reports/{report_id}/download",
            # lets the notifier measure creation -> notification, the wait the person sees
            "created_at": report.created_at.astimezone(UTC).isoformat()}
    if report.status == FAILED:
        return EVENT_FAILED, {"report_id": report_id, "error": report.error}
    if report.status == CANCELLED:
        return EVENT_CANCELLED, {"report_id": report_id}
    raise ValueError(f"report {report_id} is {report.status}, not finished")


def add_terminal_event(session: Session, report: Report) -> OutboxEvent:
    """Called inside the transaction that finishes `report`: its event commits with the state it announces."""
    event, payload = terminal_event(report)
    entry = OutboxEvent(user_id=report.user_id, report_id=report.id, event=event, payload=payload,
                        created_at=utcnow())
    session.add(entry)
    session.flush()  # assigns the id
    return entry


@dataclass(frozen=True)
class PendingEvent:
    """An outbox row as publishers need it, detached from any session."""
    id: int
    user_id: uuid.UUID
    event: str
    payload: dict

    @classmethod
    def of(cls, entry: OutboxEvent) -> PendingEvent:
        return cls(entry.id, entry.user_id, entry.event, dict(entry.payload))


class OutboxPublisher:
    """Publishes committed terminal events to the event log and marks them published."""

    def __init__(self, sessions: sessionmaker[Session], events: EventLog, statements: Engine):
        """`statements` runs the mark, one statement: on an AUTOCOMMIT engine (`db.engines_for`) one round trip
        instead of three (BEGIN, UPDATE, COMMIT); on any other engine `begin()` commits it just the same."""
        self.sessions, self.events, self.statements = sessions, events, statements

    def publish(self, pending: PendingEvent) -> None:
        """Publish one committed event and mark it; raises on a Redis or PostgreSQL error (then it stays
        pending, and publishing it again later cannot number it twice)."""
        self.events.publish_once(pending.id, str(pending.user_id), pending.event, pending.payload)
        mark = {"id": pending.id, "now": utcnow()}  # SQL text: the ORM's update was most of this step's CPU
        with self.statements.begin() as conn:  # in AUTOCOMMIT: committed by the statement itself
            conn.exec_driver_sql(_MARK_PUBLISHED, mark)

    def publish_after_commit(self, pending: PendingEvent | None) -> bool:
        """What producers call right after their commit: best effort, the reconciler publishes what fails."""
        if pending is None:
            return False
        try:
            self.publish(pending)
            return True
        except Exception as exc:  # any failure leaves the row pending for the reconciler
            log.warning("terminal event not published yet; the reconciler will", extra={
                "outbox_id": pending.id, "event": pending.event, "error": str(exc)})
            return False

    def publish_pending(self, older_than_seconds: float, limit: int = 200) -> int:
        """Publish events committed more than `older_than_seconds` ago and still pending, oldest first
        (younger ones are left to their producer). Returns how many; raises on the first failure."""
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        with self.sessions() as s:
            rows = list(s.scalars(select(OutboxEvent).where(OutboxEvent.published_at.is_(None),
                                                            OutboxEvent.created_at < cutoff)
                                  .order_by(OutboxEvent.id).limit(limit)))
        for entry in rows:
            self.publish(PendingEvent.of(entry))
        return len(rows)

    def purge_published(self, older_than_seconds: float, limit: int = 1000) -> int:
        """Delete published rows older than the event history keeps events (nobody can need them again)."""
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        with transaction(self.sessions) as s:
            ids = select(OutboxEvent.id).where(OutboxEvent.published_at < cutoff).limit(limit).scalar_subquery()
            return s.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(ids))).rowcount
