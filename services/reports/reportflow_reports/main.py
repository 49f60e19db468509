"""`reportflow-reports`: the reports API under gunicorn (the container's command and the tests' too)."""
from reportflow_common.metrics import prepare_multiprocess_dir


def main() -> None:
    prepare_multiprocess_dir()
    from reportflow_common.logs import configure_logging
    from reportflow_common.serve import run_gunicorn
    from reportflow_common.settings import REPORTS, load_settings

    settings = load_settings(REPORTS)
    configure_logging(REPORTS, settings.log_level)

    def load():
        from .app import create_app
        return create_app(settings)

    run_gunicorn(load, settings)
