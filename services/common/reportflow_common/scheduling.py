"""The order in which queued jobs run, decided in PostgreSQL: the worker claims by it, and the reports service
tells a queued report its place in it (`queue_position`). Nothing a client sends changes it.

`fair` (the default): each queued job's turn is its user's running jobs plus that user's jobs queued before it;
the lowest turn runs first, then the oldest. So users with fewer jobs running go first, two users' backlogs
interleave, and a user alone may still use every slot (work-conserving). A turn does not move when a job of its
user starts (one more running, one fewer ahead), so positions computed now are the order jobs will start in,
unless one finishes or arrives. `fifo`: first come, first served across all users.

The reserved lane (LANE_MAX_CELLS) claims in the same order among small jobs only.
"""
from __future__ import annotations

import functools
import uuid

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    FromClause,
    Integer,
    ScalarSelect,
    Select,
    Subquery,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.engine import Connection, Engine

from . import contracts as c
from .db import Report
from .settings import JOB_ORDERS

FAIR, FIFO = JOB_ORDERS
SMALL, LARGE = "small", "large"  # size classes, for the lane and the queue-wait metric
SIZE_CLASSES = (SMALL, LARGE)


def _demo_param(name: str):
    return cast(func.coalesce(Report.params[name].astext, str(c.DEMO_DEFAULTS[name])), BigInteger)


def job_cells():
    """A job's size as PostgreSQL sees it: a demo report's rows x columns; an `activity` report (the caller's
    own history, a few thousand rows at most) counts as 0."""
    return case((Report.type == "demo", _demo_param("rows") * _demo_param("columns")), else_=0)


def cells_of(report_type: str, params: dict) -> int:
    """`job_cells` of one report, in Python."""
    if report_type != "demo":
        return 0
    merged = {**c.DEMO_DEFAULTS, **params}
    return int(merged["rows"]) * int(merged["columns"])


def size_class(report_type: str, params: dict, max_cells: int) -> str:
    return SMALL if cells_of(report_type, params) <= max_cells else LARGE


def runnable() -> ColumnElement[bool]:
    """A job that may run: queued and not cancelled."""
    return and_(Report.status == c.QUEUED, Report.cancel_requested.is_(False))


@functools.cache
def _turns() -> CTE:
    """Each runnable job's `turn` (with its id and created_at), from each user's running jobs, as MATERIALIZED
    CTEs: each computed once per statement. As subqueries, PostgreSQL recounted the running jobs for every queued
    job wherever its estimates were low (as in a plan made while the queue was short, which a prepared statement
    keeps), reading every dead index entry the jobs before had left each time: with 20 jobs queued, 55,000 buffers
    a claim after a few thousand jobs (bench/README.md, "The queue at scale")."""
    running = (select(Report.user_id, func.count().label("jobs")).where(Report.status == c.RUNNING)
               .group_by(Report.user_id).cte("running").prefix_with("MATERIALIZED"))
    turn = func.coalesce(running.c.jobs, 0) + func.row_number().over(
        partition_by=Report.user_id, order_by=(Report.created_at, Report.id))
    return (select(Report.id, Report.created_at, turn.label("turn"))
            .outerjoin(running, running.c.user_id == Report.user_id).where(runnable())
            .cte("turns").prefix_with("MATERIALIZED"))


def _in_order(order: str) -> tuple[FromClause, tuple[ColumnElement, ...]]:
    """The runnable jobs and the keys they run in, the last one their `id`: the one place that decides the order.
    Fifo: oldest first. Fair: by turn (`_turns`), then oldest."""
    if order == FIFO:
        jobs = select(Report.id, Report.created_at).where(runnable()).subquery("runnable")
        return jobs, (jobs.c.created_at, jobs.c.id)
    turns = _turns()
    return turns, (turns.c.turn, turns.c.created_at, turns.c.id)


def next_job(order: str, *conditions: ColumnElement[bool]) -> ScalarSelect:
    """The id of the first runnable job in `order` that meets `conditions` (on `Report`; the lane: small jobs only)
    and that no other transaction holds, locked FOR UPDATE (SKIP LOCKED: concurrent claims take different jobs).
    The jobs are ranked once and tried in that order by primary key (a LATERAL subquery takes the lock), so the
    cost grows with the queue's length times its logarithm, not its square (the fair order joined as a set: 2,000
    queued jobs took a claim 2.2 s, now 3 ms). They are sorted in a subquery, before the join, so that the nested
    loop stops at the first job it can lock: sorted after it, the LATERAL locked every queued job during the
    claim, and a concurrent claim found none (`test_a_claim_in_flight_holds_only_the_job_it_takes`)."""
    _, keys = _in_order(order)
    ordered = select(*keys).order_by(*keys).subquery("ordered")
    taken = (select(Report.id).where(Report.id == ordered.c.id, runnable(), *conditions)
             .with_for_update(skip_locked=True).lateral("taken"))
    return (select(taken.c.id).select_from(ordered).join(taken, true())
            .order_by(*ordered.c).limit(1).scalar_subquery())  # its columns are the keys


