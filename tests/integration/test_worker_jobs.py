"""The worker's hold on jobs, against real PostgreSQL, Redis (event log and broker) and the S3 server: claims,
attempt tokens and leases, the reconciler, the outbox, and one winner per job. In process, no Celery worker:
the functions the task and the reconciler thread call are called directly."""
from __future__ import annotations

import dataclasses
import threading
import uuid
from datetime import timedelta

import pytest
from redis import Redis
from sqlalchemy import select, text, update

from reportflow_common import contracts as c
from reportflow_common import scheduling
from reportflow_common.db import OutboxEvent, Report, User, transaction, utcnow
from reportflow_common.outbox import terminal_event
from reportflow_common.settings import WORKER, load_settings
from reportflow_worker import records
from reportflow_worker.jobs import Attempt, Heartbeat, WorkerContext, attempt_key, run_next_job
from reportflow_worker.reconciler import LOCK_KEY, Reconciler
from reportflow_worker.shutdown import ShutdownClock
from support.waiting import wait_until
from support.worker_context import worker_context

WEEK = timedelta(days=7)


@pytest.fixture(scope="module")
def settings(infra):
    broker = infra.redis.url.rsplit("/", 1)[0] + "/2"  # a broker database of this module's own
    return load_settings(WORKER, infra.base_env(BROKER_URL=broker, JOB_LEASE_SECONDS="3", MAX_JOB_ATTEMPTS="2",
                                                REQUEUE_AFTER_SECONDS="5", PROGRESS_INTERVAL_SECONDS="0.01"))


