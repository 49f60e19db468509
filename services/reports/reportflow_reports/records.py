"""Report rows as the API sees them: create, look up (always by owner), list, cancel and delete."""
from __future__ import annotations

import functools
import json
import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Row, Select, and_, bindparam, case, func, literal, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common import contracts as c
from reportflow_common.db import Prepared, Report, argument, literal_sql, transaction, utcnow
from reportflow_common.outbox import PendingEvent, add_terminal_event
from reportflow_common.problems import Problem
from reportflow_common.scheduling import active_jobs, newcomer_place, queue_counts, queue_position_of

# The hot paths (GET and POST of one report) are Core statements built once per process and run on an
# AUTOCOMMIT connection: one round trip each (no BEGIN, no ROLLBACK or COMMIT of their own), and no ORM
# identity map. They return rows with the same attributes as a Report (`row.status`, `row.params`, ...).
REPORTS = Report.__table__


@functools.cache
def _report_statement() -> Select:
    """One report by its id (`get_owned` checks the owner)."""
    return select(REPORTS).where(REPORTS.c.id == bindparam("id"))


@functools.cache
def _owned_with_position(order: str) -> Prepared:
    """One report by its id, with its `queue_position` in the run order `order` when it is queued and its owner
    is the user given: what GET /v1/reports/{id} reads, prepared (planning the ranking cost PostgreSQL more than
    running it). Found by the primary key alone, and the owner checked by `get_owned`: with the user's id in the
    WHERE clause a plan made while the table was small (a prepared statement keeps it) found the row through the
    user's index (user_id, created_at, id), walking every report of that user, dead ones too, on each GET
    (bench/README.md, GET by its primary key)."""
    mine = REPORTS.c.user_id == argument(2, "uuid")
    statement = select(REPORTS, case((mine, queue_position_of(order, REPORTS.c.id)), else_=None).label(
        "queue_position")).where(REPORTS.c.id == argument(1, "uuid"))
    return Prepared(f"report_owned_{order}", statement, ("uuid", "uuid"))


# The columns a new report is inserted with, in the order of `create_statement`'s arguments ($1 ...), and their types.
_CREATE_ARGUMENTS = (("id", "uuid"), ("user_id", "uuid"), ("type", "varchar"), ("params", "jsonb"),
                     ("created_at", "timestamptz"), ("idempotency_key", "varchar"), ("request_hash", "varchar"))
_MAX_ACTIVE = len(_CREATE_ARGUMENTS) + 1  # the last argument: the user's limit of queued and running reports
# what every new report starts with (Python-side defaults of `Report` written out, as a prepared statement has none)
_CREATE_CONSTANTS = {"status": c.QUEUED, "progress": 0.0, "attempts": 0, "cancel_requested": False}


@functools.cache
def create_statement(order: str) -> Prepared:
    """Insert a queued report only while its user has fewer than `max_active` queued or running ones, and
    return it with its `queue_position` in `order`, in one statement (no row back means the limit was reached).
    The limit counts that user's rows only; the place, counted over every active job (as they were before this
    one: a subquery of RETURNING sees the table as the statement started), is computed only for a row inserted,
    so a 429 stays cheap whatever the backlog. Prepared: planning this statement cost PostgreSQL more than
    running it (bench/README.md, the prepared create). SQL text around the parts SQLAlchemy renders
    (`literal_sql`): an INSERT's RETURNING subquery and its CTE do not render with their values."""
    args = {name: argument(n, pg_type) for n, (name, pg_type) in enumerate(_CREATE_ARGUMENTS, 1)}
    columns = (*args, "rung_at", *_CREATE_CONSTANTS)
    active = select(func.count()).select_from(REPORTS).where(
        REPORTS.c.user_id == args["user_id"], active_jobs()).scalar_subquery()
    values = select(*args.values(), args["created_at"], *(literal(value, REPORTS.c[name].type)
                                                          for name, value in _CREATE_CONSTANTS.items()))
    values = values.where(active < argument(_MAX_ACTIVE, "integer"))
    place = newcomer_place(order, queue_counts(args["created_at"], args["id"]).cte("counts"), args["user_id"])
    sql = (f"INSERT INTO reports ({', '.join(columns)}) {literal_sql(values)} "  # noqa: S608 (no value in it)
           f"RETURNING {', '.join(f'reports.{column.name}' for column in REPORTS.c)}, "
           f"({literal_sql(place.element)}) AS queue_position")
    return Prepared(f"create_report_{order}", sql, tuple(pg_type for _, pg_type in _CREATE_ARGUMENTS) + ("integer",))


def report_json(r: Report, queue_position: int | None = None) -> dict:
    body = {
        "id": str(r.id), "type": r.type, "params": r.params, "status": r.status, "progress": r.progress,
        "created_at": _iso(r.created_at), "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
        "rows": r.rows, "size_bytes": r.size_bytes, "error": r.error, "expires_at": _iso(r.expires_at),
        "queue_position": queue_position,
    }
    if r.status == c.SUCCEEDED:
        body["download_url"] = download_path(r.id)
    return body


def is_past_retention(r: Report) -> bool:
    """Expired, or due to be: a download is refused from `expires_at` on, whether or not the worker's
    reconciler has deleted the file yet."""
    return r.status == c.EXPIRED or (r.expires_at is not None and r.expires_at <= utcnow())


def download_path(report_id) -> str:
    return f"/v1/reports/{report_id}/download"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def get_owned(reads: Engine, user_id: str, report_id: uuid.UUID | None,
              position_order: str | None = None) -> Row | None:
    """The caller's report (a row with a Report's attributes), or None: another user's report is
    indistinguishable from a missing one. With `position_order` the row also has `queue_position`. `reads` is an
    AUTOCOMMIT engine."""
    if report_id is None:
        return None
    owner = uuid.UUID(user_id)
    if position_order is not None:
        report = _owned_with_position(position_order).first(reads, str(report_id), str(owner))
    else:
        with reads.connect() as conn:
            report = conn.execute(_report_statement(), {"id": report_id}).first()
    return report if report is not None and report.user_id == owner else None