def active_jobs() -> ColumnElement[bool]:
    """`status IN ('queued', 'running')` written out, as the partial index ix_reports_user_active is, instead
    of a parameter list SQLAlchemy expands at every execution."""
    assert all(status.isidentifier() for status in c.ACTIVE_STATUSES)
    return Report.status.in_([literal_column(f"'{status}'") for status in c.ACTIVE_STATUSES])


def queue_counts(created_at: ColumnElement, report_id: ColumnElement) -> Select:
    """Per user with active jobs: `running` jobs, `queued` runnable ones, and those of them `ahead` of a job
    created at (`created_at`, `report_id`), oldest first: what `newcomer_place` needs, in one aggregate over
    the active rows."""
    older = tuple_(Report.created_at, Report.id) < tuple_(created_at, report_id)
    return (select(Report.user_id, func.count().filter(Report.status == c.RUNNING).label("running"),
                   func.count().filter(runnable()).label("queued"),
                   func.count().filter(runnable(), older).label("ahead"))
            .where(active_jobs()).group_by(Report.user_id))


def newcomer_place(order: str, counts: CTE, user_id: ColumnElement) -> ScalarSelect:
    """The place in the run order of a job being inserted for `user_id`, from the `queue_counts` (for that job's
    created_at and id) of the table without it, so the same statement can insert it and tell its place. The
    same order as `next_job`, counted instead of ranked: no window over the whole queue.

    Fair: the newcomer's turn is T = running + ahead + 1 of its user. Another user's jobs have turns running + 1,
    running + 2, ...: those below T all run before it, and the one at T (its place among that user's jobs:
    T - running) only if it is older, i.e. if T - running <= ahead. So that user has
    max(0, min(ahead, T - running), min(queued, T - 1 - running)) jobs before it; the formula gives the
    newcomer's own user `ahead` (its older jobs), and its newer jobs (a concurrent insert with a later
    created_at) come after it. Adding the newcomer moves no other user's turn."""
    if order == FIFO:
        before = counts.c.ahead
    else:
        mine = select(counts.c.running + counts.c.ahead + 1).where(counts.c.user_id == user_id).scalar_subquery()
        turn = func.coalesce(mine, 1)
        before = func.greatest(0, func.least(counts.c.ahead, turn - counts.c.running),
                               func.least(counts.c.queued, turn - 1 - counts.c.running))
    return select(cast(1 + func.coalesce(func.sum(before), 0), Integer)).scalar_subquery()


@functools.cache
def _ranked(order: str) -> Subquery:
    """Every runnable job's 1-based `place` in the run order (`next_job`'s). Built once per order (per process):
    building and hashing this statement anew cost more CPU than the query itself."""
    jobs, keys = _in_order(order)
    return select(jobs.c.id, func.row_number().over(order_by=keys).label("place")).subquery("ranked")


@functools.cache
def _positions_statement(order: str) -> Select:
    ranked = _ranked(order)
    ids = cast(bindparam("ids", type_=ARRAY(UUID(as_uuid=True))), ARRAY(UUID(as_uuid=True)))
    return select(ranked.c.id, ranked.c.place).where(ranked.c.id == any_(ids))


def queue_positions(bind: Engine | Connection, order: str, report_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The 1-based place of each of these queued reports in the run order (absent: not runnable). `bind`: an
    engine (the reports service passes its AUTOCOMMIT one: one round trip) or a connection."""
    if not report_ids:
        return {}
    statement, params = _positions_statement(order), {"ids": report_ids}
    if isinstance(bind, Connection):
        rows = bind.execute(statement, params).all()
    else:
        with bind.connect() as conn:
            rows = conn.execute(statement, params).all()
    return {report_id: place for report_id, place in rows}


def queue_position_of(order: str, report_id: ColumnElement) -> ColumnElement:
    """A column for a SELECT of reports: the place of the report `report_id` in the run order when it is
    queued, else NULL; PostgreSQL ranks the queue only for a queued report (so one statement reads a report
    and its place)."""
    ranked = _ranked(order)
    place = select(ranked.c.place).where(ranked.c.id == report_id).scalar_subquery()
    return case((Report.__table__.c.status == c.QUEUED, place), else_=None)
