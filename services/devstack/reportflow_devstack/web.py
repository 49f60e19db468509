"""The web services of `make up` on one origin, routed by the contract's paths, in WEB_CONCURRENCY gevent
processes (`make up`: one per core) sharing gunicorn's listening socket.

This is only for `make up` (a laptop has no ingress); deployments run each service's own console script
behind the ingress, which routes the same paths. With more than one process nothing keeps a client on one
of them, which Socket.IO's long-polling needs (each request of a session must reach the process holding
it): `make up` then serves Socket.IO over WebSocket only (one connection, so one process), and events reach
every process through the Redis message queue as they reach every notifier in deployments.
"""
from __future__ import annotations

from reportflow_common.metrics import prepare_multiprocess_dir

AUTH_PREFIXES = ("/v1/auth/", "/.well-known/")
REPORTS_PREFIXES = ("/v1/reports", "/v1/files/", "/v1/openapi.json")


def path_router(auth_app, reports_app, notifier_app):
    """A WSGI app sending each request to the service that owns its path (everything else: notifier)."""
    def route(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(AUTH_PREFIXES):
            return auth_app(environ, start_response)
        if path.startswith(REPORTS_PREFIXES):
            return reports_app(environ, start_response)
        return notifier_app(environ, start_response)
    return route


def main() -> None:
    prepare_multiprocess_dir()
    from reportflow_common.logs import configure_logging
    from reportflow_common.serve import run_gunicorn
    from reportflow_common.settings import AUTH, NOTIFIER, REPORTS, load_settings

    auth, reports, notifier = (load_settings(s) for s in (AUTH, REPORTS, NOTIFIER))
    configure_logging("web", notifier.log_level)

    def load():
        from reportflow_auth.app import create_app as auth_app
        from reportflow_notifier.app import create_app as notifier_app
        from reportflow_reports.app import create_app as reports_app
        return path_router(auth_app(auth), reports_app(reports), notifier_app(notifier))

    run_gunicorn(load, notifier, worker_class="gevent", workers=auth.web_concurrency)


if __name__ == "__main__":
    main()
