"""The reconciler: repairs what a vanished process or an outage left behind, from PostgreSQL's truth.

Each pass (every RECONCILE_INTERVAL_SECONDS, in a thread of each worker's main process; one pass at a time
across all replicas, by a PostgreSQL advisory lock):
1. takes back running jobs whose lease ran out: queued again and rung for, or failed once MAX_JOB_ATTEMPTS
   attempts have started (error in the API and the event, `reportflow_worker_jobs_gave_up_total`), or
   cancelled when a cancel was waiting; the dead attempt's object is deleted;
2. rings again for queued jobs whose message may be lost: when the broker holds fewer messages (in both
   queues, `reports` and the lane's: the pool consumes both) than there are queued jobs, for those last rung
   more than REQUEUE_AFTER_SECONDS ago (Redis lost its data; the reports service crashed or could not reach
   the broker after its commit);
3. publishes terminal events that were committed but not published (Redis was down, or the process died
   between the two), and purges published ones older than the event history;
4. ends the retention of finished reports whose `expires_at` has passed: each becomes `expired` (committed
   first, so downloads answer 410 from then on), then its file is deleted from storage and the row stops
   naming it (`reportflow_worker_reports_expired_total`); a file that could not be deleted (storage down)
   is tried again on the next passes. Ended reports without `expires_at` (ended by a previous version
   during a rolling upgrade) get theirs first.
After PostgreSQL was unreachable, take-backs wait one lease: live workers renew theirs first.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid

from celery import Celery
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common import contracts as c
from reportflow_common.db import make_engine, make_session_factory
from reportflow_common.events import EventLog
from reportflow_common.outbox import OutboxPublisher
from reportflow_common.queue import doorbell_queue, make_celery, ring_doorbell
from reportflow_common.redis_pool import redis_client
from reportflow_common.settings import Settings
from reportflow_common.storage import Storage, make_storage

from . import records
from .builders import report_output
from .jobs import attempt_key
from .metrics import worker_metrics

log = logging.getLogger(__name__)
LOCK_KEY = 0x7265706F7274  # "report": the advisory lock only one reconciler pass holds at a time
OUTBOX_GRACE_SECONDS = 2.0  # a producer publishes its own event right after its commit; older ones are ours
PURGE_EVERY_SECONDS = 60.0


class Reconciler:
    def __init__(self, settings: Settings, engine: Engine, sessions: sessionmaker[Session], broker: Redis | None,
                 storage: Storage, outbox: OutboxPublisher, celery: Celery):
        self.settings, self.engine, self.sessions, self.broker = settings, engine, sessions, broker
        self.storage, self.outbox, self.celery = storage, outbox, celery
        self.metrics = worker_metrics()
        self._database_down = False
        self._database_back_at: float | None = None  # when PostgreSQL answered again after an outage
        self._purged_at = float("-inf")

    def run_once(self) -> dict | None:
        """One pass; returns what it did, or None when another replica's pass holds the lock."""
        try:
            with self.engine.begin() as lock:
                if not lock.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOCK_KEY}).scalar():
                    self.metrics.reconciler_runs.labels("skipped").inc()
                    return None
                if self._database_down:
                    self._database_down, self._database_back_at = False, time.monotonic()
                done = {"taken_back": self._take_back() if self._may_take_back() else 0,
                        "rung": self._ring_for_queued(), "published": self._publish_pending(),
                        "expired": self._expire(), "files_deleted": self._delete_expired_files()}
                if time.monotonic() - self._purged_at >= PURGE_EVERY_SECONDS:
                    self.outbox.purge_published(self.settings.event_history_ttl_seconds)
                    self._purged_at = time.monotonic()
        except Exception as exc:
            from sqlalchemy.exc import SQLAlchemyError
            if isinstance(exc, SQLAlchemyError):
                self._database_down = True
            self.metrics.reconciler_runs.labels("failed").inc()
            log.warning("reconciler pass failed", extra={"error": str(exc)})
            return {"failed": str(exc)}
        self.metrics.reconciler_runs.labels("done").inc()
        if any(done.values()):
            log.info("reconciler pass", extra=done)
        return done

    def _may_take_back(self) -> bool:
        """Not within one lease of PostgreSQL coming back: workers that could not renew during the outage
        get the chance to first."""
        return self._database_back_at is None \
            or time.monotonic() - self._database_back_at >= self.settings.job_lease_seconds

    def _take_back(self) -> int:
        taken = records.take_back_expired(self.sessions, self.settings.max_job_attempts,
                                          self.settings.report_retention)
        for job in taken:
            if job.dead_token is not None:
                extension = report_output(job.type, job.params).extension
                self._delete_quietly(attempt_key(job.user_id, job.report_id, job.dead_token, extension))
            if job.status == c.QUEUED:
                self.metrics.requeued.labels("lease_expired").inc()
                log.warning("job taken back from a worker that stopped renewing its lease",
                            extra={"report_id": str(job.report_id)})
                self._ring([job.report_id], doorbell_queue(job.type, job.params, self.settings.lane_max_cells))
            else:
                self.metrics.jobs.labels(job.type, job.status).inc()
                if job.status == c.FAILED:
                    self.metrics.gave_up.inc()
                    log.error("job failed: attempts used up", extra={"report_id": str(job.report_id)})
                self.outbox.publish_after_commit(job.event)
        return len(taken)

    def _ring_for_queued(self) -> int:
        queued = records.count_queued(self.sessions)
        waiting = self._messages_waiting()
        missing = queued - waiting
        if missing <= 0:
            return 0
        by_queue: dict[str, list[uuid.UUID]] = {}
        for job in records.queued_to_ring(self.sessions, self.settings.requeue_after_seconds, limit=min(missing, 500)):
            by_queue.setdefault(doorbell_queue(job.type, job.params, self.settings.lane_max_cells), []).append(job.id)
        rung = sum(self._ring(ids, queue) for queue, ids in by_queue.items())
        self.metrics.requeued.labels("doorbell_missing").inc(rung)
        return rung

    def _messages_waiting(self) -> int:
        if self.broker is None:
            return 0
        with self.broker.pipeline(transaction=False) as pipe:
            for queue in (c.REPORTS_QUEUE, c.LANE_QUEUE):
                pipe.llen(queue)
            return sum(pipe.execute())

    def _ring(self, report_ids: list[uuid.UUID], queue: str) -> int:
        """Ring `queue` (the queue of these jobs' size) for each job; stops at the first the broker refuses."""
        rung = []
        for report_id in report_ids:
            try:
                ring_doorbell(self.celery, str(report_id), queue)
            except Exception as exc:  # the broker is down: the next pass tries again
                log.warning("doorbell not sent", extra={"report_id": str(report_id), "error": str(exc)})
                break
            rung.append(report_id)
        records.mark_rung(self.sessions, rung)
        return len(rung)

    def _publish_pending(self) -> int:
        published = self.outbox.publish_pending(OUTBOX_GRACE_SECONDS)
        self.metrics.republished.inc(published)
        return published

    def _expire(self) -> int:
        records.date_undated(self.sessions, self.settings.report_retention)
        expired = records.expire_due(self.sessions)
        for report in expired:
            log.info("report expired", extra={"report_id": str(report.report_id), "type": report.type})
        self.metrics.expired.inc(len(expired))
        return len(expired)

    def _delete_expired_files(self) -> int:
        """The files of expired reports (the second line of defence is the bucket's lifecycle rule, README)."""
        deleted = 0
        for report in records.expired_with_files(self.sessions):
            try:
                self.storage.delete(report.storage_key)
            except Exception as exc:  # storage is down: the row keeps its key, and a later pass tries again
                log.warning("could not delete an expired report's file", extra={
                    "report_id": str(report.report_id), "key": report.storage_key, "error": str(exc)})
                break
            records.forget_file(self.sessions, report.report_id, report.storage_key)
            deleted += 1
        return deleted

    def _delete_quietly(self, key: str) -> None:
        try:
            self.storage.delete(key)
        except Exception as exc:
            log.warning("could not delete a dead attempt's object", extra={"key": key, "error": str(exc)})


def make_reconciler(settings: Settings) -> Reconciler:
    """Its own connections: it runs in the worker's main process, beside Celery's consumer."""
    engine = make_engine(settings.database_url, pool_size=2, max_overflow=1)
    sessions = make_session_factory(engine)
    redis = redis_client(settings, socket_timeout=5, socket_connect_timeout=3)
    broker_url = settings.effective_broker_url
    broker = redis_client(settings, broker_url, socket_timeout=5, socket_connect_timeout=3) \
        if broker_url.startswith(("redis://", "rediss://")) else None
    events = EventLog(redis, history_max=settings.event_history_max,
                      history_ttl=settings.event_history_ttl_seconds)
    return Reconciler(settings, engine, sessions, broker, make_storage(settings),
                      OutboxPublisher(sessions, events, engine), make_celery(settings, "reportflow-reconciler"))


class ReconcilerLoop:
    """Runs passes on a daemon thread until stopped."""

    def __init__(self, reconciler: Reconciler, interval: float):
        self.reconciler, self.interval = reconciler, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)

    def start(self) -> ReconcilerLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.reconciler.run_once()
            self._stop.wait(self.interval)
