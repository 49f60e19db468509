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