@pytest.fixture(scope="module")
def redis(settings):
    client = Redis.from_url(settings.redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def broker(settings):
    client = Redis.from_url(settings.effective_broker_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def ctx(settings, engine, sessions, redis):
    return worker_context(settings, engine, sessions, redis, "test-worker")


@pytest.fixture(scope="module")
def statements(ctx):
    """The worker's AUTOCOMMIT engine for single statements (the claim)."""
    return ctx.statements


@pytest.fixture(scope="module")
def reconciler(ctx, engine, broker):
    return Reconciler(ctx.settings, engine, ctx.sessions, broker, ctx.storage, ctx.outbox, ctx.celery)


@pytest.fixture(autouse=True)
def only_this_tests_jobs(sessions, broker):
    """Claims take the oldest queued job in the whole database: each test starts and ends with none."""
    def clear():
        with transaction(sessions) as s:
            s.execute(update(Report).where(Report.status.in_(c.ACTIVE_STATUSES))
                      .values(status=c.CANCELLED, attempt_token=None, lease_expires_at=None))
            s.execute(update(OutboxEvent).where(OutboxEvent.published_at.is_(None)).values(published_at=utcnow()))
        broker.delete(c.REPORTS_QUEUE, c.LANE_QUEUE)
    clear()
    yield
    clear()


def new_user(sessions) -> uuid.UUID:
    user_id = uuid.uuid4()
    with transaction(sessions) as s:
        s.add(User(id=user_id, email=f"worker-{user_id.hex[:12]}@example.com", password_hash="x"))
    return user_id


@pytest.fixture()
def user(sessions) -> uuid.UUID:
    return new_user(sessions)


def queued(sessions, user_id, rows: int = 30, age_seconds: float = 0, rung: bool = True) -> uuid.UUID:
    created = utcnow() - timedelta(seconds=age_seconds)
    report = Report(id=uuid.uuid4(), user_id=user_id, type="demo", params={"rows": rows, "columns": 3, "seed": 1},
                    status=c.QUEUED, progress=0.0, created_at=created, rung_at=created if rung else None)
    with transaction(sessions) as s:
        s.add(report)
    return report.id


def row(sessions, report_id) -> Report:
    return records.load(sessions, report_id)


def expire_lease(sessions, report_id) -> None:
    with transaction(sessions) as s:
        s.execute(update(Report).where(Report.id == report_id)
                  .values(lease_expires_at=utcnow() - timedelta(seconds=1)))


def outbox(sessions, report_id) -> list[OutboxEvent]:
    with sessions() as s:
        return list(s.scalars(select(OutboxEvent).where(OutboxEvent.report_id == report_id)
                              .order_by(OutboxEvent.id)))


# Claims

def test_claims_take_the_oldest_runnable_job_and_skip_one_another(statements, sessions, user):
    older, newer = queued(sessions, user, age_seconds=10), queued(sessions, user, age_seconds=5)
    with sessions() as other, other.begin():  # another worker's claim, in flight, holds the oldest row
        other.execute(select(Report).where(Report.id == older).with_for_update())
        second = records.claim_next(statements, 30)
        assert second.id == newer  # skipped the locked row instead of waiting for it
        assert records.claim_next(statements, 30) is None
    first = records.claim_next(statements, 30)
    assert first.id == older and first.status == c.RUNNING and first.attempts == 1
    assert first.attempt_token and first.attempt_token != second.attempt_token
    assert first.lease_expires_at > utcnow() + timedelta(seconds=25)


@pytest.mark.parametrize("order", [scheduling.FAIR, scheduling.FIFO])
@pytest.mark.parametrize("lane", [False, True], ids=["pool", "lane"])
def test_a_claim_in_flight_holds_only_the_job_it_takes(statements, engine, sessions, lane, order):
    """While one claim's transaction is open, every other queued job is left to the next claims, whatever plan
    PostgreSQL makes for a long queue: one that locked the jobs while ranking them held all 200, and the next
    claim found none (a worker woken for a job would then have acknowledged its message for nothing)."""
    users = [new_user(sessions) for _ in range(4)]
    jobs = [queued(sessions, users[i % 4], age_seconds=300 - i) for i in range(200)]
    max_cells = 10**6 if lane else None
    with engine.connect() as conn, conn.begin():
        held = records._claim(order, lane).run(
            conn, str(uuid.uuid4()), timedelta(seconds=30), *([max_cells] if lane else [])).first()
        assert held is not None and held.id == jobs[0]  # the first in either order: the oldest
        others = claim_all(statements, order, max_cells)
    assert len(others) == 199 and set(others) == set(jobs) - {held.id}


# The order (reportflow_common.scheduling)

def claim_all(statements, order: str = scheduling.FAIR, max_cells: int | None = None) -> list[uuid.UUID]:
    claimed = []
    while (report := records.claim_next(statements, 30, order, max_cells)) is not None:
        claimed.append(report.id)
    return claimed


def test_two_users_backlogs_interleave_and_positions_tell_that_order(statements, engine, sessions):
    heavy, light = new_user(sessions), new_user(sessions)
    heavy_jobs = [queued(sessions, heavy, age_seconds=60 - i) for i in range(4)]  # all older than light's
    light_jobs = [queued(sessions, light, age_seconds=10 - i) for i in range(2)]
    expected = [heavy_jobs[0], light_jobs[0], heavy_jobs[1], light_jobs[1], heavy_jobs[2], heavy_jobs[3]]
    positions = scheduling.queue_positions(engine, scheduling.FAIR, heavy_jobs + light_jobs)
    assert sorted(positions, key=positions.get) == expected and sorted(positions.values()) == [1, 2, 3, 4, 5, 6]
    assert claim_all(statements) == expected


def test_a_user_with_fewer_jobs_running_goes_first_and_a_user_alone_takes_every_slot(statements, engine, sessions):
    heavy, light = new_user(sessions), new_user(sessions)
    for i in range(3):
        queued(sessions, heavy, age_seconds=60 - i)
    assert len(claim_all(statements)) == 3  # alone: nothing holds a job back (work-conserving)
    waiting = [queued(sessions, heavy, age_seconds=30 - i) for i in range(2)]
    newcomer = queued(sessions, light)
    assert scheduling.queue_positions(engine, scheduling.FAIR, [newcomer, *waiting]) == {
        newcomer: 1, waiting[0]: 2, waiting[1]: 3}
    assert claim_all(statements) == [newcomer, *waiting]


def test_fifo_keeps_arrival_order_across_users(statements, engine, sessions):
    heavy, light = new_user(sessions), new_user(sessions)
    jobs = [queued(sessions, heavy, age_seconds=60 - i) for i in range(3)] + [queued(sessions, light)]
    assert scheduling.queue_positions(engine, scheduling.FIFO, jobs) == {job: i + 1 for i, job in enumerate(jobs)}
    assert claim_all(statements, scheduling.FIFO) == jobs


def test_the_lane_claims_small_jobs_only_in_the_same_order(statements, sessions):
    heavy, light = new_user(sessions), new_user(sessions)
    large = queued(sessions, heavy, rows=100_000, age_seconds=30)  # 300k cells
    heavy_small, light_small = queued(sessions, heavy, rows=1000, age_seconds=20), queued(sessions, light, rows=1000)
    # light's job is its user's first; heavy's small one comes after heavy's large one
    assert claim_all(statements, max_cells=3000) == [light_small, heavy_small]
    assert claim_all(statements) == [large]


def test_a_jobs_size_is_the_same_in_postgresql_and_in_python(sessions, user):
    """The reports service rings the lane by `cells_of`; the lane claims by `job_cells`: they must agree."""
    cases = [("demo", {"rows": 1000, "columns": 8}), ("demo", {"rows": 30}), ("demo", {}), ("activity", {})]
    ids = []
    with transaction(sessions) as s:
        for report_type, params in cases:
            report = Report(user_id=user, type=report_type, params=params, status=c.CANCELLED)
            s.add(report)
            s.flush()
            ids.append(report.id)
    with sessions() as s:
        in_sql = dict(s.execute(select(Report.id, scheduling.job_cells()).where(Report.id.in_(ids))).all())
    assert [in_sql[i] for i in ids] == [scheduling.cells_of(t, p) for t, p in cases] == [8000, 240, 8000, 0]


def test_a_cancel_requested_or_finished_job_is_not_claimed(statements, sessions, user):
    report_id = queued(sessions, user)
    with transaction(sessions) as s:
        s.execute(update(Report).where(Report.id == report_id).values(cancel_requested=True))
    assert records.claim_next(statements, 30) is None


def test_only_the_attempt_holding_the_job_changes_it(statements, sessions, user):
    report_id = queued(sessions, user)
    claim = records.claim_next(statements, 30)
    stranger = uuid.uuid4()
    assert records.renew_lease(sessions, report_id, stranger, 30) is records.Lease.LOST
    assert records.end_attempt(sessions, report_id, stranger, c.SUCCEEDED, retention=WEEK, rows=1) is None
    assert records.hand_back(sessions, report_id, stranger) is False
    assert row(sessions, report_id).status == c.RUNNING
    assert records.renew_lease(sessions, report_id, claim.attempt_token, 30, progress=0.5) is records.Lease.HELD
    assert row(sessions, report_id).progress == 0.5


def test_a_success_that_meets_a_cancel_ends_cancelled_with_its_event_in_the_same_commit(statements, sessions, user):
    report_id = queued(sessions, user)
    claim = records.claim_next(statements, 30)
    with transaction(sessions) as s:
        s.execute(update(Report).where(Report.id == report_id).values(cancel_requested=True))
    assert records.renew_lease(sessions, report_id, claim.attempt_token, 30) is records.Lease.CANCEL_REQUESTED
    ending = records.end_attempt(sessions, report_id, claim.attempt_token, c.SUCCEEDED, retention=WEEK, rows=30,
                                 size_bytes=1, storage_key="k", progress=1.0)
    assert ending.status == c.CANCELLED and ending.event.event == c.EVENT_CANCELLED
    final = row(sessions, report_id)
    assert final.status == c.CANCELLED and final.storage_key is None and final.attempt_token is None
    (entry,) = outbox(sessions, report_id)
    assert entry.event == c.EVENT_CANCELLED and entry.payload == {"report_id": str(report_id)}
    assert entry.published_at is None  # published after the commit, by the caller or the reconciler


@pytest.mark.parametrize("cancel", [False, True])
def test_the_one_statement_success_ends_the_job_as_end_attempt_does(statements, sessions, user, cancel):
    """`succeed_attempt` (the worker's hot path, one statement) leaves the row and the outbox as `end_attempt`
    with SUCCEEDED does: the values stored, or the cancel winning; the event the row's own state announces."""
    report_id = queued(sessions, user)
    claim = records.claim_next(statements, 30)
    if cancel:
        with transaction(sessions) as s:
            s.execute(update(Report).where(Report.id == report_id).values(cancel_requested=True))
    stranger = uuid.uuid4()
    assert records.succeed_attempt(statements, report_id, stranger, retention=WEEK, created_at=claim.created_at,
                                   rows=30, size_bytes=7, storage_key="k") is None
    assert outbox(sessions, report_id) == [] and row(sessions, report_id).status == c.RUNNING
    ending = records.succeed_attempt(statements, report_id, claim.attempt_token, retention=WEEK,
                                     created_at=claim.created_at, rows=30, size_bytes=7, storage_key="k")
    final = row(sessions, report_id)
    assert ending.status == final.status == (c.CANCELLED if cancel else c.SUCCEEDED)
    assert final.attempt_token is None and final.lease_expires_at is None and final.finished_at is not None
    assert final.expires_at - final.finished_at == WEEK
    if cancel:
        assert (final.rows, final.size_bytes, final.storage_key) == (None, None, None)
    else:
        assert (final.rows, final.size_bytes, final.storage_key, final.progress, final.error) == (30, 7, "k", 1.0,
                                                                                                 None)
    (entry,) = outbox(sessions, report_id)
    assert (entry.event, entry.payload) == terminal_event(final) == (ending.event.event, ending.event.payload)
    assert ending.event.id == entry.id and ending.event.user_id == user and entry.published_at is None
    assert records.succeed_attempt(statements, report_id, claim.attempt_token, retention=WEEK,
                                   created_at=claim.created_at, rows=30, size_bytes=7, storage_key="k") is None


def test_a_handed_back_job_is_queued_again_and_the_attempt_does_not_count(statements, sessions, user):
    report_id = queued(sessions, user)
    claim = records.claim_next(statements, 30)
    assert records.hand_back(sessions, report_id, claim.attempt_token) is True
    again = row(sessions, report_id)
    assert (again.status, again.attempts, again.attempt_token, again.started_at) == (c.QUEUED, 0, None, None)
    assert records.claim_next(statements, 30).attempts == 1


# The reconciler

def test_an_expired_lease_is_taken_back_rung_for_and_its_dead_attempt_can_no_longer_commit(
        statements, sessions, user, reconciler, broker, ctx):
    report_id = queued(sessions, user)
    dead = records.claim_next(statements, 30)
    ctx.storage.upload(attempt_key(user, report_id, dead.attempt_token, ".xlsx"), __file__)  # died after uploading
    expire_lease(sessions, report_id)
    done = reconciler.run_once()
    assert done["taken_back"] == 1 and broker.llen(c.LANE_QUEUE) == 1  # a small job: the queue of its size
    back = row(sessions, report_id)
    assert back.status == c.QUEUED and back.attempt_token is None and back.rung_at is not None
    assert ctx.storage.size(attempt_key(user, report_id, dead.attempt_token, ".xlsx")) is None  # the dead one's object
    assert records.end_attempt(sessions, report_id, dead.attempt_token, c.SUCCEEDED, retention=WEEK, rows=1) is None
    assert records.claim_next(statements, 30).attempts == 2


def test_the_last_attempt_allowed_ends_failed_with_a_clear_error_and_its_event(statements, sessions, user, reconciler):
    report_id = queued(sessions, user)
    for _ in range(2):  # MAX_JOB_ATTEMPTS=2 here
        records.claim_next(statements, 30)
        expire_lease(sessions, report_id)
        reconciler.run_once()
    final = row(sessions, report_id)
    assert final.status == c.FAILED and final.attempts == 2 and final.finished_at
    assert final.error == "Gave up after 2 attempts: the worker running it stopped responding each time."
    (entry,) = outbox(sessions, report_id)
    assert entry.event == c.EVENT_FAILED and entry.payload["error"] == final.error
    assert entry.published_at is not None  # published right after the take-back


def test_a_job_whose_worker_vanished_with_a_cancel_waiting_ends_cancelled(statements, sessions, user, reconciler):
    report_id = queued(sessions, user)
    records.claim_next(statements, 30)
    with transaction(sessions) as s:
        s.execute(update(Report).where(Report.id == report_id).values(cancel_requested=True))
    expire_lease(sessions, report_id)
    reconciler.run_once()
    assert row(sessions, report_id).status == c.CANCELLED
    assert [e.event for e in outbox(sessions, report_id)] == [c.EVENT_CANCELLED]


def test_queued_jobs_without_a_message_are_rung_for_once_the_ring_is_old(sessions, user, reconciler, broker):
    """Redis lost the queue, or the reports service died between its commit and the message. Each job is rung
    on the queue of its size, so the lane can still start a small one while the pool is busy."""
    stale = [queued(sessions, user, age_seconds=60) for _ in range(2)]
    large = queued(sessions, user, rows=100_000, age_seconds=60)  # 300,000 cells: more than the lane takes
    fresh = queued(sessions, user)  # its message may still be on its way: left alone
    never = queued(sessions, user, rung=False)  # created by a process that died before ringing
    assert reconciler.run_once()["rung"] == 4
    assert (broker.llen(c.REPORTS_QUEUE), broker.llen(c.LANE_QUEUE)) == (1, 3)
    assert row(sessions, fresh).rung_at < row(sessions, stale[0]).rung_at
    assert row(sessions, never).rung_at is not None and row(sessions, large).rung_at is not None
    assert reconciler.run_once()["rung"] == 0  # the broker holds a message per job now
    broker.delete(c.REPORTS_QUEUE, c.LANE_QUEUE)
    assert reconciler.run_once()["rung"] == 0  # lost again, but rung just now: not before REQUEUE_AFTER


def test_a_backlog_the_broker_holds_is_not_rung_again(sessions, user, reconciler, ctx, broker):
    for queue in (c.REPORTS_QUEUE, c.LANE_QUEUE, c.LANE_QUEUE):  # the pool consumes both queues
        report_id = queued(sessions, user, age_seconds=60)
        ctx.celery.send_task(c.BUILD_REPORT_TASK, args=[str(report_id)], queue=queue)
    assert reconciler.run_once()["rung"] == 0
    assert (broker.llen(c.REPORTS_QUEUE), broker.llen(c.LANE_QUEUE)) == (1, 2)


def test_one_reconciler_pass_at_a_time_across_replicas(reconciler, engine):
    with engine.begin() as other_replica:
        assert other_replica.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}).scalar()
        assert reconciler.run_once() is None
    assert reconciler.run_once() is not None


