"""State changes of report rows made by the worker and its reconciler. PostgreSQL holds the truth:

- `claim_next` takes the next runnable job (`queued -> running`) with a fresh attempt token and a lease, in
  the order `reportflow_common.scheduling.next_job` decides (fair across users, or FIFO).
- Every change an attempt makes afterwards names its token (`renew_lease`, `end_attempt`, `hand_back`), so
  an attempt whose job was taken back can never commit anything.
- The reconciler takes back running jobs whose lease ran out (`take_back_expired`), finds queued jobs
  whose wake-up message may be lost (`queued_to_ring`), and ends the retention of finished reports
  (`expire_due`, `forget_file`).
A job that ends (succeeded, failed, cancelled) gets its outbox event and its `expires_at` in the same
transaction.
"""
from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.engine import Engine, Row
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common import contracts as c
from reportflow_common.db import Prepared, Report, argument, literal_sql, transaction, utcnow
from reportflow_common.outbox import PendingEvent, add_terminal_event, terminal_event
from reportflow_common.scheduling import FAIR, job_cells, next_job, runnable


def _lease(seconds: float):
    return func.now() + timedelta(seconds=seconds)


def claim_next(statements: Engine, lease_seconds: float, order: str = FAIR,
               max_cells: int | None = None) -> Report | None:
    """The next runnable job in `order` (the lane: only among jobs of at most `max_cells` cells), now
    `running` under a new attempt token and lease; None when there is none (a detached `Report`). SKIP LOCKED lets
    concurrent claims take different jobs instead of waiting for each other.

    One statement, built once per process and prepared once per connection (`_claim`): building and compiling
    it for every job was most of a claim's CPU in the worker, and planning it most of PostgreSQL's (issue 14).
    Being one statement, it is its own transaction: on the worker's AUTOCOMMIT engine (`db.engines_for`) one
    round trip, committed when PostgreSQL answers, with no Session, BEGIN or COMMIT (any engine is correct:
    `begin()` commits on one that is not in AUTOCOMMIT)."""
    arguments = (str(uuid.uuid4()), timedelta(seconds=lease_seconds))
    claim = _claim(order, max_cells is not None)
    with statements.begin() as conn:
        row = claim.run(conn, *arguments, *(() if max_cells is None else (max_cells,))).first()
    return None if row is None else _report_of(row)


_REPORT_COLUMNS = tuple(Report.__table__.columns)


@functools.cache
def _claim(order: str, lane: bool) -> Prepared:
    """The claim, prepared, with arguments (token, lease[, max_cells]) and every other value inline. The order
    is `next_job`'s, so the worker claims in the order the reports service tells."""
    target = next_job(order, *([job_cells() <= argument(3, "bigint")] if lane else []))
    statement = (update(Report).where(Report.id == target, Report.status == c.QUEUED)
                 .values(status=c.RUNNING, attempt_token=argument(1, "uuid"),
                         lease_expires_at=func.now() + argument(2, "interval"),
                         attempts=Report.attempts + 1, started_at=func.now(), progress=0.0)
                 .returning(*_REPORT_COLUMNS))
    return Prepared(f"claim_{order}_lane" if lane else f"claim_{order}", statement,
                    ("uuid", "interval", "bigint") if lane else ("uuid", "interval"))


def build_statements(order: str, lane: bool) -> None:
    """Build and compile the statements of every job (each cached per process) now: the worker calls this before
    its pool forks, so a child inherits them instead of making them during its first job."""
    _claim(order, lane)
    _succeed()


def prepare_statements(statements: Engine, order: str, lane: bool) -> None:
    """Open a connection of `statements` and PREPARE every job's claim and success on it: a process warming up
    before its first job."""
    with statements.connect() as conn:
        _claim(order, lane).prepare_on(conn)
        _succeed().prepare_on(conn)


def _report_of(row) -> Report:
    """A detached Report from a row of all its columns as the driver returns them."""
    values = dict(zip((column.key for column in _REPORT_COLUMNS), row, strict=True))
    for name in ("id", "user_id", "attempt_token"):
        if values[name] is not None:
            values[name] = _uuid(values[name])
    if isinstance(values["params"], str):
        values["params"] = json.loads(values["params"])
    return Report(**values)


def _held_by(report_id: uuid.UUID, token: uuid.UUID) -> tuple:
    return Report.id == report_id, Report.status == c.RUNNING, Report.attempt_token == token


class Lease(Enum):
    HELD = "held"
    CANCEL_REQUESTED = "cancel_requested"
    LOST = "lost"  # taken back, finished or deleted: this attempt must stop and commit nothing


