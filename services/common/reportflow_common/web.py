"""What every Flask service shares: request ids, access logs, HTTP metrics, health, readiness, /metrics."""
from __future__ import annotations

import logging
import re
import time
import types
import uuid
from collections.abc import Callable

from flask import Flask, Response, g, jsonify, request
from prometheus_client import Counter, Histogram

from .contracts import MAX_BODY_BYTES, UNAVAILABLE, UNSUPPORTED_MEDIA_TYPE
from .http_guard import HttpGuard
from .logs import request_id_var, user_id_var
from .problems import Problem, install_error_handlers, invalid, problem_response

log = logging.getLogger("reportflow.access")
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Unicode control characters (C0, DEL, C1) and lone surrogates: no field of the API means them, PostgreSQL
# refuses NUL in text, and a surrogate cannot be encoded as UTF-8 at all.
_CONTROL_OR_SURROGATE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

ReadinessCheck = Callable[[], None]  # raises when the dependency is unreachable


class HttpMetrics:
    def __init__(self, service: str):
        self.requests = Counter(f"reportflow_{service}_http_requests_total", "HTTP requests served.",
                                ["method", "route", "status"])
        self.duration = Histogram(f"reportflow_{service}_http_request_duration_seconds", "HTTP request duration.",
                                  ["method", "route"])


_metrics: dict[str, HttpMetrics] = {}


def http_metrics(service: str) -> HttpMetrics:
    """One set per service name per process (apps may be created more than once, e.g. in tests)."""
    if service not in _metrics:
        _metrics[service] = HttpMetrics(service)
    return _metrics[service]


class RequestIdMiddleware:
    """Every HTTP response carries X-Request-ID: the client's own when it is sane, else a new one, which
    the app then sees as the request's header (so logs and response agree)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        request_id = take_request_id(environ)

        def start(status, headers, exc_info=None):
            return start_response(status, with_request_id(headers, request_id), exc_info)

        return self.app(environ, start)


def take_request_id(environ) -> str:
    """The request's id: the client's X-Request-ID when it is sane, else a new one, put in `environ`."""
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    request_id = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex
    environ["HTTP_X_REQUEST_ID"] = request_id
    return request_id


def with_request_id(headers: list, request_id: str) -> list:
    """Response headers with X-Request-ID (unless the app set one)."""
    if any(name.lower() == "x-request-id" for name, _ in headers):
        return headers
    return [*headers, ("X-Request-ID", request_id)]


def as_function(wsgi: Callable) -> Callable:
    """`wsgi` (a middleware object) as its bound `__call__` method, which WSGI servers and middleware call
    the same way. Why: CPython 3.11 runs a call to a Python function or bound method in the caller's C frame,
    but a call to an object through its `__call__` in a new, nested one. Under gevent a WebSocket's request
    greenlet lives as long as the socket, and while it waits its C stack is saved on the heap: each
    middleware object around Socket.IO added a few KB to every socket (bench/bench_sockets.py)."""
    if isinstance(wsgi, types.FunctionType | types.MethodType):
        return wsgi
    call = wsgi.__call__
    return call if isinstance(call, types.MethodType) else wsgi


def init_web(app: Flask, service: str, checks: dict[str, ReadinessCheck], proxy_hops: int = 0,
             edge: Callable[[Callable], Callable] | None = None) -> None:
    """Bind the cross-cutting behaviour to `app`; `checks` name the dependencies /readyz probes. `edge`, when
    given, wraps the ProxyFix, request-id and HTTP-guard layers: the notifier's takes WebSocket upgrades out of
    them, doing what they do in one frame of its own (nothing on that path reads the client's address, and
    engine.io's same-origin check reads X-Forwarded-Proto itself)."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # Outermost, so they also cover what middleware inside answers on its own (Socket.IO's /socket.io).
    # Each as a plain function (see `as_function`).
    app.wsgi_app = as_function(RequestIdMiddleware(as_function(HttpGuard(app.wsgi_app))))
    if proxy_hops:  # behind the ingress: the client's address and scheme come from its X-Forwarded-* headers
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = as_function(ProxyFix(app.wsgi_app, x_for=proxy_hops, x_proto=proxy_hops))
    if edge is not None:
        app.wsgi_app = edge(app.wsgi_app)
    app.json.sort_keys = False
    install_error_handlers(app)
    metrics = http_metrics(service)

    @app.before_request
    def _start():
        # RequestIdMiddleware has checked or made it (absent only in a bare test_request_context)
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        g.started = time.perf_counter()
        request_id_var.set(g.request_id)
        user_id_var.set(None)

    @app.after_request
    def _finish(resp: Response):
        resp.headers.setdefault("Cache-Control", "no-store")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.requests.labels(request.method, route, str(resp.status_code)).inc()
        metrics.duration.labels(request.method, route).observe(elapsed)
        if route not in ("/healthz", "/readyz", "/metrics"):
            log.info("request", extra={"method": request.method, "route": route, "status": resp.status_code,
                                       "duration_ms": round(elapsed * 1000, 1)})
        return resp

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        failed = run_checks(checks)
        if failed:  # a problem like every error body, naming the dependencies in `detail` and `failed`
            return problem_response(Problem(503, UNAVAILABLE, f"Unreachable: {', '.join(failed)}.",
                                            headers={"Retry-After": "5"},
                                            extensions={"failed": failed}))
        return jsonify(status="ok")

    @app.get("/metrics")
    def metrics_view():
        from .metrics import render_latest
        body, content_type = render_latest()
        return Response(body, content_type=content_type)


def run_checks(checks: dict[str, ReadinessCheck]) -> list[str]:
    failed = []
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:  # any failure means not ready; say which
            logging.getLogger("reportflow.readyz").warning("dependency unreachable",
                                                           extra={"dependency": name, "error": str(exc)})
            failed.append(name)
    return failed


def json_body() -> dict:
    """The request's JSON object, or a Problem: 415 for another media type, 400 for bad JSON or a non-object."""
    if not request.is_json:
        raise Problem(415, UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json.")
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # well-formed but nested deeper than the parser can go: still the client's fault
        raise invalid([{"field": "body", "message": "nested too deeply"}], "The body is not valid JSON.", 400) from None
    if data is None:
        raise invalid([{"field": "body", "message": "malformed JSON"}], "The body is not valid JSON.", 400)
    if not isinstance(data, dict):
        raise invalid([{"field": "body", "message": "expected a JSON object"}], "The body must be a JSON object.", 400)
    errors = control_character_errors(data)
    if errors:
        raise invalid(errors, "Text fields must not hold control characters.")
    return data


def control_character_errors(data) -> list[dict]:
    """A field error for every string (value or key) holding a control character or a lone surrogate,
    named by its path (`params.name`, `items[2]`); walked without recursion, however deep the JSON."""
    errors, stack = [], [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _CONTROL_OR_SURROGATE.search(value):
                errors.append({"field": path or "body", "message": "must not contain control characters"})
        elif isinstance(value, dict):
            for key, item in value.items():
                if _CONTROL_OR_SURROGATE.search(key):
                    errors.append({"field": path or "body", "message": "has a key with control characters"})
                else:
                    stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return sorted(errors, key=lambda e: e["field"])
