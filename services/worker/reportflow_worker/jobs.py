"""Running one report job: claim the row, build the file, upload and confirm it, then say so.

Called by the Celery task with the report id only. The order is the contract: the object is confirmed
in storage before the row says `succeeded`, and the row says so before anyone is told.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC

from prometheus_client import Counter, Gauge, Histogram
from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common import contracts as c
from reportflow_common.events import EventLog
from reportflow_common.logs import report_id_var, user_id_var
from reportflow_common.settings import Settings
from reportflow_common.storage import Storage, report_key

from . import records
from .builders import build_report, job_scratch_dir, report_output

log = logging.getLogger(__name__)

JOBS = Counter("reportflow_worker_jobs_total", "Jobs finished, by type and outcome.", ["type", "outcome"])
JOBS_STARTED = Counter("reportflow_worker_jobs_started_total", "Jobs started, by type.", ["type"])
JOB_DURATION = Histogram("reportflow_worker_job_duration_seconds", "Time to build and store a report.", ["type"],
                         buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
ROWS_WRITTEN = Counter("reportflow_worker_rows_written_total", "Data rows written, by type.", ["type"])
IN_PROGRESS = Gauge("reportflow_worker_jobs_in_progress", "Jobs being built now.", multiprocess_mode="livesum")
JOBS_RETRIED = Counter("reportflow_worker_jobs_retried_total", "Jobs run again: after a transient error, or "
                       "redelivered after the process running them was lost.", ["reason"])
QUEUE_WAIT = Histogram("reportflow_worker_queue_wait_seconds", "From a report's creation to its job's first start.",
                       ["type"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
UPLOAD_DURATION = Histogram("reportflow_worker_upload_duration_seconds", "Time to upload one report file.",
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
UPLOADED_BYTES = Counter("reportflow_worker_uploaded_bytes_total", "Bytes of report files uploaded to storage.")
RETRY_REASONS = ("transient", "redelivered")
for _type in c.REPORT_TYPES:  # every series exists from the start, so rate() sees the first increment
    JOBS_STARTED.labels(_type)
    ROWS_WRITTEN.labels(_type)
    JOB_DURATION.labels(_type)
    QUEUE_WAIT.labels(_type)
    for _outcome in (c.SUCCEEDED, c.FAILED, c.CANCELLED):
        JOBS.labels(_type, _outcome)
for _reason in RETRY_REASONS:
    JOBS_RETRIED.labels(_reason)


class JobCancelled(Exception):
    """Raised from the progress callback when the report's owner asked to cancel it."""


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    redis: Redis
    storage: Storage
    events: EventLog


def run_report(ctx: WorkerContext, report_id: str, retries: int = 0) -> str:
    """Run the job once; returns the outcome. Exceptions that escape are for Celery to retry (`retries`:
    how many times it has already, so a delivery beyond those is known to be a redelivery)."""
    rid = uuid.UUID(report_id)
    report_id_var.set(report_id)
    report = records.claim(ctx.sessions, rid)
    if report is None:
        return _not_runnable(ctx, rid)
    user_id_var.set(str(report.user_id))
    if report.attempts > retries + 1:
        JOBS_RETRIED.labels("redelivered").inc()
    if report.attempts > ctx.settings.max_job_attempts:
        return _finish_failed(ctx, report, f"Gave up after {report.attempts - 1} attempts.")
    JOBS_STARTED.labels(report.type).inc()
    if report.attempts == 1 and report.started_at and report.created_at:
        QUEUE_WAIT.labels(report.type).observe(max(0.0, (report.started_at - report.created_at).total_seconds()))
    IN_PROGRESS.inc()
    started = time.monotonic()
    extension = report_output(report.type, report.params).extension
    key = report_key(str(report.user_id), report_id, extension)
    with job_scratch_dir() as scratch:
        return _run_claimed(ctx, report, key, os.path.join(scratch, "report" + extension), started)


