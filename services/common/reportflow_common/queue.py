"""The Celery configuration both sides of the queue share (the reports producer and the worker), and the
doorbell: the one message either side sends.

The broker carries no job state. A `build_report` message only says "there may be a queued job": the worker
that takes it claims the next runnable job from PostgreSQL (which may be another one), and a message that
finds nothing to do is simply acknowledged. So a lost, late or repeated message cannot lose or duplicate a
job; the worker's reconciler rings again for queued jobs that have no message.
"""
from __future__ import annotations

from celery import Celery

from .contracts import BUILD_REPORT_TASK, REPORTS_QUEUE
from .settings import Settings


def make_celery(settings: Settings, name: str) -> Celery:
    """Late acks, requeue on a lost worker process and one message prefetched per process, so a message is
    only gone once a job was claimed from it or there was none; producers give up on an unreachable broker
    within seconds (the reconciler rings later) instead of holding a request."""
    app = Celery(name, broker=settings.effective_broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # a socket timeout, so that a broker that stops answering is an error (and a reconnect), not a hang
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds,
                                  "socket_timeout": 10, "socket_connect_timeout": 3},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.3,
                                   "interval_max": 0.5},
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


def ring_doorbell(celery: Celery, report_id: str, queue: str = REPORTS_QUEUE) -> None:
    """Tell a worker there is a queued job (`report_id` is the job that rang, for logs; the worker claims
    whatever is next), or with `LANE_QUEUE` the reserved lane that there is a small one. Raises when the broker
    cannot be reached."""
    celery.send_task(BUILD_REPORT_TASK, args=[str(report_id)], queue=queue)


def ring_doorbells(celery: Celery, report_id: str, queues: tuple[str, ...]) -> None:
    """`ring_doorbell` on each of `queues` (the main queue and the lane, for a small job), the messages sent
    together: one producer, one Redis client and one round trip (kombu's `Producer.batch`) instead of one of
    each per message. A batch is flushed once, without kombu's retry, so if it fails the messages go out one by
    one with the retry policy (a message sent twice only rings twice: the worker claims from PostgreSQL).
    Within the batch a publish only buffers, so it needs no retry; nor a declaration: Celery publishes to a
    direct queue through the nameless exchange, which kombu's Redis transport delivers straight to the queue's
    list (the worker declares its queues). The messages are those `ring_doorbell` sends. Raises when the broker
    cannot be reached."""
    try:
        with celery.producer_or_acquire() as producer, producer.batch():
            for queue in queues:
                celery.send_task(BUILD_REPORT_TASK, args=[str(report_id)], queue=queue, producer=producer,
                                 declare=[], retry=False)
    except Exception:  # noqa: BLE001 - any failure of the batch: the unbatched path decides (and raises)
        for queue in queues:
            ring_doorbell(celery, report_id, queue)
