"""Running one job: claim the next runnable job from PostgreSQL, build the file, upload it under this
attempt's own key, confirm it, then commit `succeeded` with its event, then publish the event.

Called by the Celery task, which is only a doorbell: the message says "there may be work", PostgreSQL says
which. An attempt holds its job by a token and a lease its heartbeat renews; every change it makes names the
token, so an attempt whose job was taken back commits nothing and deletes only its own object. Outages are
retried step by step on a time budget; progress is best effort; on shutdown a job that cannot finish in time
is handed back to the queue.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from redis import Redis
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common import contracts as c
from reportflow_common.db import Report
from reportflow_common.events import EventLog
from reportflow_common.logs import report_id_var, user_id_var
from reportflow_common.outbox import OutboxPublisher
from reportflow_common.queue import doorbell_queue, ring_doorbell
from reportflow_common.scheduling import LARGE, size_class
from reportflow_common.settings import Settings
from reportflow_common.storage import Storage

from . import records
from .builders import build_report, job_scratch_dir, report_output
from .metrics import worker_metrics
from .outages import is_transient, retry_transient
from .shutdown import ShutdownClock

log = logging.getLogger(__name__)
PROGRESS_QUIET_SECONDS = 5.0  # after a progress event could not be published, skip them this long


class JobCancelled(Exception):
    """The report's owner asked to cancel it."""


class LeaseLost(Exception):
    """The job was taken back from this attempt (its lease ran out) or deleted: stop, commit nothing."""


class HandBack(Exception):
    """The worker is shutting down and this job cannot finish in time."""


