"""The Celery configuration both sides of the queue share (the reports producer and the worker), and the
doorbell: the one message each queued job rings.

The broker carries no job state. A `build_report` message only says "there may be a queued job": the worker
that takes it claims the next runnable job from PostgreSQL (which may be another one), and a message that
finds nothing to do is simply acknowledged. So a lost, late or repeated message cannot lose or duplicate a
job; the worker's reconciler rings again for queued jobs that have no message.

One message per job, on the queue of its size (`doorbell_queue`): a small job (at most LANE_MAX_CELLS cells)
rings the lane's queue (`reports.lane`), any other `reports`. The pool consumes both queues and claims any job
in fair order; the reserved lane consumes only its own and claims small jobs only. The worker keeps two
invariants (`reportflow_worker.jobs.run_next_job` passes a wake-up on where a claim would break one):
1. every queued job has a pending message that can claim it (messages in both queues >= queued jobs);
2. every queued small job has a pending lane message, so the lane can start it while the pool is busy
   (issue 16: with every pool process busy, prefetch 1 and late acks, the pool holds no further message).
"""
from __future__ import annotations

from celery import Celery

from .contracts import BUILD_REPORT_TASK, LANE_QUEUE, REPORTS_QUEUE
from .scheduling import SMALL, size_class
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


def doorbell_queue(report_type: str, params: dict, lane_max_cells: int) -> str:
    """The queue a job rings: the lane's for a small job (when there is a lane), else the pool's."""
    if lane_max_cells and size_class(report_type, params, lane_max_cells) == SMALL:
        return LANE_QUEUE
    return REPORTS_QUEUE


def ring_doorbell(celery: Celery, report_id: str, queue: str = REPORTS_QUEUE) -> None:
    """Tell a worker there is a queued job (`report_id` is the job that rang, for logs; the worker claims
    whatever is next): on `REPORTS_QUEUE` the pool, on `LANE_QUEUE` the pool or the lane, whichever is free
    first. Raises when the broker cannot be reached.

    `declare=[]`: the message goes to the queue by name (Celery's anonymous direct exchange), which needs no
    declaration; the queues are declared once, by `connect_producer` and by the consuming worker. By default kombu
    copied and re-bound the queue's entities on every message, a fifth of a doorbell's CPU (bench/README.md)."""
    celery.send_task(BUILD_REPORT_TASK, args=[str(report_id)], queue=queue, declare=[])


def connect_producer(celery: Celery) -> None:
    """What a process's first doorbell does besides sending: load Celery's router and result backend, connect a
    producer of the pool to the broker and declare both queues on it. A web process calls it before it serves,
    so its first POST does not pay for this. Raises when the broker cannot be reached."""
    celery.amqp.router  # noqa: B018 (built on first use)
    celery.backend  # noqa: B018
    with celery.producer_or_acquire() as producer:
        for queue in (REPORTS_QUEUE, LANE_QUEUE):
            producer.maybe_declare(celery.amqp.queues[queue])
