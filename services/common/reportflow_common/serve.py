"""Run a Flask app under gunicorn from a console script, so containers and tests start services one way."""
from __future__ import annotations

from collections.abc import Callable

from gunicorn.app.base import BaseApplication

from .contracts import MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS, MAX_REQUEST_LINE

# gunicorn's workers, answering what they cannot parse as problem+json instead of an HTML page
WORKER_CLASSES = {"gthread": "reportflow_common.gunicorn_workers.ThreadWorker",
                  "gevent": "reportflow_common.gunicorn_gevent.GeventWorker"}


class _Gunicorn(BaseApplication):
    def __init__(self, load: Callable, options: dict):
        self._load, self._options = load, options
        super().__init__()

    def load_config(self):
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._load()


def _json_logs_only() -> None:
    """gunicorn installs its own text handlers; send its records to the root logger's JSON handler instead."""
    import logging
    for name in ("gunicorn.error", "gunicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def raise_open_file_limit() -> int:
    """Lift this process's soft limit on open files to its hard limit (children inherit it), so that a gevent
    worker can hold WORKER_CONNECTIONS sockets: the usual soft limit, 1024, stops it near 1,000. Returns the
    limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def run_gunicorn(load_app: Callable, settings, *, worker_class: str = "gthread", workers: int | None = None,
                 threads: int = 4) -> None:
    """Serve the app `load_app()` builds in each worker (after fork: no connections shared across processes)."""
    import logging

    from .metrics import mark_process_dead

    open_files = raise_open_file_limit()
    if worker_class == "gevent" and open_files < settings.worker_connections + 100:
        logging.getLogger(__name__).warning("the open-file limit is below WORKER_CONNECTIONS: sockets beyond it are "
                                            "refused", extra={"open_files": open_files,
                                                              "worker_connections": settings.worker_connections})
    _Gunicorn(load_app, {
        "bind": f"{settings.host}:{settings.port}",
        "workers": workers or settings.web_concurrency,
        "worker_class": WORKER_CLASSES.get(worker_class, worker_class),
        "threads": threads,
        # gevent: sockets served at once (gunicorn's default, 1000, refused the 1,001st); gthread: its own default
        **({"worker_connections": settings.worker_connections} if worker_class == "gevent" else {}),
        "graceful_timeout": settings.graceful_timeout_seconds,
        "timeout": 60,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "control_socket_disable": True,
        "child_exit": lambda _arbiter, worker: mark_process_dead(worker.pid),
        "on_starting": lambda _arbiter: _json_logs_only(),
        "post_worker_init": lambda _worker: _json_logs_only(),
        "limit_request_line": MAX_REQUEST_LINE,
        "limit_request_fields": MAX_HEADER_FIELDS,
        "limit_request_field_size": MAX_HEADER_FIELD_BYTES,
    }).run()


def serve_service(service: str, factory: str, *, check: Callable | None = None, warm_up: str | None = None,
                  **options) -> None:
    """The body of every web service's console script: settings, logs, then gunicorn building
    `factory` ("package.module:create_app") with those settings in each worker process.

    `check(settings)` runs in the master first, so a bad secret stops start-up with its message. `warm_up`
    ("package.module:function") is called with the app in each worker before it serves: its per-process
    set-up (connections, compiled statements) then does not fall on the first requests."""
    import importlib

    from .logs import configure_logging
    from .metrics import prepare_multiprocess_dir
    from .settings import load_settings

    prepare_multiprocess_dir()  # before anything imports prometheus_client
    settings = load_settings(service)
    configure_logging(service, settings.log_level)
    if check is not None:
        check(settings)
    module, name = factory.split(":")

    def load():
        app = getattr(importlib.import_module(module), name)(settings)
        if warm_up is not None:
            warm_module, warm_name = warm_up.split(":")
            getattr(importlib.import_module(warm_module), warm_name)(app)
        return app

    run_gunicorn(load, settings, **options)
