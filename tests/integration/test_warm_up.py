"""Processes ready before their first job or request (bench/README.md, the section on the first round): a worker
process has its connections open and the claim prepared, a reports process its create and its read
prepared, and warming up changes no data and survives an outage. Against the real PostgreSQL, Redis and S3 server."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import event, func, select

from reportflow_common.db import Report, User, transaction
from reportflow_common.settings import WORKER, load_settings
from reportflow_reports.app import warm_up
from reportflow_worker import records
from reportflow_worker.celery_app import create_celery
from reportflow_worker.jobs import open_connections


def prepared_names(conn) -> set[str]:
    return {name for (name,) in conn.exec_driver_sql("SELECT name FROM pg_prepared_statements")}


def statements_sent(engine, action) -> list[str]:
    sent: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        sent.append(statement)
    event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return sent


@pytest.fixture(scope="module")
def settings(infra):
    """The worker's settings (the module's `sessions` use its database)."""
    broker = infra.redis.url.rsplit("/", 1)[0] + "/3"  # a broker database of this module's own
    return load_settings(WORKER, infra.base_env(BROKER_URL=broker))


def test_a_warmed_up_worker_process_claims_its_first_job_without_preparing_the_claim(settings, sessions):
    ctx = create_celery(settings).reportflow_resources.get()  # what the warm-up thread makes, then opens
    open_connections(ctx, lane=False)
    with ctx.statements.connect() as conn:  # the connection the warm-up left in the pool
        assert {f"claim_{settings.job_order}", "succeed_attempt"} <= prepared_names(conn)
    user_id = uuid.uuid4()
    with transaction(sessions) as s:
        s.add(User(id=user_id, email=f"warm-{user_id.hex[:8]}@example.com", password_hash="x"))
        s.flush()
        s.add(Report(user_id=user_id, type="demo", params={"rows": 10}))
    claimed = []
    sent = statements_sent(ctx.statements, lambda: claimed.append(
        records.claim_next(ctx.statements, 30, settings.job_order)))
    assert claimed[0] is not None and claimed[0].user_id == user_id
    assert not [sql for sql in sent if sql.startswith("PREPARE")], sent


FIRST_JOB_SET_UP = """
import json, sys
from reportflow_common.settings import WORKER, load_settings
from reportflow_worker import records
from reportflow_worker.celery_app import create_celery
create_celery(load_settings(WORKER))
print(json.dumps({"modules": sorted(m for m in sys.modules if m.startswith("reportflow_worker.builders.")),
                  "claims": records._claim.cache_info().currsize}))
"""


def test_the_worker_makes_what_every_job_uses_before_its_pool_forks(infra):
    """In a fresh interpreter, as the worker's main process: what children inherit instead of making on a job."""
    made = json.loads(subprocess.run([sys.executable, "-c", FIRST_JOB_SET_UP], env=infra.base_env(),
                                     capture_output=True, text=True, check=True, timeout=60).stdout)
    assert {"reportflow_worker.builders.demo", "reportflow_worker.builders.activity",
            "reportflow_worker.builders.lean_xlsx"} <= set(made["modules"])
    assert made["claims"] == 1


def test_opening_a_worker_processs_connections_fails_loudly_when_postgresql_is_down(infra):
    settings = load_settings(WORKER, infra.base_env(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"))
    ctx = create_celery(settings).reportflow_resources.get()
    with pytest.raises(Exception, match="127.0.0.1"):  # the warm-up thread logs it; the first job retries
        open_connections(ctx, lane=False)


def test_a_warmed_up_reports_process_has_its_create_and_read_prepared_and_nothing_was_inserted(make_reports_app,
                                                                                               sessions):
    app = make_reports_app()
    ctx = app.extensions["reportflow"]
    with sessions() as s:
        before = s.scalar(select(func.count()).select_from(Report))
    warm_up(app)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Report)) == before
    order = ctx.settings.job_order
    with ctx.reads.connect() as conn:
        assert {f"create_report_{order}", f"report_owned_{order}"} <= prepared_names(conn)


@pytest.mark.parametrize("down", ["postgres", "broker", "jwks"])
def test_a_reports_process_warms_up_what_it_can_through_an_outage(make_reports_app, caplog, down):
    nowhere = {"postgres": {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
               "broker": {"BROKER_URL": "redis://127.0.0.1:1/0"},
               "jwks": {"JWKS_URL": "http://127.0.0.1:1/.well-known/jwks.json"}}[down]
    app = make_reports_app(**nowhere)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="reportflow_reports.app"):
        warm_up(app)  # never raises: the first requests open what it could not
    failed = [r.part for r in caplog.records if r.getMessage() == "not ready ahead of the first request"]
    assert failed == [down]
    assert time.monotonic() - started < 20  # a worker that cannot reach a service still starts serving
