"""The per-process context of a worker (`WorkerContext`) for tests that run jobs and reconciler passes in-process,
against the real PostgreSQL, Redis and S3 server of the test infrastructure."""
from __future__ import annotations

from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common.events import EventLog
from reportflow_common.outbox import OutboxPublisher
from reportflow_common.queue import make_celery
from reportflow_common.settings import Settings
from reportflow_common.storage import make_storage
from reportflow_worker.jobs import WorkerContext
from reportflow_worker.shutdown import ShutdownClock


def worker_context(settings: Settings, engine: Engine, sessions: sessionmaker[Session], redis: Redis,
                   name: str) -> WorkerContext:
    """What a worker process makes for itself (`celery_app._PerProcess`), with a Celery app named `name`;
    `sessions` is bound to `engine`."""
    events = EventLog(redis, history_max=settings.event_history_max, history_ttl=settings.event_history_ttl_seconds)
    # single statements in AUTOCOMMIT on the same pool, as the worker's own engine for them (db.engines_for)
    statements = engine.execution_options(isolation_level="AUTOCOMMIT")
    return WorkerContext(settings, sessions, redis, make_storage(settings), events,
                         OutboxPublisher(sessions, events, statements=statements),
                         make_celery(settings, name), ShutdownClock(settings.graceful_timeout_seconds),
                         statements=statements)
