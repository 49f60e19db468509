"""create_celery(settings): the worker's Celery app, its one task (the doorbell), per-process resources,
the shutdown deadline and the reconciler's thread. The pool consumes both queues (`reports` and `reports.lane`);
`lane=True` makes the reserved lane's app (reportflow_worker.lane): it consumes only `reports.lane`, its doorbells
claim small jobs only, and it runs no reconciler (the pool's main process does)."""
from __future__ import annotations

import logging
import os
import signal
import threading

from celery import Celery, signals

from reportflow_common import contracts as c
from reportflow_common.db import engines_for, make_session_factory
from reportflow_common.events import EventLog
from reportflow_common.outbox import OutboxPublisher
from reportflow_common.queue import make_celery
from reportflow_common.redis_pool import redis_client
from reportflow_common.settings import Settings
from reportflow_common.storage import make_storage

from . import records
from .builders import load_builders
from .jobs import WorkerContext, open_connections, run_next_job
from .metrics import worker_metrics
from .reconciler import ReconcilerLoop, make_reconciler
from .shutdown import ShutdownClock

log = logging.getLogger(__name__)
HARD_TIME_LIMIT_MARGIN_SECONDS = 30


class _PerProcess:
    """Clients are made in each prefork child, never inherited across fork: by a warm-up thread as the child
    starts (making the S3 client alone takes a second or more on a loaded machine, which a small report would
    otherwise wait for), or by the first task if it comes first. The warm-up thread then opens the child's
    connections (PostgreSQL, with the claim and the success prepared, Redis, S3) as its first job would: the
    first burst after a start otherwise paid for them in every child (bench/README.md, the section on the first
    round)."""

    def __init__(self, settings: Settings, celery: Celery, shutdown: ShutdownClock):
        self.settings, self.celery, self.shutdown = settings, celery, shutdown
        self._pid, self._ctx = None, None
        self._lock = threading.Lock()  # the warm-up thread and the first task

    def warm_up(self, lane: bool) -> None:
        def make_clients():
            ctx = self.get()
            try:
                open_connections(ctx, lane)
            except Exception as exc:  # an outage at start: the first job opens them, retrying as jobs do
                log.warning("connections not opened ahead of the first job", extra={"error": str(exc)})
            log.info("process ready", extra={"lane": lane})
        threading.Thread(target=make_clients, name="warm-up", daemon=True).start()

    def get(self) -> WorkerContext:
        with self._lock:
            return self._current()

    def _current(self) -> WorkerContext:
        if self._ctx is None or self._pid != os.getpid():
            s = self.settings
            redis = redis_client(s, socket_timeout=10)
            engine, statements = engines_for(s)  # transactions, and single statements in AUTOCOMMIT
            sessions = make_session_factory(engine)
            events = EventLog(redis, history_max=s.event_history_max,
                              history_ttl=s.event_history_ttl_seconds)
            self._ctx = WorkerContext(s, sessions, redis, make_storage(s), events,
                                      OutboxPublisher(sessions, events, statements=statements),
                                      self.celery, self.shutdown, statements=statements)
            self._pid = os.getpid()
            worker_metrics()  # its first use in a process creates every series (and its multiprocess files)
        return self._ctx


def create_celery(settings: Settings, lane: bool = False) -> Celery:
    app = make_celery(settings, "reportflow-worker-lane" if lane else "reportflow-worker")
    app.conf.update(task_soft_time_limit=settings.job_time_limit_seconds,
                    task_time_limit=settings.job_time_limit_seconds + HARD_TIME_LIMIT_MARGIN_SECONDS)
    shutdown = ShutdownClock(settings.graceful_timeout_seconds)  # shared memory: made before the pool forks
    # what every job uses and each process would otherwise make on its first job: made once, inherited by the pool
    load_builders(settings.xlsx_engine)
    records.build_statements(settings.job_order, lane)
    resources = _PerProcess(settings, app, shutdown)
    loops: list[ReconcilerLoop] = []

    @app.task(name=c.BUILD_REPORT_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def build_report(self, report_id: str | None = None) -> str:
        """A doorbell: runs the next runnable job, which may not be `report_id` (the job that rang)."""
        from_lane_queue = (self.request.delivery_info or {}).get("routing_key") == c.LANE_QUEUE
        return run_next_job(resources.get(), rung_for=report_id, lane=lane, from_lane_queue=from_lane_queue)

    @signals.worker_process_init.connect(weak=False)
    def _child_started(**_):
        """A prefork child signalled with the whole process group finishes or hands back its job like the
        main process asks it to; a second SIGTERM ends it at once. Its clients are made right away."""
        seen = []

        def on_sigterm(signum, _frame):
            if seen:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            seen.append(signum)
            shutdown.request()
        signal.signal(signal.SIGTERM, on_sigterm)
        resources.warm_up(lane)

    @signals.worker_shutting_down.connect(weak=False)
    def _shutting_down(**_):
        shutdown.request()
        log.info("shutting down: running jobs finish or are handed back",
                 extra={"deadline_seconds": round(shutdown.graceful - shutdown.margin, 1)})

    @signals.worker_ready.connect(weak=False)
    def _start_reconciler(**_):
        if not lane:
            loops.append(ReconcilerLoop(make_reconciler(settings), settings.reconcile_interval_seconds).start())

    @signals.worker_shutdown.connect(weak=False)
    def _stop_reconciler(**_):
        for loop in loops:
            loop.stop()

    @signals.worker_process_shutdown.connect(weak=False)
    def _child_exit(pid=None, **_):
        from reportflow_common.metrics import mark_process_dead
        mark_process_dead(pid or os.getpid())

    # the disabled one (results are ignored), loaded for the pool by the main thread, whose child runs the tasks:
    # loading it scans every installed package's entry points
    app.backend  # noqa: B018
    app.reportflow_resources = resources
    app.reportflow_shutdown = shutdown
    return app