def renew_lease(sessions: sessionmaker[Session], report_id: uuid.UUID, token: uuid.UUID, lease_seconds: float,
                progress: float | None = None) -> Lease:
    """The heartbeat (and, with `progress`, the progress store): extends this attempt's lease."""
    values = {"lease_expires_at": _lease(lease_seconds)}
    if progress is not None:
        values["progress"] = progress
    with transaction(sessions) as s:
        cancel = s.execute(update(Report).where(*_held_by(report_id, token)).values(**values)
                           .returning(Report.cancel_requested)
                           .execution_options(synchronize_session=False)).scalar_one_or_none()
    if cancel is None:
        return Lease.LOST
    return Lease.CANCEL_REQUESTED if cancel else Lease.HELD


@dataclass(frozen=True)
class Ending:
    status: str
    event: PendingEvent


def _finish(s: Session, report: Report, status: str, retention: timedelta, **values) -> Ending:
    for name, value in {"status": status, "finished_at": func.now(), "expires_at": func.now() + retention,
                        "attempt_token": None, "lease_expires_at": None, **values}.items():
        setattr(report, name, value)
    s.flush()  # the event reads none of the values the database computes (finished_at, expires_at)
    return Ending(status, PendingEvent.of(add_terminal_event(s, report)))


def end_attempt(sessions: sessionmaker[Session], report_id: uuid.UUID, token: uuid.UUID, status: str, *,
                retention: timedelta, **values) -> Ending | None:
    """This attempt's job -> succeeded|failed|cancelled, with its event and its expiry (now + `retention`), in
    one transaction. A success that meets a cancel request ends `cancelled` (the cancel wins). None when the
    attempt no longer holds the job (its lease was taken back, or the report was deleted): then nothing is
    changed.

    Two statements (the update, prepared, which locks the row and decides the status, then the outbox row),
    not an ORM load and flush: a round trip and most of the CPU fewer per job."""
    names = tuple(sorted(values))
    with transaction(sessions) as s:
        connection = s.connection()
        row = _end(names).run(connection, *_end_arguments(report_id, token, status, retention),
                              *(values[name] for name in names)).first()
        if row is None:
            return None
        report = Report(**dict(zip(_ENDED_COLUMNS, row, strict=True)))  # detached: what the event is made of
        event, payload = terminal_event(report)
        outbox_id = connection.exec_driver_sql(
            "INSERT INTO event_outbox (user_id, report_id, event, payload, created_at) "
            "VALUES (%(user_id)s, %(report_id)s, %(event)s, %(payload)s, %(created_at)s) RETURNING id",
            {"user_id": str(report.user_id), "report_id": str(report.id), "event": event,
             "payload": json.dumps(payload), "created_at": utcnow()}).scalar_one()
    return Ending(report.status, PendingEvent(outbox_id, _uuid(report.user_id), event, payload))


@dataclass(frozen=True)
class _Ended:
    """What `terminal_event` reads of a report that ends, known before the statement that ends it."""
    id: uuid.UUID
    status: str
    rows: int | None = None
    size_bytes: int | None = None
    created_at: datetime | None = None
    error: str | None = None


_SUCCESS_VALUES = ("error", "progress", "rows", "size_bytes", "storage_key")


def succeed_attempt(statements: Engine, report_id: uuid.UUID, token: uuid.UUID, *, retention: timedelta,
                    created_at: datetime, rows: int, size_bytes: int, storage_key: str) -> Ending | None:
    """`end_attempt(..., SUCCEEDED, ...)` for the worker's hot path, in ONE statement: the same update (the cancel
    still wins), and the outbox row inserted from what it returns, both committed together as a statement is
    (on the AUTOCOMMIT engine one round trip instead of BEGIN, UPDATE, INSERT and COMMIT through a Session).
    Both events it may announce are made beforehand by `terminal_event` from the values this attempt stores
    (`created_at` is the claimed report's); the statement keeps the one for the status it set. None when the
    attempt no longer holds the job: then nothing is changed."""
    events = {status: terminal_event(_Ended(report_id, status, rows, size_bytes, created_at))
              for status in (c.SUCCEEDED, c.CANCELLED)}
    with statements.begin() as conn:
        row = _succeed().run(conn, *_end_arguments(report_id, token, c.SUCCEEDED, retention),
                             None, 1.0, rows, size_bytes, storage_key,  # _SUCCESS_VALUES
                             events[c.SUCCEEDED][0], json.dumps(events[c.SUCCEEDED][1]),
                             events[c.CANCELLED][0], json.dumps(events[c.CANCELLED][1]), utcnow()).first()
    if row is None:
        return None
    status, user_id, outbox_id = row
    event, payload = events[status]
    return Ending(status, PendingEvent(outbox_id, _uuid(user_id), event, payload))


