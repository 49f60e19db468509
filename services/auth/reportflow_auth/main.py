"""`reportflow-auth`: the auth service under gunicorn (the container's command and the tests' too)."""
from reportflow_common.metrics import prepare_multiprocess_dir


def main() -> None:
    prepare_multiprocess_dir()
    from reportflow_common.logs import configure_logging
    from reportflow_common.serve import run_gunicorn
    from reportflow_common.settings import AUTH, load_settings

    settings = load_settings(AUTH)
    configure_logging(AUTH, settings.log_level)
    from .keys import load_signing_key
    load_signing_key(settings.jwt_private_key)  # a bad key stops start-up in the master, with its message

    def load():
        from .app import create_app
        return create_app(settings)

    run_gunicorn(load, settings)
