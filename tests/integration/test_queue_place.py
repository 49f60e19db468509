"""A new report's `queue_position` comes from its INSERT (`scheduling.newcomer_place`, counted from per-user
aggregates); it must equal the place `scheduling.queue_positions` ranks it at, in both orders, whatever the
queue: several users, running, queued and cancel-requested jobs, equal created_at (ties broken by id), and
jobs newer than the newcomer (a concurrent insert whose clock read came later). Real PostgreSQL; each example
runs in a transaction that first hides every other active job and is rolled back."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, update

from reportflow_common import contracts as c
from reportflow_common import scheduling
from reportflow_common.db import Report, User, make_engine, utcnow
from reportflow_reports import records

REPORTS = Report.__table__
USERS = 4
SLOTS = 4  # created_at takes one of a few instants, so that ties are frequent

job = st.tuples(st.integers(0, SLOTS - 1), st.booleans())  # (created_at slot, cancel_requested)
user_jobs = st.fixed_dictionaries({"running": st.lists(job, max_size=3), "queued": st.lists(job, max_size=4)})
queue = st.lists(user_jobs, min_size=USERS, max_size=USERS)
newcomer = st.tuples(st.integers(0, USERS - 1), st.integers(0, SLOTS - 1))  # (user, created_at slot)


@pytest.fixture(scope="module")
def engine(infra):
    engine = make_engine(infra.postgres.url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def users(engine) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(USERS)]
    with engine.begin() as conn:
        conn.execute(insert(User.__table__), [
            {"id": i, "email": f"place-{i.hex[:12]}@example.com", "password_hash": "x"} for i in ids])
    return ids


def _row(user_id, status, created_at, cancel_requested) -> dict:
    return {"id": uuid.uuid4(), "user_id": user_id, "type": "demo", "params": {}, "status": status, "progress": 0.0,
            "created_at": created_at, "cancel_requested": cancel_requested, "attempts": 0}


def _place_from_insert_and_ranking(engine, users, jobs, new, order, spare: int):
    """(the inserted row, its place by `queue_positions` after the insert); `spare` = max_active - its user's
    active jobs."""
    base = utcnow()
    at = [base + timedelta(seconds=slot) for slot in range(SLOTS)]
    rows = [_row(user_id, status, at[slot], cancel)
            for user_id, mine in zip(users, jobs, strict=True)
            for status, key in ((c.RUNNING, "running"), (c.QUEUED, "queued"))
            for slot, cancel in mine[key]]
    user_index, slot = new
    active = len(jobs[user_index]["running"]) + len(jobs[user_index]["queued"])
    with engine.connect() as conn, conn.begin() as tx:
        conn.execute(update(REPORTS).where(scheduling.active_jobs()).values(status=c.CANCELLED))  # other tests'
        if rows:
            conn.execute(insert(REPORTS), rows)
        inserted = records.create_statement(order).run(conn, str(uuid.uuid4()), str(users[user_index]), "demo", "{}",
                                                       at[slot], None, "h", active + spare).first()
        ranked = None if inserted is None else scheduling.queue_positions(conn, order, [inserted.id])
        tx.rollback()
    return inserted, ranked


@pytest.mark.parametrize("order", [scheduling.FAIR, scheduling.FIFO])
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs=queue, new=newcomer)
def test_the_place_the_insert_returns_is_the_place_in_the_run_order(engine, users, order, jobs, new):
    inserted, ranked = _place_from_insert_and_ranking(engine, users, jobs, new, order, spare=1)
    assert inserted.queue_position == ranked[inserted.id]


@pytest.mark.parametrize("spare, created", [(0, False), (1, True)])
def test_the_insert_still_stops_at_the_active_limit(engine, users, spare, created):
    jobs = [{"running": [(0, False), (0, True)], "queued": [(1, True), (2, False)]}] + [
        {"running": [], "queued": [(0, False)]}] * (USERS - 1)
    inserted, _ = _place_from_insert_and_ranking(engine, users, jobs, (0, 3), scheduling.FAIR, spare)
    assert (inserted is not None) == created