_ENDED_COLUMNS = ("id", "user_id", "status", "rows", "size_bytes", "error", "created_at")
_END_ARGUMENT_TYPES = ("uuid", "uuid", "varchar", "boolean", "interval")  # _end_arguments'
_END_VALUE_TYPES = {"rows": "integer", "size_bytes": "bigint", "storage_key": "varchar", "progress": "float8",
                    "error": "text"}


def _end_arguments(report_id: uuid.UUID, token: uuid.UUID, status: str, retention: timedelta) -> tuple:
    return str(report_id), str(token), status, status == c.SUCCEEDED, retention


def _end_update(names: tuple[str, ...]):
    """The update that ends an attempt setting `names` too (unless a cancel wins: then only the status), with
    arguments (`_end_arguments`, then the values of `names`)."""
    unknown = set(names) - set(_END_VALUE_TYPES)
    if unknown:
        raise TypeError(f"end_attempt cannot set {sorted(unknown)}")
    report_id, token, status, succeeding, retention = (argument(n, pg_type)
                                                       for n, pg_type in enumerate(_END_ARGUMENT_TYPES, 1))
    wins = and_(succeeding, Report.cancel_requested)
    table = Report.__table__.c
    first = len(_END_ARGUMENT_TYPES) + 1
    return (update(Report).where(Report.id == report_id, Report.status == c.RUNNING, Report.attempt_token == token)
            .values(status=case((wins, c.CANCELLED), else_=status), finished_at=func.now(),
                    expires_at=func.now() + retention, attempt_token=None, lease_expires_at=None,
                    **{name: case((wins, table[name]), else_=argument(first + i, _END_VALUE_TYPES[name]))
                       for i, name in enumerate(names)})
            .returning(*(table[name] for name in _ENDED_COLUMNS)))


@functools.cache
def _end(names: tuple[str, ...]) -> Prepared:
    return Prepared("end_attempt_" + "_".join(names), _end_update(names),
                    _END_ARGUMENT_TYPES + tuple(_END_VALUE_TYPES[name] for name in names))


@functools.cache
def _succeed() -> Prepared:
    """`_end`'s update setting `_SUCCESS_VALUES`, with the outbox row's insert after it (SQL text around it: an
    INSERT in a CTE does not render through SQLAlchemy), arguments (..., event, payload, the other status's event,
    its payload, now)."""
    n = len(_END_ARGUMENT_TYPES) + len(_SUCCESS_VALUES)
    is_succeeded = "status = $3::varchar"  # the status asked for: the cancel did not win
    sql = (f"WITH ended AS ({literal_sql(_end_update(_SUCCESS_VALUES))}), "  # noqa: S608 (no value in it)
           "event AS (INSERT INTO event_outbox (user_id, report_id, event, payload, created_at) "
           f"SELECT user_id, id, CASE WHEN {is_succeeded} THEN ${n + 1} ELSE ${n + 3} END, "
           f"CASE WHEN {is_succeeded} THEN ${n + 2} ELSE ${n + 4} END, ${n + 5} FROM ended RETURNING id) "
           "SELECT ended.status, ended.user_id, event.id FROM ended, event")
    values = tuple(_END_VALUE_TYPES[name] for name in _SUCCESS_VALUES)
    return Prepared("succeed_attempt", sql,
                    _END_ARGUMENT_TYPES + values + ("varchar", "jsonb", "varchar", "jsonb", "timestamptz"))


def _uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def hand_back(sessions: sessionmaker[Session], report_id: uuid.UUID, token: uuid.UUID) -> bool:
    """This attempt gives its job back to the queue (shutdown): not counted as an attempt; False when the
    attempt no longer held it."""
    with transaction(sessions) as s:
        return s.execute(update(Report).where(*_held_by(report_id, token)).values(
            status=c.QUEUED, attempt_token=None, lease_expires_at=None, attempts=Report.attempts - 1,
            progress=0.0, started_at=None, rung_at=func.now())).rowcount == 1


def mark_rung(sessions: sessionmaker[Session], report_ids: list[uuid.UUID]) -> None:
    if report_ids:
        with transaction(sessions) as s:
            s.execute(update(Report).where(Report.id.in_(report_ids), Report.status == c.QUEUED)
                      .values(rung_at=func.now()))


def load(sessions: sessionmaker[Session], report_id: uuid.UUID) -> Report | None:
    with sessions() as s:
        return s.get(Report, report_id)


# The reconciler's queries

@dataclass(frozen=True)
class TakenBack:
    report_id: uuid.UUID
    user_id: uuid.UUID
    type: str
    params: dict
    status: str  # queued (to run again), failed (attempts used up) or cancelled (a cancel was waiting)
    dead_token: uuid.UUID | None
    event: PendingEvent | None


