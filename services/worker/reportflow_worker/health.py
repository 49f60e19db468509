"""The worker's own HTTP port: /metrics (all prefork children summed), /healthz and /readyz."""
from __future__ import annotations

import json
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from reportflow_common.db import make_engine, ping
from reportflow_common.metrics import render_latest
from reportflow_common.redis_pool import redis_client
from reportflow_common.settings import Settings
from reportflow_common.storage import make_storage
from reportflow_common.web import run_checks


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # scrapes and probes every few seconds: not worth a log line
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def health_app(settings: Settings):
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    broker = redis_client(settings, settings.effective_broker_url, socket_timeout=3, socket_connect_timeout=3)
    redis = redis_client(settings, socket_timeout=3, socket_connect_timeout=3)
    storage = make_storage(settings)
    checks = {"postgres": lambda: ping(engine), "broker": broker.ping, "redis": redis.ping, "storage": storage.ping}

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body, content_type = render_latest()
            start_response("200 OK", [("Content-Type", content_type)])
            return [body]
        if path == "/healthz":
            status, doc = "200 OK", {"status": "ok"}
        elif path == "/readyz":
            failed = run_checks(checks)
            status, doc = ("503 Service Unavailable", {"status": "unavailable", "failed": failed}) if failed \
                else ("200 OK", {"status": "ok"})
        else:
            status, doc = "404 Not Found", {"type": "about:blank", "title": "Not Found", "status": 404,
                                            "detail": "No such resource.", "code": "not_found"}
        start_response(status, [("Content-Type", "application/json" if status[0] != "4" else
                                 "application/problem+json")])
        return [json.dumps(doc).encode()]

    return app


def start_health_server(settings: Settings) -> WSGIServer:
    server = make_server(settings.host, settings.port, health_app(settings), server_class=_ThreadingServer,
                         handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server
