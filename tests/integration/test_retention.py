"""Report retention against real PostgreSQL, Redis and the S3 server: `expires_at`, the reconciler ending it
(status `expired`, the file deleted from the bucket, the metric), downloads answered 410, and migration 0003.

Time is moved by a setting, not by waiting days: the worker here keeps reports for RETENTION_SECONDS. The
worker's functions and its reconciler are called in process (as in test_worker_jobs.py); the reports API is
the real app, in process, on the same database and bucket.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import psycopg2
import pytest
from prometheus_client import REGISTRY
from psycopg2 import sql
from redis import Redis
from sqlalchemy import update

from reportflow_common import contracts as c
from reportflow_common.db import Report, transaction, utcnow
from reportflow_common.migrate import downgrade, upgrade
from reportflow_common.settings import WORKER, load_settings
from reportflow_common.storage import make_storage
from reportflow_worker import records
from reportflow_worker.jobs import attempt_key, run_next_job
from reportflow_worker.reconciler import Reconciler
from support.waiting import wait_until
from support.worker_context import worker_context

from .contract_checks import assert_problem

RETENTION_SECONDS = 2
LIFECYCLE = Path(__file__).resolve().parents[2] / "deploy" / "s3" / "reports-lifecycle.json"
EXPIRED_METRIC = "reportflow_worker_reports_expired_total"


def worker_settings(infra, **env):
    broker = infra.redis.url.rsplit("/", 1)[0] + "/3"  # a broker database of this module's own
    return load_settings(WORKER, infra.base_env(BROKER_URL=broker, REPORT_RETENTION_SECONDS=str(RETENTION_SECONDS),
                                                **env))


@pytest.fixture(scope="module")
def settings(infra):
    return worker_settings(infra)


@pytest.fixture(scope="module")
def ctx(settings, engine, sessions):
    redis = Redis.from_url(settings.redis_url)
    yield worker_context(settings, engine, sessions, redis, "test-retention")
    redis.close()


def make_reconciler(ctx, engine, storage=None) -> Reconciler:
    broker = Redis.from_url(ctx.settings.effective_broker_url)
    return Reconciler(ctx.settings, engine, ctx.sessions, broker, storage or ctx.storage, ctx.outbox, ctx.celery)


@pytest.fixture(scope="module")
def reconciler(ctx, engine):
    return make_reconciler(ctx, engine)


def expired_total() -> float:
    return REGISTRY.get_sample_value(EXPIRED_METRIC) or 0.0


def passes_until(reconciler: Reconciler, done, what: str) -> dict:
    """Reconciler passes until `done()`; what they did, summed. (Other modules' ended reports share the
    database and expire with this module's retention too: one pass may not reach ours.)"""
    total: dict[str, int] = {}

    def one_pass():
        result = reconciler.run_once()
        assert result is not None and "failed" not in result, result
        for name, count in result.items():
            total[name] = total.get(name, 0) + count
        return done()
    wait_until(one_pass, 30, what)
    return total


def succeeded_report(reports, ctx, user) -> dict:
    """A demo report made through the API and built by the worker (this module's retention)."""
    r = reports.post("/v1/reports", json={"type": "demo", "params": {"rows": 50, "columns": 3}}, headers=user.headers)
    assert r.status_code == 202, r.get_data(as_text=True)
    assert run_next_job(ctx) == c.SUCCEEDED
    report = reports.get(f"/v1/reports/{r.get_json()['id']}", headers=user.headers).get_json()
    assert report["status"] == c.SUCCEEDED
    return report


def objects_of(infra, user_id: str, report_id: str) -> list[str]:
    listing = infra.s3.client().list_objects_v2(Bucket=infra.s3.bucket, Prefix=f"reports/{user_id}/{report_id}")
    return [o["Key"] for o in listing.get("Contents", [])]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_report_expires_its_file_is_deleted_and_its_download_is_gone(reports, accounts, ctx, sessions, reconciler,
                                                                       infra):
    alice = accounts.new()
    report = succeeded_report(reports, ctx, alice)
    report_id, path = report["id"], f"/v1/reports/{report['id']}"
    assert at(report["expires_at"]) - at(report["finished_at"]) == timedelta(seconds=RETENTION_SECONDS)
    key = records.load(sessions, uuid.UUID(report_id)).storage_key
    assert objects_of(infra, alice.id, report_id) == [key]
    assert reports.get(path + "/download", headers=alice.headers).status_code == 302

    # Past expires_at the download is refused at once, even before the reconciler's pass has run.
    wait_until(lambda: utcnow() > at(report["expires_at"]), 10, "the retention to pass")
    assert_problem(reports.get(path + "/download", headers=alice.headers), 410, c.GONE)
    assert objects_of(infra, alice.id, report_id) == [key]

    before = expired_total()
    done = passes_until(reconciler, lambda: not objects_of(infra, alice.id, report_id), "the file to be deleted")
    assert done["expired"] >= 1 and done["files_deleted"] >= 1, done
    assert expired_total() - before == done["expired"]
    assert records.load(sessions, uuid.UUID(report_id)).storage_key is None

    # The report stays, as a record: GET and the list answer it as expired; its download is gone.
    now = reports.get(path, headers=alice.headers).get_json()
    assert now["status"] == c.EXPIRED and "download_url" not in now
    assert {k: now[k] for k in ("expires_at", "finished_at", "rows", "size_bytes", "created_at")} == \
        {k: report[k] for k in ("expires_at", "finished_at", "rows", "size_bytes", "created_at")}
    listed = reports.get("/v1/reports?status=expired", headers=alice.headers).get_json()["items"]
    assert [r["id"] for r in listed] == [report_id]
    body = assert_problem(reports.get(path + "/download", headers=alice.headers), 410, c.GONE)
    assert "expired" in body["detail"]

    # Another user still cannot tell it exists; its owner can delete it.
    bob = accounts.new()
    assert_problem(reports.get(path + "/download", headers=bob.headers), 404, c.NOT_FOUND)
    assert reports.delete(path, headers=alice.headers).status_code == 204
    assert_problem(reports.get(path, headers=alice.headers), 404, c.NOT_FOUND)


def test_a_file_storage_could_not_delete_is_deleted_by_a_later_pass(reports, accounts, ctx, engine, sessions,
                                                                   reconciler, infra):
    """The row becomes `expired` first (downloads are 410 from then on) and keeps naming its file until the
    file is really gone: a pass that cannot reach the bucket leaves it for the next one."""
    alice = accounts.new()
    report = succeeded_report(reports, ctx, alice)
    report_id = uuid.UUID(report["id"])
    key = records.load(sessions, report_id).storage_key
    wait_until(lambda: utcnow() > at(report["expires_at"]), 10, "the retention to pass")

    no_bucket = make_storage(worker_settings(infra, S3_BUCKET=f"no-such-bucket-{uuid.uuid4().hex[:8]}"))
    cut_off = passes_until(make_reconciler(ctx, engine, storage=no_bucket),
                           lambda: records.load(sessions, report_id).status == c.EXPIRED, "the report to expire")
    assert cut_off["files_deleted"] == 0, cut_off
    stuck = records.load(sessions, report_id)
    assert (stuck.status, stuck.storage_key) == (c.EXPIRED, key)
    assert objects_of(infra, alice.id, report["id"]) == [key]
    assert_problem(reports.get(f"/v1/reports/{report_id}/download", headers=alice.headers), 410, c.GONE)

    passes_until(reconciler, lambda: records.load(sessions, report_id).storage_key is None, "the file to go")
    assert objects_of(infra, alice.id, report["id"]) == []


def test_failed_and_cancelled_reports_expire_too_and_active_ones_never(accounts, ctx, sessions, reconciler):
    """Every ended report has a retention. A report ended without `expires_at` (by a previous version, during
    a rolling upgrade) gets finished_at + retention from the reconciler; queued and running ones get none."""
    user = uuid.UUID(accounts.new().id)
    long_ago = utcnow() - timedelta(hours=1)

    def insert(status: str, **values) -> uuid.UUID:
        report = Report(id=uuid.uuid4(), user_id=user, type="demo", params={"rows": 1}, status=status,
                        progress=0.0, created_at=long_ago, **values)
        with transaction(sessions) as s:
            s.add(report)
        return report.id

    failed = insert(c.FAILED, finished_at=long_ago, error="boom")
    cancelled = insert(c.CANCELLED, finished_at=long_ago)
    queued = insert(c.QUEUED, cancel_requested=True)  # never claimed by the tests' doorbells
    running = insert(c.RUNNING, attempt_token=uuid.uuid4(), lease_expires_at=utcnow() + timedelta(hours=1),
                     started_at=long_ago)
    try:
        before = expired_total()
        done = passes_until(reconciler, lambda: all(records.load(sessions, i).status == c.EXPIRED
                                                    for i in (failed, cancelled)), "both to expire")
        assert done["expired"] >= 2 and expired_total() - before == done["expired"]
        for report_id in (failed, cancelled):
            ended = records.load(sessions, report_id)
            assert ended.status == c.EXPIRED
            assert ended.expires_at == ended.finished_at + timedelta(seconds=RETENTION_SECONDS)
        assert records.load(sessions, failed).error == "boom"  # what happened stays on record
        for report_id, status in ((queued, c.QUEUED), (running, c.RUNNING)):
            active = records.load(sessions, report_id)
            assert (active.status, active.expires_at) == (status, None)
    finally:
        with transaction(sessions) as s:
            s.execute(update(Report).where(Report.id.in_([queued, running]))
                      .values(status=c.CANCELLED, finished_at=utcnow(), attempt_token=None, lease_expires_at=None,
                              expires_at=utcnow() + timedelta(days=7)))


def test_a_job_that_ends_gets_its_expiry_in_the_same_commit(accounts, ctx, sessions):
    user = uuid.UUID(accounts.new().id)
    report = Report(id=uuid.uuid4(), user_id=user, type="demo", params={"rows": 10, "columns": 2, "seed": 1},
                    status=c.QUEUED, progress=0.0, created_at=utcnow(), rung_at=utcnow())
    with transaction(sessions) as s:
        s.add(report)
    claim = records.claim_next(ctx.statements, 30)
    assert claim.id == report.id and claim.expires_at is None  # running: no retention yet
    ending = records.end_attempt(sessions, report.id, claim.attempt_token, c.FAILED, retention=timedelta(days=3),
                                 error="boom")
    assert ending.status == c.FAILED
    ended = records.load(sessions, report.id)
    assert ended.expires_at == ended.finished_at + timedelta(days=3)


# Migration 0003

@pytest.fixture()
def scratch_database(infra):
    """An empty database of its own, dropped afterwards."""
    name = f"rf_migration_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(infra.postgres.admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _db = infra.postgres.admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def test_migration_0003_dates_the_reports_that_had_ended_and_downgrades(scratch_database):
    upgrade(scratch_database, "0002")
    user = uuid.uuid4()
    finished, created = datetime(2026, 1, 5, 10, 0, 0).astimezone(), datetime(2026, 1, 5, 9, 0, 0).astimezone()
    rows = {"succeeded": (c.SUCCEEDED, finished), "cancelled_long_ago": (c.CANCELLED, None),
            "queued": (c.QUEUED, None), "running": (c.RUNNING, None)}
    ids = {name: uuid.uuid4() for name in rows}
    with psycopg2.connect(scratch_database) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO users (id, email, password_hash, created_at) VALUES (%s, 'm@example.com', 'x', now())",
                    (str(user),))
        for name, (status, finished_at) in rows.items():
            cur.execute("INSERT INTO reports (id, user_id, type, params, status, progress, created_at, finished_at) "
                        "VALUES (%s, %s, 'demo', '{}', %s, 0, %s, %s)",
                        (str(ids[name]), str(user), status, created, finished_at))
    conn.close()

    upgrade(scratch_database, "0003", report_retention=timedelta(hours=5))
    with psycopg2.connect(scratch_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, expires_at FROM reports")
        expires = {uuid.UUID(str(i)): e for i, e in cur.fetchall()}
        assert expires[ids["succeeded"]] == finished + timedelta(hours=5)
        assert expires[ids["cancelled_long_ago"]] == created + timedelta(hours=5)  # no finished_at: its creation
        assert expires[ids["queued"]] is None and expires[ids["running"]] is None  # dated when they end
        cur.execute("UPDATE reports SET status = 'expired' WHERE id = %s", (str(ids["succeeded"]),))
    with conn, conn.cursor() as cur, pytest.raises(psycopg2.errors.CheckViolation):
        cur.execute("UPDATE reports SET status = 'lost' WHERE id = %s", (str(ids["queued"]),))
    conn.close()

    downgrade(scratch_database, "0002")  # the previous version knows no `expired`: those reports go
    with psycopg2.connect(scratch_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM reports")
        assert {uuid.UUID(str(i)) for (i,) in cur.fetchall()} == set(ids.values()) - {ids["succeeded"]}
        cur.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'reports' "
                    "AND column_name = 'expires_at'")
        assert cur.fetchone() == (0,)
    conn.close()
    upgrade(scratch_database, "0003")  # and up again, with the default retention


# The second line of defence: the bucket's lifecycle rule (README, "Report retention")

def test_the_documented_lifecycle_rule_is_accepted_by_s3_and_never_runs_ahead_of_the_retention(infra):
    rules = json.loads(LIFECYCLE.read_text())
    (rule,) = rules["Rules"]
    key = attempt_key(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), ".xlsx")
    assert key.startswith(rule["Filter"]["Prefix"])  # it covers every report file the worker writes
    default_days = load_settings(WORKER, {"DATABASE_URL": "x", "REDIS_URL": "x"}).report_retention.days
    assert rule["Expiration"]["Days"] == default_days + 1  # a day's margin: the worker deletes first
    s3, bucket = infra.s3.client(), f"lifecycle-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules)
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == rules["Rules"]