def _run_claimed(ctx: WorkerContext, report, key: str, path: str, started: float) -> str:
    report_id, rid = str(report.id), report.id
    try:
        rows = _build(ctx, report, path)
        upload_started = time.monotonic()
        ctx.storage.upload(key, path)
        UPLOAD_DURATION.observe(time.monotonic() - upload_started)
        UPLOADED_BYTES.inc(os.path.getsize(path))
        size = ctx.storage.size(key)
        if size is None or size != os.path.getsize(path):
            raise RuntimeError(f"stored object {key} is missing or incomplete")
        if not records.succeed(ctx.sessions, rid, rows, size, key):
            ctx.storage.delete(key)  # cancelled while uploading: the cancel wins
            raise JobCancelled()
        JOBS.labels(report.type, "succeeded").inc()
        ROWS_WRITTEN.labels(report.type).inc(rows)
        JOB_DURATION.labels(report.type).observe(time.monotonic() - started)
        ctx.events.publish(str(report.user_id), c.EVENT_SUCCEEDED, {
            "report_id": report_id, "rows": rows, "size_bytes": size,
            "download_url": f"/v1/reports/{report_id}/download",
            # lets the notifier measure creation -> notification, the wait the person sees
            "created_at": report.created_at.astimezone(UTC).isoformat()})
        log.info("report succeeded", extra={"rows": rows, "size_bytes": size,
                                            "seconds": round(time.monotonic() - started, 3)})
        return c.SUCCEEDED
    except JobCancelled:
        return _finish_cancelled(ctx, report)
    except transient_errors():
        raise  # an outage, not this job's fault: the task retries it
    except ValueError as exc:  # bad parameters that slipped past the API: retrying will not help
        log.exception("report failed")
        return _finish_failed(ctx, report, f"The report could not be built: {exc}")
    except Exception:  # anything else (a storage error, a bug) fails the job instead of leaving it running
        log.exception("report failed")
        return _finish_failed(ctx, report, "The report could not be built (internal error).")
    finally:
        IN_PROGRESS.dec()


def transient_errors() -> tuple[type[BaseException], ...]:
    """Outages of PostgreSQL, Redis or S3: worth retrying the whole job after a pause."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import EndpointConnectionError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import OperationalError
    return OperationalError, RedisConnectionError, EndpointConnectionError, BotoConnectionError


def _build(ctx: WorkerContext, report, path: str) -> int:
    return build_report(report.type, report.params, path, ProgressThrottle(ctx, report), sessions=ctx.sessions,
                        user_id=report.user_id, xlsx_engine=ctx.settings.xlsx_engine)


class ProgressThrottle:
    """The builders' progress callback: stores and announces progress at most once per interval, and
    checks for a cancel request each time (so a cancelled job stops within about one interval)."""

    def __init__(self, ctx: WorkerContext, report):
        self.ctx, self.report = ctx, report
        self.interval = ctx.settings.progress_interval_seconds
        self.last_sent, self.last_progress = time.monotonic(), 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last_sent < self.interval:
            return
        progress = round(min(0.99, 0.95 * done / max(total, 1)), 4)  # saving and uploading take the rest
        self.last_sent = now
        if not records.record_progress(self.ctx.sessions, self.report.id, progress):
            raise JobCancelled()
        if progress > self.last_progress:
            self.last_progress = progress
            self.ctx.events.publish(str(self.report.user_id), c.EVENT_PROGRESS,
                                    {"report_id": str(self.report.id), "progress": progress})


def _not_runnable(ctx: WorkerContext, rid: uuid.UUID) -> str:
    """A delivery for a report that is gone, finished, or waiting to be cancelled."""
    report = records.load(ctx.sessions, rid)
    if report is None:
        log.warning("report no longer exists")
        return "missing"
    if report.status in c.ACTIVE_STATUSES and report.cancel_requested:
        return _finish_cancelled(ctx, report)
    log.info("report already finished; nothing to do", extra={"status": report.status})
    return report.status


def _finish_cancelled(ctx: WorkerContext, report) -> str:
    if records.cancel(ctx.sessions, report.id):
        JOBS.labels(report.type, "cancelled").inc()
        ctx.events.publish(str(report.user_id), c.EVENT_CANCELLED, {"report_id": str(report.id)})
        log.info("report cancelled")
    return c.CANCELLED


def _finish_failed(ctx: WorkerContext, report, error: str) -> str:
    if records.fail(ctx.sessions, report.id, error):
        JOBS.labels(report.type, "failed").inc()
        ctx.events.publish(str(report.user_id), c.EVENT_FAILED, {"report_id": str(report.id), "error": error})
    return c.FAILED


def fail_after_retries(ctx: WorkerContext, report_id: str, error: str) -> None:
    """Called when transient errors outlast the task's retries."""
    report = records.load(ctx.sessions, uuid.UUID(report_id))
    if report is not None:
        _finish_failed(ctx, report, error)
