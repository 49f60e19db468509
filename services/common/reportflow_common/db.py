"""The schema (owned by the Alembic migrations beside this module) and how services open sessions."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID, psycopg2
from sqlalchemy.engine import Connection, CursorResult, Engine, Row
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql import Executable

from .settings import Settings


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254), nullable=False, unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class Report(Base):
    __tablename__ = "reports"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"),
                                               nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    params: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rows: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    storage_key: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # The running attempt: its token guards every state change it makes; its lease is renewed by its
    # heartbeat, and a lease that runs out lets the reconciler take the job back.
    attempt_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When a wake-up message (the "doorbell") was last sent for this queued row.
    rung_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the retention of a finished report ends (finished_at + retention; None while it is active): then its
    # file is deleted and it becomes `expired`.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_reports_user_created", "user_id", text("created_at DESC"), text("id DESC")),
        Index("ux_reports_user_idempotency", "user_id", "idempotency_key", unique=True,
              postgresql_where=text("idempotency_key IS NOT NULL")),
        Index("ix_reports_queued", "created_at", "id", postgresql_where=text("status = 'queued'")),
        Index("ix_reports_user_active", "user_id", postgresql_where=text("status IN ('queued', 'running')")),
        Index("ix_reports_running_lease", "lease_expires_at", postgresql_where=text("status = 'running'")),
        Index("ix_reports_expiring", "expires_at",
              postgresql_where=text("status IN ('succeeded', 'failed', 'cancelled')")),
        Index("ix_reports_expired_with_file", "id",
              postgresql_where=text("status = 'expired' AND storage_key IS NOT NULL")),
        Index("ix_reports_ended_undated", "id", postgresql_where=text(
            "expires_at IS NULL AND status IN ('succeeded', 'failed', 'cancelled')")),
    )


class OutboxEvent(Base):
    """A terminal event (report.succeeded|failed|cancelled) written in the transaction that ends the job, and
    published to the event log after the commit; the reconciler publishes any that are left behind."""
    __tablename__ = "event_outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"),
                                               nullable=False)
    report_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)  # may outlive the report
    event: Mapped[str] = mapped_column(String(32), nullable=False)
    payload: Mapped[dict] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_event_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    )


def sqlalchemy_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` too, as hosting providers hand them out."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


PING_AFTER_IDLE_SECONDS = 1.0


def engine_for(settings: Settings, *, pool_size: int | None = None, **kwargs) -> Engine:
    """The engine of a service process: at most DATABASE_POOL_SIZE connections (or `pool_size`, a share of
    them), and a request finding them all busy waits DATABASE_POOL_TIMEOUT_SECONDS for one (then 503) rather
    than opening more than PostgreSQL was sized for."""
    return make_engine(settings.database_url, pool_size=pool_size or settings.database_pool_size, max_overflow=0,
                       pool_timeout=settings.database_pool_timeout_seconds, **kwargs)


def engines_for(settings: Settings) -> tuple[Engine, Engine]:
    """(transactions, single statements): DATABASE_POOL_SIZE shared between a pool for transactions (sessions)
    and one whose connections stay in AUTOCOMMIT, for hot paths that are one statement: each is then one round
    trip, with no BEGIN, no COMMIT or ROLLBACK, and no isolation level switched per checkout (which an
    `execution_options(isolation_level=...)` on a shared pool costs, in both processes, on every use). With a
    pool of one connection the two share it that way."""
    size = settings.database_pool_size
    if size < 2:
        engine = engine_for(settings)
        return engine, engine.execution_options(isolation_level="AUTOCOMMIT")
    single = (size + 1) // 2
    return engine_for(settings, pool_size=size - single), engine_for(settings, pool_size=single,
                                                                      isolation_level="AUTOCOMMIT")


def make_engine(url: str, **kwargs) -> Engine:
    options = {"pool_size": 5, "max_overflow": 5, "connect_args": {"connect_timeout": 5}, **kwargs}
    engine = create_engine(sqlalchemy_url(url), **options)
    _ping_after_idle(engine, PING_AFTER_IDLE_SECONDS)
    return engine


def _ping_after_idle(engine: Engine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling without a round trip per checkout: a pooled connection that sat idle
    longer than `idle_seconds` (when a database restart or a dropped connection may have gone unnoticed) is
    pinged before use and replaced if dead; one back from use a moment ago is not (`pool_pre_ping` pings them
    all: a third of a short transaction's round trips). A connection that breaks in between fails its
    statement as invalidated, which callers already treat as a transient outage."""
    @event.listens_for(engine, "checkin")
    def _idle_from_now(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since <= idle_seconds:
            return  # new, or just back from use
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:
            raise DisconnectionError("pooled connection is dead") from exc  # the pool replaces it and retries


def literal_sql(statement: Executable) -> str:
    """`statement` as PostgreSQL text with every value inline (its `argument`s stay `$n`), for `Prepared`."""
    sql = str(statement.compile(dialect=psycopg2.dialect(), compile_kwargs={"literal_binds": True}))
    if "%(" in sql:  # SQLAlchemy left a value unrendered (it does in an INSERT's CTE or RETURNING)
        raise ValueError("every value but the arguments must render as a literal")
    return sql


def argument(position: int, pg_type: str) -> ColumnElement:
    """The `position`-th argument (1-based) of a `Prepared` statement, in a statement built with SQLAlchemy."""
    return literal_column(f"${position}::{pg_type}")


class Prepared:
    """A hot statement that PostgreSQL plans once per connection instead of at every execution: for the
    read of one report with its queue position, planning the ranking cost more PostgreSQL CPU than running it
    (bench/README.md, the quiet-machine section after one doorbell per job and
    prepared statements). psycopg2 has no API for server-side prepared statements, so this is
    SQL's own PREPARE, sent on a connection's first use, and EXECUTE, both through SQLAlchemy: errors,
    disconnects and the pool behave as for any statement, and a replaced connection prepares again (its
    `info` starts empty). `statement` takes its arguments as `argument(n, type)` and every other value as a
    literal, so the plan is made for them (a partial index on `status = 'queued'` still applies). Rows hold
    what psycopg2 returns (a uuid column as `uuid.UUID`: SQLAlchemy's psycopg2 dialect registers
    that type on each connection). For SELECT and UPDATE: SQLAlchemy renders an INSERT's
    Python-side defaults, CTEs and RETURNING subqueries without their values; such a statement is given as SQL
    text, composed around `literal_sql` of the parts SQLAlchemy renders."""

    def __init__(self, name: str, statement: Executable | str, argument_types: tuple[str, ...]):
        assert name.isidentifier()
        self.name = name
        sql = statement if isinstance(statement, str) else literal_sql(statement)
        self.prepare = f"PREPARE {name}({', '.join(argument_types)}) AS {sql}"
        self.execute = f"EXECUTE {name}({', '.join(['%s'] * len(argument_types))})"

    def run(self, conn: Connection, *arguments) -> CursorResult:
        """Run on `conn` (in its transaction, if it has one: a PREPARE outlives a rollback)."""
        self.prepare_on(conn)
        return conn.exec_driver_sql(self.execute, arguments)

    def prepare_on(self, conn: Connection) -> None:
        """PREPARE on `conn` unless that connection already has it: `run` does this on first use; a process
        warming up calls it itself, so that its first request or job does not plan the statement."""
        prepared = conn.connection.info.setdefault("prepared", set())
        if self.name not in prepared:
            conn.exec_driver_sql(self.prepare)
            prepared.add(self.name)

    def first(self, engine: Engine, *arguments) -> Row | None:
        """The first row, on a connection of its own (`engine` in AUTOCOMMIT: one round trip)."""
        with engine.connect() as conn:
            return self.run(conn, *arguments).first()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