def test_committed_events_left_unpublished_are_published_once(statements, sessions, user, reconciler, ctx):
    report_id = queued(sessions, user)
    claim = records.claim_next(statements, 30)
    ending = records.end_attempt(sessions, report_id, claim.attempt_token, c.FAILED, retention=WEEK, error="boom")
    with transaction(sessions) as s:  # as if committed a few seconds ago, and the publisher died
        s.execute(update(OutboxEvent).where(OutboxEvent.id == ending.event.id)
                  .values(created_at=utcnow() - timedelta(seconds=10)))
    before = ctx.events.last_seq(str(user))
    ctx.events.publish_once(ending.event.id, str(user), ending.event.event, ending.event.payload)  # got this far
    assert reconciler.run_once()["published"] == 1
    assert reconciler.run_once()["published"] == 0
    logged = ctx.events.since(str(user), before)
    assert [(name, p["report_id"], p["error"]) for name, p in logged] == [(c.EVENT_FAILED, str(report_id), "boom")]
    assert outbox(sessions, report_id)[0].published_at is not None


# Attempts end to end (a real build, upload and commit)

def with_lane_max_cells(ctx, cells: int) -> WorkerContext:
    return WorkerContext(**{**ctx.__dict__, "settings": dataclasses.replace(ctx.settings, lane_max_cells=cells)})


