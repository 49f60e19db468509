"""`reportflow-worker`: Celery prefork workers plus the metrics/health port (containers and tests run this)."""
from reportflow_common.metrics import prepare_multiprocess_dir


def main() -> None:
    prepare_multiprocess_dir()
    from reportflow_common import contracts as c
    from reportflow_common.logs import configure_logging
    from reportflow_common.settings import WORKER, load_settings

    from .celery_app import create_celery
    from .health import start_health_server

    settings = load_settings(WORKER)
    configure_logging(WORKER, settings.log_level)
    app = create_celery(settings)
    start_health_server(settings)
    app.worker_main([
        "--quiet", "worker", f"--loglevel={settings.log_level}", "--pool=prefork",
        f"--concurrency={settings.worker_concurrency}", f"--queues={c.REPORTS_QUEUE}",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ])
