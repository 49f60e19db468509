"""The worker's metrics: made on first use in each process (never at import), summed over the prefork
children and the main process (where the reconciler runs) by the multi-process collector."""
from __future__ import annotations

import functools

from reportflow_common import contracts as c
from reportflow_common.scheduling import SIZE_CLASSES

RETRY_REASONS = ("transient", "redelivered", "handed_back")
REQUEUE_REASONS = ("lease_expired", "doorbell_missing")
RECONCILER_OUTCOMES = ("done", "skipped", "failed")


class WorkerMetrics:
    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram

        self.jobs = Counter("reportflow_worker_jobs_total", "Jobs finished, by type and outcome.", ["type", "outcome"])
        self.started = Counter("reportflow_worker_jobs_started_total", "Job attempts started, by type.", ["type"])
        self.duration = Histogram("reportflow_worker_job_duration_seconds", "Time to build and store a report.",
                                  ["type"], buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
        self.rows = Counter("reportflow_worker_rows_written_total", "Data rows written, by type.", ["type"])
        self.in_progress = Gauge("reportflow_worker_jobs_in_progress", "Jobs being built now.",
                                 multiprocess_mode="livesum")
        self.retried = Counter("reportflow_worker_jobs_retried_total",
                               "Job steps retried through an outage (transient), attempts after the first "
                               "(redelivered), and jobs handed back on shutdown (handed_back).", ["reason"])
        self.queue_wait = Histogram("reportflow_worker_queue_wait_seconds",
                                    "From a report's creation to its job's first start, by type and size class "
                                    "(small: at most LANE_MAX_CELLS cells, which the reserved lane also takes).",
                                    ["type", "class"],
                                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
        self.upload_duration = Histogram("reportflow_worker_upload_duration_seconds",
                                         "Time to upload one report file.",
                                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.uploaded_bytes = Counter("reportflow_worker_uploaded_bytes_total",
                                      "Bytes of report files uploaded to storage.")
        self.doorbells = Counter("reportflow_worker_doorbells_total",
                                 "Wake-up messages taken, by what they found (claimed a job, or idle).", ["found"])
        self.requeued = Counter("reportflow_worker_reconciler_requeued_total",
                                "Jobs the reconciler put back in the queue (lease_expired: their worker "
                                "vanished) or rang for again (doorbell_missing: no message in the broker).",
                                ["reason"])
        self.gave_up = Counter("reportflow_worker_jobs_gave_up_total",
                               "Jobs failed because MAX_JOB_ATTEMPTS attempts had started and none finished.")
        self.republished = Counter("reportflow_worker_reconciler_events_published_total",
                                   "Terminal events committed but left unpublished, that the reconciler published.")
        self.expired = Counter("reportflow_worker_reports_expired_total",
                               "Reports whose retention ended (REPORT_RETENTION_DAYS): made `expired` by the "
                               "reconciler, which then deletes their files from storage.")
        self.reconciler_runs = Counter("reportflow_worker_reconciler_runs_total",
                                       "Reconciler passes, by outcome (skipped: another replica's pass was running; "
                                       "failed: PostgreSQL, Redis or the broker could not be reached).",
                                       ["outcome"])
        for report_type in c.REPORT_TYPES:  # every series exists from the start, so rate() sees the first one
            self.started.labels(report_type)
            self.rows.labels(report_type)
            self.duration.labels(report_type)
            for size in SIZE_CLASSES:
                self.queue_wait.labels(report_type, size)
            for outcome in (c.SUCCEEDED, c.FAILED, c.CANCELLED):
                self.jobs.labels(report_type, outcome)
        for reason in RETRY_REASONS:
            self.retried.labels(reason)
        for reason in REQUEUE_REASONS:
            self.requeued.labels(reason)
        for outcome in RECONCILER_OUTCOMES:
            self.reconciler_runs.labels(outcome)
        for found in ("job", "nothing"):
            self.doorbells.labels(found)


@functools.cache
def worker_metrics() -> WorkerMetrics:
    """One set per process (Prometheus refuses a second registration)."""
    return WorkerMetrics()