def test_a_lane_message_that_finds_no_small_job_passes_its_wake_up_to_the_pool(sessions, user, ctx, broker):
    """A pool process took the small job with the large job's `reports` message: the lane's message finds no
    small job, and rings `reports` once, so the large job runs without waiting for the reconciler."""
    ctx = with_lane_max_cells(ctx, 100)
    small = queued(sessions, user, rows=30, age_seconds=10)  # 90 cells, first in fair order
    large = queued(sessions, user, rows=40)  # 120 cells
    assert run_next_job(ctx, rung_for=str(large)) == c.SUCCEEDED  # a pool process, its `reports` message
    assert row(sessions, small).status == c.SUCCEEDED and row(sessions, large).status == c.QUEUED
    assert run_next_job(ctx, rung_for=str(small), lane=True, from_lane_queue=True) == "idle"
    assert (broker.llen(c.REPORTS_QUEUE), broker.llen(c.LANE_QUEUE)) == (1, 0)  # passed on, to the pool
    assert run_next_job(ctx, rung_for=str(small)) == c.SUCCEEDED  # the pool, with that message
    assert row(sessions, large).status == c.SUCCEEDED
    assert run_next_job(ctx, lane=True, from_lane_queue=True) == "idle"
    assert broker.llen(c.REPORTS_QUEUE) == 1, "nothing queued: nothing passed on (a duplicate message ends here)"