def gave_up_error(attempts: int) -> str:
    return (f"Gave up after {attempts} attempt{'s' if attempts != 1 else ''}: "
            "the worker running it stopped responding each time.")


def take_back_expired(sessions: sessionmaker[Session], max_attempts: int, retention: timedelta,
                      limit: int = 100) -> list[TakenBack]:
    """Running jobs whose lease ran out (their worker vanished, or was cut off): back to `queued`, or
    `failed` once `max_attempts` attempts have started, or `cancelled` when a cancel was requested (those
    two kept for `retention`)."""
    taken = []
    with transaction(sessions) as s:
        expired = s.scalars(select(Report).where(Report.status == c.RUNNING, Report.lease_expires_at < func.now())
                            .order_by(Report.lease_expires_at).limit(limit).with_for_update(skip_locked=True))
        for report in list(expired):
            dead, ending = report.attempt_token, None
            if report.cancel_requested:
                ending = _finish(s, report, c.CANCELLED, retention)
            elif report.attempts >= max_attempts:
                ending = _finish(s, report, c.FAILED, retention, error=gave_up_error(report.attempts))
            else:
                report.status, report.attempt_token, report.lease_expires_at = c.QUEUED, None, None
                report.progress, report.started_at, report.rung_at = 0.0, None, None
            taken.append(TakenBack(report.id, report.user_id, report.type, dict(report.params),
                                   ending.status if ending else c.QUEUED, dead, ending.event if ending else None))
    return taken


def count_queued(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Report).where(
            Report.status == c.QUEUED, Report.cancel_requested.is_(False)))


def queued_to_ring(sessions: sessionmaker[Session], rung_before_seconds: float, limit: int) -> list[Row]:
    """Queued jobs not rung for `rung_before_seconds` (or never), never-rung first, then oldest first: rows of
    (id, type, params), so each is rung on the queue of its size."""
    query = select(Report.id, Report.type, Report.params).where(runnable(), (Report.rung_at.is_(None)) | (
        Report.rung_at < func.now() - timedelta(seconds=rung_before_seconds))).order_by(
        Report.rung_at.asc().nulls_first(), Report.created_at, Report.id)
    with sessions() as s:
        return list(s.execute(query.limit(limit)))


# Retention (the reconciler's too)

@dataclass(frozen=True)
class Expired:
    report_id: uuid.UUID
    type: str
    storage_key: str | None  # the file to delete, if the report had one


def date_undated(sessions: sessionmaker[Session], retention: timedelta, limit: int = 500) -> int:
    """Give ended reports that have no `expires_at` theirs (finished_at + retention): those a previous version
    ended during a rolling upgrade. Returns how many."""
    with transaction(sessions) as s:
        ids = (select(Report.id).where(Report.expires_at.is_(None), Report.status.in_(c.ENDED_STATUSES))
               .limit(limit).with_for_update(skip_locked=True).scalar_subquery())
        return s.execute(update(Report).where(Report.id.in_(ids), Report.expires_at.is_(None))
                         .values(expires_at=func.coalesce(Report.finished_at, Report.created_at) + retention)
                         ).rowcount


def expire_due(sessions: sessionmaker[Session], limit: int = 200) -> list[Expired]:
    """Ended reports whose `expires_at` has passed -> `expired`, committed before any file is deleted (so no
    report says `succeeded` without its file). Each keeps its `storage_key` until `forget_file`."""
    with transaction(sessions) as s:
        due = (select(Report.id).where(Report.status.in_(c.ENDED_STATUSES), Report.expires_at <= func.now())
               .order_by(Report.expires_at).limit(limit).with_for_update(skip_locked=True).scalar_subquery())
        rows = s.execute(update(Report).where(Report.id.in_(due), Report.status.in_(c.ENDED_STATUSES))
                         .values(status=c.EXPIRED)
                         .returning(Report.id, Report.type, Report.storage_key)).all()
    return [Expired(*r) for r in rows]


def expired_with_files(sessions: sessionmaker[Session], limit: int = 200) -> list[Expired]:
    """Expired reports whose file could not be deleted yet (storage was down): the next pass tries again."""
    with sessions() as s:
        rows = s.execute(select(Report.id, Report.type, Report.storage_key)
                         .where(Report.status == c.EXPIRED, Report.storage_key.is_not(None))
                         .order_by(Report.id).limit(limit)).all()
    return [Expired(*r) for r in rows]


def forget_file(sessions: sessionmaker[Session], report_id: uuid.UUID, key: str) -> None:
    """The expired report's file is deleted: the row stops naming it."""
    with transaction(sessions) as s:
        s.execute(update(Report).where(Report.id == report_id, Report.status == c.EXPIRED,
                                       Report.storage_key == key).values(storage_key=None))
