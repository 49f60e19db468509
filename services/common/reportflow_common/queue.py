"""The Celery configuration both sides of the queue share (the reports producer and the worker)."""
from __future__ import annotations

from celery import Celery

from .contracts import BUILD_REPORT_TASK, REPORTS_QUEUE
from .settings import Settings


def make_celery(settings: Settings, name: str) -> Celery:
    """Jobs survive a worker that dies: late acks, requeue on a lost worker, one job prefetched at a time,
    and a visibility timeout longer than any job so the broker redelivers only truly abandoned work."""
    app = Celery(name, broker=settings.effective_broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        task_default_queue=REPORTS_QUEUE,
        task_routes={BUILD_REPORT_TASK: {"queue": REPORTS_QUEUE}},
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_track_started=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
    )
    return app