def test_a_pool_process_that_claims_a_large_job_with_a_lane_message_rings_the_lane_again(sessions, user, ctx, broker):
    """The small job that rang is still queued with no lane message left: the lane must still be able to
    start it while the pool is busy (issue 16)."""
    ctx = with_lane_max_cells(ctx, 100)
    large = queued(sessions, user, rows=40, age_seconds=10)  # first in fair order
    small = queued(sessions, user, rows=30)
    assert run_next_job(ctx, rung_for=str(small), from_lane_queue=True) == c.SUCCEEDED
    assert row(sessions, large).status == c.SUCCEEDED and row(sessions, small).status == c.QUEUED
    assert (broker.llen(c.REPORTS_QUEUE), broker.llen(c.LANE_QUEUE)) == (0, 1)
    assert run_next_job(ctx, rung_for=str(small), lane=True, from_lane_queue=True) == c.SUCCEEDED
    assert (broker.llen(c.REPORTS_QUEUE), broker.llen(c.LANE_QUEUE)) == (0, 1)  # nothing more passed on
    broker.delete(c.LANE_QUEUE)
    queued(sessions, user, rows=30)
    assert run_next_job(ctx, from_lane_queue=True) == c.SUCCEEDED  # a small job from a lane message: no pass-on
    assert (broker.llen(c.REPORTS_QUEUE), broker.llen(c.LANE_QUEUE)) == (0, 0)


