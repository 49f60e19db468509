"""The pool pings a connection that sat idle before handing it out, and replaces it if it died meanwhile."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from reportflow_common import db


@pytest.fixture()
def engine(infra):
    engine = db.make_engine(infra.postgres.url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_killed_while_idle_is_replaced_before_use(engine, infra, monkeypatch):
    """A database restart or a proxy dropping idle connections: the next user must not get an error."""
    first = backend_pid(engine)
    admin = db.make_engine(infra.postgres.url, pool_size=1, max_overflow=0)
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
    admin.dispose()
    monkeypatch.setattr(db.time, "monotonic", lambda real=db.time.monotonic: real() + 2 * db.PING_AFTER_IDLE_SECONDS)
    second = backend_pid(engine)  # no OperationalError: the idle connection was pinged, found dead, replaced
    assert second != first


@pytest.mark.parametrize("size", [1, 2, 5, 10])
def test_the_reports_pools_share_database_pool_size_one_of_them_in_autocommit(infra, size):
    from reportflow_common.settings import REPORTS, load_settings

    settings = load_settings(REPORTS, infra.base_env(DATABASE_POOL_SIZE=str(size), JWKS_URL="http://127.0.0.1:9/jwks"))
    transactions, single_statements = db.engines_for(settings)
    try:
        pools = {id(engine.pool): engine.pool.size() for engine in (transactions, single_statements)}
        assert sum(pools.values()) == size
        with single_statements.connect() as conn:
            assert conn.connection.dbapi_connection.autocommit is True
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            assert conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND state = 'active' "
                                     "AND xact_start = query_start"), {"pid": pid}).scalar_one() == 1
        with transactions.connect() as conn:
            assert conn.connection.dbapi_connection.autocommit is False
    finally:
        transactions.dispose()
        single_statements.dispose()
