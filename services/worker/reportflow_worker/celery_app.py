"""create_celery(settings): the worker's Celery app, its one task, and per-process resources."""
from __future__ import annotations

import logging
import os

from celery import Celery, signals
from redis import Redis

from reportflow_common import contracts as c
from reportflow_common.db import make_engine, make_session_factory
from reportflow_common.events import EventLog
from reportflow_common.queue import make_celery
from reportflow_common.settings import Settings
from reportflow_common.storage import make_storage

from .jobs import JOBS_RETRIED, WorkerContext, fail_after_retries, run_report, transient_errors

log = logging.getLogger(__name__)
TRANSIENT_RETRIES = 3


class _PerProcess:
    """Connections are opened lazily in each prefork child, never inherited across fork."""

    def __init__(self, settings: Settings):
        self.settings, self._pid, self._ctx = settings, None, None

    def get(self) -> WorkerContext:
        if self._ctx is None or self._pid != os.getpid():
            s = self.settings
            redis = Redis.from_url(s.redis_url, socket_timeout=10, socket_connect_timeout=5)
            self._ctx = WorkerContext(s, make_session_factory(make_engine(s.database_url)), redis, make_storage(s),
                                      EventLog(redis, s.redis_url, history_max=s.event_history_max,
                                               history_ttl=s.event_history_ttl_seconds))
            self._pid = os.getpid()
        return self._ctx


def create_celery(settings: Settings) -> Celery:
    app = make_celery(settings, "reportflow-worker")
    resources = _PerProcess(settings)
    transient = transient_errors()

    @app.task(name=c.BUILD_REPORT_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def build_report(self, report_id: str) -> str:
        """Thin: takes an id, leaves the work to jobs.run_report; transient outages are retried."""
        try:
            return run_report(resources.get(), report_id, self.request.retries)
        except transient as exc:
            if self.request.retries >= TRANSIENT_RETRIES:
                fail_after_retries(resources.get(), report_id, "A dependency stayed unavailable; giving up.")
                raise
            log.warning("transient error; retrying", extra={"error": str(exc)})
            JOBS_RETRIED.labels("transient").inc()
            raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc

    @signals.worker_process_shutdown.connect(weak=False)
    def _child_exit(pid=None, **_):
        from reportflow_common.metrics import mark_process_dead
        mark_process_dead(pid or os.getpid())

    app.reportflow_resources = resources
    return app