class LeaseKeeper:
    """One thread per process renews the lease of every attempt running in it, each a third of its lease
    after its last renewal (a thread per job cost a thread and its events for every job, issue 14)."""

    def __init__(self):
        self._pid: int | None = None
        self._due: dict = {}  # Heartbeat -> when it is next due
        self._changed = threading.Condition()

    def hold(self, heartbeat) -> None:
        with self._changed:
            if self._pid != os.getpid():  # first use in this process (a prefork child inherits no threads)
                self._pid, self._due = os.getpid(), {}
                threading.Thread(target=self._renew_forever, name="lease-heartbeat", daemon=True).start()
            self._due[heartbeat] = time.monotonic() + heartbeat.lease / 3
            self._changed.notify()

    def release(self, heartbeat) -> None:
        with self._changed:
            self._due.pop(heartbeat, None)

    def _renew_forever(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [hb for hb, at in self._due.items() if at <= now]
                if not due:
                    self._changed.wait(min(self._due.values(), default=now + 60) - now)
                    continue
                for heartbeat in due:
                    self._due[heartbeat] = now + heartbeat.lease / 3
            for heartbeat in due:  # outside the lock: an outage never holds up a job starting or ending
                heartbeat.beat()


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    redis: Redis
    storage: Storage
    events: EventLog
    outbox: OutboxPublisher
    celery: Celery  # for the doorbell of a job handed back
    shutdown: ShutdownClock
    # single statements (the claim, the success): an AUTOCOMMIT engine (`db.engines_for`), one round trip each
    statements: Engine
    leases: LeaseKeeper = field(default_factory=LeaseKeeper)  # made with the process's clients


def attempt_key(user_id, report_id, token, extension: str) -> str:
    """Each attempt writes its own object: a loser deleting its file can never touch the winner's."""
    return f"reports/{user_id}/{report_id}.{token}{extension}"


def run_next_job(ctx: WorkerContext, rung_for: str | None = None, lane: bool = False,
                 from_lane_queue: bool = False) -> str:
    """What one wake-up message does: claim the next runnable job (in the reserved lane: the next small one)
    and run it. Returns the outcome, or `idle` when there was nothing to do. If PostgreSQL stays unreachable for
    the retry budget, the message is acknowledged anyway: the job is still `queued` in PostgreSQL and the
    reconciler rings for it again.

    A message is one wake-up, and the two invariants of `reportflow_common.queue` hold if each message either
    claims a job or finds none a claim of its kind could take. Two claims break one, so they pass their
    wake-up on (one message, at most once per message, so wake-ups never multiply):
    - the lane finds no small job while other jobs are queued (a pool process took the small job with a
      `reports` message, whose large job is still queued): it rings `reports`, once it saw a job queued (one
      count in the lane, otherwise idle, instead of a message the pool's busy main process receives for
      nothing when the queue is empty, e.g. after a duplicate ring);
    - a pool process takes a lane message and claims a large job (it came first in fair order): the small job
      that rang may still be queued, and no lane message is left for it, so the lane could not start it while
      the pool is busy: it rings the lane (unchecked: the lane's claim is the check, and its pass-on the
      rest)."""
    s, metrics = ctx.settings, worker_metrics()
    max_cells = s.lane_max_cells if lane else None
    try:
        report = retry_transient(lambda: records.claim_next(ctx.statements, s.job_lease_seconds, s.job_order,
                                                            max_cells),
                                 budget=s.transient_retry_seconds, what="claim a job",
                                 stop=lambda: ctx.shutdown.deadline() is not None,
                                 on_retry=lambda _exc: metrics.retried.labels("transient").inc())
    except Exception as exc:
        if not is_transient(exc):
            raise
        return "unavailable"
    if report is None:
        metrics.doorbells.labels("nothing").inc()
        log.info("nothing to do", extra={"rung_for": rung_for})
        if lane and _any_queued(ctx):
            _pass_on(ctx, rung_for, c.REPORTS_QUEUE)
        return "idle"
    metrics.doorbells.labels("job").inc()
    if from_lane_queue and not lane and s.lane_max_cells \
            and size_class(report.type, report.params, s.lane_max_cells) == LARGE:
        _pass_on(ctx, rung_for, c.LANE_QUEUE)
    return Attempt(ctx, report).run()


def open_connections(ctx: WorkerContext, lane: bool) -> None:
    """Open the connections a job uses (PostgreSQL's two pools, the claim and the success prepared on the statements
    one; Redis; S3) ahead of the first job, which would otherwise open them while users wait. Raises on an outage."""
    records.prepare_statements(ctx.statements, ctx.settings.job_order, lane)
    with ctx.sessions() as session:  # the transactions pool (lease renewals)
        session.connection()
    ctx.redis.ping()
    ctx.storage.ping()


def _any_queued(ctx: WorkerContext) -> bool:
    try:
        return records.count_queued(ctx.sessions) > 0
    except Exception as exc:  # PostgreSQL is down: the reconciler rings for queued jobs once it is back
        log.warning("could not count queued jobs", extra={"error": str(exc)})
        return False


def _pass_on(ctx: WorkerContext, rung_for: str | None, queue: str) -> None:
    """Ring `queue` for the wake-up this message could not use (see `run_next_job`)."""
    log.info("wake-up passed on", extra={"rung_for": rung_for, "queue": queue})
    try:
        ring_doorbell(ctx.celery, rung_for or "", queue)
    except Exception as exc:  # the reconciler rings for queued jobs that have no message
        log.warning("wake-up not passed on", extra={"error": str(exc)})


class Heartbeat:
    """Renews the attempt's lease every third of it (by the process's lease keeper thread: saving and
    uploading a big file call no progress callback), and learns on the way of a cancel request or of the job
    being taken back."""

    def __init__(self, ctx: WorkerContext, report_id: uuid.UUID, token: uuid.UUID):
        self.ctx, self.report_id, self.token = ctx, report_id, token
        self.lease = ctx.settings.job_lease_seconds
        self.state = records.Lease.HELD

    def __enter__(self) -> Heartbeat:
        self.ctx.leases.hold(self)
        return self

    def __exit__(self, *_exc) -> None:
        self.ctx.leases.release(self)

    def beat(self, progress: float | None = None) -> records.Lease:
        """Renew (and store `progress`); an outage is logged and skipped: if it outlasts the lease, the
        reconciler decides, and this attempt's token then no longer commits."""
        try:
            self.state = records.renew_lease(self.ctx.sessions, self.report_id, self.token, self.lease, progress)
        except Exception as exc:
            log.warning("lease not renewed", extra={"error": str(exc), "report_id": str(self.report_id)})
        return self.state

    def check(self) -> None:
        """Raise if the job should stop: cancelled by its owner, or no longer this attempt's."""
        if self.state is records.Lease.LOST:
            raise LeaseLost()
        if self.state is records.Lease.CANCEL_REQUESTED:
            raise JobCancelled()


class Attempt:
    """One attempt at one claimed job."""

    def __init__(self, ctx: WorkerContext, report: Report):
        self.ctx, self.report, self.token = ctx, report, report.attempt_token
        self.extension = report_output(report.type, report.params).extension
        self.key = attempt_key(report.user_id, report.id, self.token, self.extension)
        self.started = time.monotonic()
        self.heartbeat = Heartbeat(ctx, report.id, self.token)
        self.uploaded = False
        self.metrics = worker_metrics()

    def run(self) -> str:
        report, metrics = self.report, self.metrics
        report_id_var.set(str(report.id))
        user_id_var.set(str(report.user_id))
        log.info("job claimed", extra={"attempt": report.attempts, "type": report.type})
        if report.attempts > 1:
            metrics.retried.labels("redelivered").inc()
        metrics.started.labels(report.type).inc()
        if report.attempts == 1 and report.started_at and report.created_at:
            size = size_class(report.type, report.params, self.ctx.settings.lane_max_cells)
            metrics.queue_wait.labels(report.type, size).observe(
                max(0.0, (report.started_at - report.created_at).total_seconds()))
        metrics.in_progress.inc()
        try:
            with self.heartbeat, job_scratch_dir() as scratch:
                return self._run(os.path.join(scratch, "report" + self.extension))
        finally:
            metrics.in_progress.dec()

    def _retry(self, step, what: str):
        """A step retried through outages on the budget; a shutdown during the wait hands the job back."""
        def stop() -> bool:  # no progress is made during an outage: a shutdown hands the job back at once
            return self.ctx.shutdown.deadline() is not None
        try:
            return retry_transient(step, budget=self.ctx.settings.transient_retry_seconds, what=what, stop=stop,
                                   on_retry=lambda _exc: self.metrics.retried.labels("transient").inc())
        except Exception as exc:
            if is_transient(exc) and stop():
                raise HandBack() from exc
            raise

    def _run(self, path: str) -> str:
        ctx, report = self.ctx, self.report
        try:
            rows = self._retry(lambda: _build(ctx, report, path, ProgressThrottle(self)), "build the report")
            self.heartbeat.check()
            upload_started = time.monotonic()
            self.uploaded = True  # from the first byte on, the object may exist
            size = self._retry(lambda: ctx.storage.upload(self.key, path), "upload the report")  # confirmed
            self.metrics.upload_duration.observe(time.monotonic() - upload_started)
            self.metrics.uploaded_bytes.inc(size)
            ending = self._retry(lambda: records.succeed_attempt(ctx.statements, report.id, self.token,
                                                                 retention=ctx.settings.report_retention,
                                                                 created_at=report.created_at, rows=rows,
                                                                 size_bytes=size, storage_key=self.key),
                                 "record the success")
            if ending is None:
                raise LeaseLost()
            if ending.status != c.SUCCEEDED:  # cancelled while uploading: the cancel wins
                self._discard_object()
            else:
                self.metrics.rows.labels(report.type).inc(rows)
                self.metrics.duration.labels(report.type).observe(time.monotonic() - self.started)
                log.info("report succeeded", extra={"rows": rows, "size_bytes": size,
                                                    "seconds": round(time.monotonic() - self.started, 3)})
            return self._announce(ending)
        except JobCancelled:
            return self._end(c.CANCELLED)
        except LeaseLost:
            self._discard_object()
            log.warning("job was taken back from this attempt; its work is discarded")
            return "lease_lost"
        except HandBack:
            return self._hand_back()
        except SoftTimeLimitExceeded:
            return self._end(c.FAILED, error=f"The report took longer than the {ctx.settings.job_time_limit_seconds}"
                                             " s time limit and was stopped.")
        except ValueError as exc:  # bad parameters that slipped past the API: retrying will not help
            log.exception("report failed")
            return self._end(c.FAILED, error=f"The report could not be built: {exc}")
        except Exception as exc:
            if is_transient(exc):
                log.error("report failed: an outage outlasted the retry budget")
                budget = ctx.settings.transient_retry_seconds
                return self._end(c.FAILED, error="A service the report needs (database, event store or file "
                                                 f"storage) stayed unavailable for {budget} s; please try again.")
            log.exception("report failed")  # a storage error that is no outage, a bug: fail, never hang
            return self._end(c.FAILED, error="The report could not be built (internal error).")

    def _end(self, status: str, **values) -> str:
        """Finish this attempt's job as `status` (failed or cancelled), deleting its object. If even that
        cannot be recorded, the job is left to the reconciler once the lease runs out."""
        self._discard_object()
        try:
            ending = self._retry(lambda: records.end_attempt(self.ctx.sessions, self.report.id, self.token, status,
                                                             retention=self.ctx.settings.report_retention,
                                                             **values), f"record the job as {status}")
        except Exception as exc:
            log.error("the job's end could not be recorded; the reconciler will take it back",
                      extra={"error": str(exc), "status": status})
            return "abandoned"
        if ending is None:
            return "lease_lost"
        return self._announce(ending)

    def _announce(self, ending: records.Ending) -> str:
        self.metrics.jobs.labels(self.report.type, ending.status).inc()
        if ending.status == c.CANCELLED:
            log.info("report cancelled")
        self.ctx.outbox.publish_after_commit(ending.event)
        return ending.status

    def _hand_back(self) -> str:
        self._discard_object()
        try:
            handed = records.hand_back(self.ctx.sessions, self.report.id, self.token)
        except Exception as exc:
            log.error("could not hand the job back; the reconciler will take it back", extra={"error": str(exc)})
            return "abandoned"
        if handed:
            self.metrics.retried.labels("handed_back").inc()
            log.info("job handed back on shutdown")
            try:
                ring_doorbell(self.ctx.celery, str(self.report.id), doorbell_queue(
                    self.report.type, self.report.params, self.ctx.settings.lane_max_cells))
            except Exception as exc:  # the reconciler rings for queued jobs that have no message
                log.warning("doorbell not sent for the handed back job", extra={"error": str(exc)})
        return "handed_back"

    def _discard_object(self) -> None:
        if not self.uploaded:
            return
        try:
            self.ctx.storage.delete(self.key)
        except Exception as exc:  # an orphan file, never a wrong one: the key is this attempt's alone
            log.warning("could not delete this attempt's object", extra={"key": self.key, "error": str(exc)})


def _build(ctx: WorkerContext, report: Report, path: str, on_rows) -> int:
    return build_report(report.type, report.params, path, on_rows, sessions=ctx.sessions, user_id=report.user_id,
                        xlsx_engine=ctx.settings.xlsx_engine)


class ProgressThrottle:
    """The builders' progress callback. On every call it stops the build when the job was cancelled or
    taken back, or must be handed back for a shutdown; at most once per PROGRESS_INTERVAL_SECONDS it stores
    the progress (renewing the lease) and publishes it. Storing and publishing progress are best effort:
    their failure never fails, retries or stops a job."""

    def __init__(self, attempt: Attempt):
        self.attempt = attempt
        ctx = attempt.ctx
        self.ctx, self.report, self.heartbeat = ctx, attempt.report, attempt.heartbeat
        self.interval = ctx.settings.progress_interval_seconds
        self.last_sent, self.last_progress, self.quiet_until = time.monotonic(), 0.0, 0.0

    def __call__(self, done: int, total: int) -> None:
        self.heartbeat.check()
        fraction = done / max(total, 1)
        if self.ctx.shutdown.should_hand_back(fraction, time.monotonic() - self.attempt.started):
            raise HandBack()
        now = time.monotonic()
        if now - self.last_sent < self.interval:
            return
        progress = round(min(0.99, 0.95 * fraction), 4)  # saving and uploading take the rest
        self.last_sent = now
        self.heartbeat.beat(progress)
        self.heartbeat.check()
        if progress > self.last_progress and now >= self.quiet_until:
            self.last_progress = progress
            try:
                self.ctx.events.publish(str(self.report.user_id), c.EVENT_PROGRESS,
                                        {"report_id": str(self.report.id), "progress": progress})
            except Exception as exc:
                self.quiet_until = now + PROGRESS_QUIET_SECONDS
                log.warning("progress event not published", extra={"error": str(exc)})