def test_a_doorbell_runs_the_next_job_to_success_and_announces_it(sessions, user, ctx):
    report_id = queued(sessions, user, rows=200)
    assert run_next_job(ctx, rung_for="anything") == c.SUCCEEDED
    final = row(sessions, report_id)
    assert final.status == c.SUCCEEDED and final.rows == 200 and final.progress == 1.0
    assert final.storage_key.startswith(f"reports/{user}/{report_id}.") and final.storage_key.endswith(".xlsx")
    assert ctx.storage.size(final.storage_key) == final.size_bytes
    (name, payload), = [e for e in ctx.events.since(str(user), 0) if e[0] != c.EVENT_PROGRESS]
    assert name == c.EVENT_SUCCEEDED and payload["report_id"] == str(report_id) and payload["rows"] == 200
    assert payload["epoch"] and payload["download_url"] == f"/v1/reports/{report_id}/download"
    assert outbox(sessions, report_id)[0].published_at is not None
    assert run_next_job(ctx) == "idle"  # a doorbell that finds nothing to do


def test_the_loser_of_two_attempts_deletes_only_its_own_object(statements, sessions, user, ctx, reconciler):
    """Attempt A is cut off (its lease runs out) but keeps going; B takes the job and wins. A uploads, fails
    to commit, and removes its own object: B's file and row stay."""
    report_id = queued(sessions, user, rows=100)
    a = records.claim_next(statements, 30)
    expire_lease(sessions, report_id)
    reconciler.run_once()
    assert run_next_job(ctx) == c.SUCCEEDED  # attempt B
    winner = row(sessions, report_id)
    assert Attempt(ctx, a).run() == "lease_lost"
    assert ctx.storage.size(attempt_key(user, report_id, a.attempt_token, ".xlsx")) is None
    assert ctx.storage.size(winner.storage_key) == winner.size_bytes
    after = row(sessions, report_id)
    assert (after.status, after.storage_key, after.attempts) == (c.SUCCEEDED, winner.storage_key, 2)


