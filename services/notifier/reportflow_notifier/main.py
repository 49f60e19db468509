"""`reportflow-notifier`: one gevent gunicorn worker per process; scale with processes or replicas."""
from reportflow_common.metrics import prepare_multiprocess_dir


def main() -> None:
    prepare_multiprocess_dir()
    from reportflow_common.logs import configure_logging
    from reportflow_common.serve import run_gunicorn
    from reportflow_common.settings import NOTIFIER, load_settings

    settings = load_settings(NOTIFIER)
    configure_logging(NOTIFIER, settings.log_level)

    def load():
        from .app import create_app
        return create_app(settings)

    run_gunicorn(load, settings, worker_class="gevent", workers=1)