def find_idempotent(sessions: sessionmaker[Session], user_id: str, key: str) -> Report | None:
    with sessions() as s:
        return s.scalar(select(Report).where(Report.user_id == uuid.UUID(user_id), Report.idempotency_key == key))


def earlier_answer(sessions: sessionmaker[Session], user_id: str, key: str | None, fingerprint: str) -> Report | None:
    """The report an Idempotency-Key already made within the window (409 if it was for another request)."""
    earlier = find_idempotent(sessions, user_id, key) if key else None
    if earlier is None or earlier.created_at <= utcnow() - timedelta(seconds=c.IDEMPOTENCY_WINDOW_SECONDS):
        return None
    if earlier.request_hash != fingerprint:
        raise Problem(409, c.CONFLICT, "This Idempotency-Key was already used for a different request.")
    return earlier


def create_report(sessions: sessionmaker[Session], reads: Engine, user_id: str, report_type: str, params: dict,
                  idempotency_key: str | None, fingerprint: str, max_active: int,
                  order: str) -> tuple[Report | Row | None, bool]:
    """Insert a queued report, committed, unless the user already has `max_active` queued or running ones;
    (report, created), (None, False) at the limit. A created report is a row with its `queue_position` in
    `order` as well. Losing a race for the same Idempotency-Key returns the
    winner's report (created=False). `rung_at` says its doorbell is being rung now: if that fails, or this
    process dies first, the worker's reconciler rings for it later. `reads` is an AUTOCOMMIT engine: the
    insert is one statement, its own transaction."""
    uid = uuid.UUID(user_id)
    if idempotency_key:
        with transaction(sessions) as s:  # a key older than the window is free again
            s.execute(update(Report).where(
                Report.user_id == uid, Report.idempotency_key == idempotency_key,
                Report.created_at <= utcnow() - timedelta(seconds=c.IDEMPOTENCY_WINDOW_SECONDS),
            ).values(idempotency_key=None))
    try:
        report = create_statement(order).first(
            reads, *_create_arguments(uid, report_type, params, idempotency_key, fingerprint, max_active))
    except IntegrityError:
        winner = earlier_answer(sessions, user_id, idempotency_key, fingerprint)
        if winner is None:
            raise
        return winner, False
    return report, report is not None


def _create_arguments(user_id: uuid.UUID, report_type: str, params: dict, idempotency_key: str | None,
                      fingerprint: str | None, max_active: int) -> tuple:
    """`create_statement`'s arguments for a new queued report."""
    return (str(uuid.uuid4()), str(user_id), report_type, json.dumps(params), utcnow(), idempotency_key,
            fingerprint, max_active)


def open_connection(reads: Engine, order: str, sessions: sessionmaker[Session]) -> None:
    """What this process's first requests would do once: open a connection of `reads`, PREPARE the create and
    the read of one report on it, and open a connection of `sessions` too. Raises on an outage."""
    with reads.connect() as conn:
        create_statement(order).prepare_on(conn)
        _owned_with_position(order).prepare_on(conn)
    with sessions() as session:
        session.connection()


def list_reports(sessions: sessionmaker[Session], user_id: str, status: str | None, limit: int,
                 cursor: tuple[datetime, uuid.UUID] | None) -> tuple[list[Report], tuple | None]:
    """Newest first, keyset-paginated on (created_at, id) so pages never skip or repeat a row."""
    q = select(Report).where(Report.user_id == uuid.UUID(user_id))
    if status:
        q = q.where(Report.status == status)
    if cursor:
        t, rid = cursor
        q = q.where(or_(Report.created_at < t, and_(Report.created_at == t, Report.id < rid)))
    q = q.order_by(Report.created_at.desc(), Report.id.desc()).limit(limit + 1)
    with sessions() as s:
        rows = list(s.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, ((rows[-1].created_at, rows[-1].id) if more else None)


class Deletion(NamedTuple):
    """What DELETE did: 'cancelled' (was queued; kept for the retention, with its report.cancelled `event`,
    committed in the same transaction for the caller to publish), 'cancel_requested' (running: the worker
    stops it) or 'deleted' (finished or expired: the caller removes its file, `storage_key`, if it had one)."""
    outcome: str
    event: PendingEvent | None = None
    storage_key: str | None = None


def cancel_or_delete(sessions: sessionmaker[Session], report: Report | Row, retention: timedelta) -> Deletion:
    """Cancel or delete `report`, as its row is now: guarded updates decide races with the worker, and the
    file to remove is the deleted row's (the report may have finished since `report` was read)."""
    with transaction(sessions) as s:
        now = utcnow()
        cancelled = s.scalar(update(Report).where(Report.id == report.id, Report.status == c.QUEUED).values(
            status=c.CANCELLED, finished_at=now, expires_at=now + retention, progress=report.progress)
            .returning(Report))
        if cancelled is not None:
            return Deletion("cancelled", PendingEvent.of(add_terminal_event(s, cancelled)))
        done = s.execute(update(Report).where(Report.id == report.id, Report.status == c.RUNNING).values(
            cancel_requested=True)).rowcount
        if done:
            return Deletion("cancel_requested")
        storage_key = s.scalar(REPORTS.delete().where(
            REPORTS.c.id == report.id, REPORTS.c.status.in_(c.FINISHED_STATUSES)).returning(REPORTS.c.storage_key))
        return Deletion("deleted", storage_key=storage_key)