def test_a_cancel_during_the_build_stops_it_and_leaves_no_file(statements, sessions, user, ctx):
    report_id = queued(sessions, user, rows=50_000)
    claim = records.claim_next(statements, 30)
    with transaction(sessions) as s:
        s.execute(update(Report).where(Report.id == report_id).values(cancel_requested=True))
    assert Attempt(ctx, claim).run() == c.CANCELLED
    final = row(sessions, report_id)
    assert final.status == c.CANCELLED and final.rows is None
    assert ctx.storage.size(attempt_key(user, report_id, claim.attempt_token, ".xlsx")) is None


def test_an_unbuildable_job_fails_with_its_reason(sessions, user, ctx):
    report_id = queued(sessions, user)
    with transaction(sessions) as s:
        s.execute(update(Report).where(Report.id == report_id).values(type="no-such-type"))
    assert run_next_job(ctx) == c.FAILED
    assert row(sessions, report_id).error == "The report could not be built: unknown report type 'no-such-type'"


def test_a_job_of_a_shutting_down_worker_that_cannot_finish_is_handed_back(statements, sessions, user, ctx, broker):
    report_id = queued(sessions, user, rows=300_000)
    claim = records.claim_next(statements, 30)
    closing = WorkerContext(**{**ctx.__dict__, "shutdown": ShutdownClock(3)})
    closing.shutdown.request()
    assert Attempt(closing, claim).run() == "handed_back"
    back = row(sessions, report_id)
    assert (back.status, back.attempts, back.attempt_token) == (c.QUEUED, 0, None)
    assert broker.llen(c.REPORTS_QUEUE) == 1  # rung for, so another worker takes it at once


def _lease_threads() -> int:
    return [t.name for t in threading.enumerate()].count("lease-heartbeat")


def test_one_thread_per_process_renews_every_running_attempts_lease_until_it_ends(statements, ctx, sessions, user):
    """The lease keeper (one thread per process) renews each held attempt a third of its lease (3 s here) after
    the last renewal, and stops renewing one once its heartbeat is released."""
    first, second = queued(sessions, user), queued(sessions, user)
    claims = [records.claim_next(statements, 3), records.claim_next(statements, 3)]
    leases = {r.id: r.lease_expires_at for r in claims}
    keepers_before = _lease_threads()  # other contexts of this test session may have keepers of their own
    with Heartbeat(ctx, first, claims[0].attempt_token), Heartbeat(ctx, second, claims[1].attempt_token) as held:
        wait_until(lambda: all(row(sessions, r).lease_expires_at > leases[r] for r in (first, second)), 10,
                   "both leases renewed")
        assert held.state is records.Lease.HELD
        assert _lease_threads() - keepers_before <= 1  # two held attempts, at most one new thread (this ctx's)
    ended = row(sessions, second).lease_expires_at
    wait_until(lambda: row(sessions, second).lease_expires_at < utcnow(), 10, "the released lease running out")
    assert row(sessions, second).lease_expires_at == ended  # no renewal after the heartbeat was released
