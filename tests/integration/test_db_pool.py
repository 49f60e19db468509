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


def kill_idle_connection(engine, infra, monkeypatch) -> int:
    """Terminate the backend of `engine`'s one pooled connection and let it look idle long enough to be pinged;
    returns that backend's pid."""
    pid = backend_pid(engine)
    admin = db.make_engine(infra.postgres.url, pool_size=1, max_overflow=0)
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    admin.dispose()
    monkeypatch.setattr(db.time, "monotonic", lambda real=db.time.monotonic: real() + 2 * db.PING_AFTER_IDLE_SECONDS)
    return pid


def test_a_connection_killed_while_idle_is_replaced_before_use(engine, infra, monkeypatch):
    """A database restart or a proxy dropping idle connections: the next user must not get an error."""
    first = kill_idle_connection(engine, infra, monkeypatch)
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


def test_a_prepared_statement_answers_as_the_statement_does_and_again_on_a_new_connection(engine, infra,
                                                                                          monkeypatch):
    """Prepared once per connection: the same rows as the statement run directly; a connection that died and was
    replaced prepares again instead of failing with 'prepared statement does not exist'."""
    from sqlalchemy import column, insert, literal, select, values

    pairs = values(column("n"), column("word"), name="pairs").data([(1, "one"), (2, "two"), (3, "50%")])
    statement = select(pairs.c.word).where(pairs.c.n == db.argument(1, "int"), pairs.c.word != "three")
    prepared = db.Prepared("test_pairs", statement, ("int",))
    assert "'three'" in prepared.prepare  # literals stay literals: the plan is made for them
    users = db.User.__table__  # SQLAlchemy leaves the values in an INSERT's RETURNING unrendered: refused
    unrendered = insert(users).from_select(["email"], select(db.argument(1, "text"))).returning(
        users.c.id, select(literal(7) + 1).scalar_subquery())
    with pytest.raises(ValueError, match="literal"):
        db.Prepared("test_unrendered", unrendered, ("text",))
    assert [prepared.first(engine, n) for n in (1, 2, 3, 4)] == [("one",), ("two",), ("50%",), None]
    with engine.connect() as conn:  # the pool's one connection: prepared once, by its first use
        assert conn.execute(text("SELECT count(*) FROM pg_prepared_statements WHERE name = 'test_pairs'")
                            ).scalar_one() == 1
    first = kill_idle_connection(engine, infra, monkeypatch)
    assert prepared.first(engine, 2) == ("two",)
    assert backend_pid(engine) != first
