"""`reportflow-auth`: the auth service under gunicorn (the container's command and the tests' too)."""
from reportflow_common.serve import serve_service
from reportflow_common.settings import AUTH


def _check_key(settings) -> None:
    from .keys import load_signing_key
    load_signing_key(settings.jwt_private_key, settings.jwt_previous_public_keys)


def main() -> None:
    serve_service(AUTH, "reportflow_auth.app:create_app", check=_check_key)
