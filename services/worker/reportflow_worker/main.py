"""`reportflow-worker`: Celery prefork workers (the pool, consuming both queues: a small job's one message goes
to whichever of the pool and the lane is free first), the reserved lane (a child process, unless
LANE_MAX_CELLS=0) and the metrics/health port (containers and tests run this)."""
from reportflow_common.metrics import prepare_multiprocess_dir


def main() -> None:
    prepare_multiprocess_dir()  # before the lane starts: it writes its metrics into the same folder
    from celery import signals

    from reportflow_common import contracts as c
    from reportflow_common.logs import configure_logging
    from reportflow_common.settings import WORKER, load_settings

    from .celery_app import create_celery
    from .health import start_health_server
    from .lane import Lane, celery_worker_args

    settings = load_settings(WORKER)
    configure_logging(WORKER, settings.log_level)
    app = create_celery(settings)
    start_health_server(settings)
    lane = Lane().start() if settings.lane_max_cells else None
    if lane is not None:
        signals.worker_shutting_down.connect(lambda **_: lane.stop(), weak=False)
    try:
        app.worker_main(celery_worker_args(settings.log_level, f"{c.REPORTS_QUEUE},{c.LANE_QUEUE}",
                                           settings.worker_concurrency, "celery@%h"))
    finally:
        if lane is not None:
            lane.stop()
            lane.join(settings.graceful_timeout_seconds)
