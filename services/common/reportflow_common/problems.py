"""Typed errors and the one handler per app that turns them into application/problem+json (RFC 9457)."""
from __future__ import annotations

import functools
import json as std_json
import logging
from http import HTTPStatus

from flask import Flask, Response, json
from gunicorn.http import errors as http_errors
from redis import exceptions as redis_errors
from werkzeug.exceptions import HTTPException

from . import contracts as c
from .contracts import code_for_status

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


@functools.cache
def _dependency_down() -> tuple[type[Exception], ...]:
    """Raised when PostgreSQL or Redis cannot be reached mid-request (connection refused, timed out, dropped,
    or no pooled connection freed within the pool's timeout). SQLAlchemy is the `db` extra: the notifier's
    image has no database driver, and no database to lose."""
    errors: tuple[type[Exception], ...] = (redis_errors.ConnectionError, redis_errors.TimeoutError)
    try:
        from sqlalchemy import exc as sa_errors
    except ImportError:
        return errors
    return (*errors, sa_errors.OperationalError, sa_errors.TimeoutError)




class Problem(Exception):
    """Raise anywhere in a request; the app's handler renders it. `errors` lists field-level messages."""

    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None,
                 errors: list[dict] | None = None, headers: dict | None = None, extensions: dict | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.title = title or _title(status)
        self.errors, self.headers = errors, headers or {}
        self.extensions = extensions or {}  # RFC 9457 extension members, e.g. readiness's `failed`


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def unauthorized(detail: str = "A valid access token is required.") -> Problem:
    return Problem(401, c.UNAUTHORIZED, detail, headers={"WWW-Authenticate": 'Bearer realm="reportflow"'})


def not_found(detail: str = "No such resource.") -> Problem:
    return Problem(404, c.NOT_FOUND, detail)


def invalid(errors: list[dict], detail: str = "The request is not valid.", status: int = 422) -> Problem:
    return Problem(status, c.INVALID_REQUEST, detail, errors=errors)


def unavailable(detail: str, retry_after: int = 5) -> Problem:
    return Problem(503, c.UNAVAILABLE, detail, headers={"Retry-After": str(retry_after)})


def problem_body(p: Problem) -> dict:
    body = {"type": "about:blank", "title": p.title, "status": p.status, "detail": p.detail, "code": p.code}
    if p.errors is not None:
        body["errors"] = p.errors
    body.update({k: v for k, v in p.extensions.items() if k not in body})
    return body


def problem_response(p: Problem) -> Response:
    resp = Response(json.dumps(problem_body(p)), status=p.status, mimetype=PROBLEM_JSON)
    for k, v in p.headers.items():
        resp.headers[k] = v
    return resp


def wsgi_problem(start_response, p: Problem) -> list[bytes]:
    """The same answer from plain WSGI middleware, outside any Flask app (guards in front of the apps)."""
    body = std_json.dumps(problem_body(p)).encode()
    headers = [("Content-Type", PROBLEM_JSON), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
               ("X-Content-Type-Options", "nosniff"), *p.headers.items()]
    start_response(f"{p.status} {_title(p.status)}", headers)
    return [body]


def install_error_handlers(app: Flask) -> None:
    """Every error an app can raise leaves as problem+json; unexpected ones are logged, never shown."""

    @app.errorhandler(Problem)
    def _problem(p: Problem):
        return problem_response(p)

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        status = e.code or 500
        p = Problem(status, code_for_status(status), e.description or _title(status))
        resp = problem_response(p)
        if status == 405 and e.get_response().headers.get("Allow"):
            resp.headers["Allow"] = e.get_response().headers["Allow"]
        return resp

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        if isinstance(e, HTTPException):
            return _http(e)
        if isinstance(e, http_errors.ParseException):  # the server could not read the body (a bad chunk)
            log.info("malformed request body", extra={"error": type(e).__name__})
            return problem_response(Problem(400, c.INVALID_REQUEST, "The request body is malformed."))
        if isinstance(e, _dependency_down()):  # an outage, not a fault: tell the client to retry
            log.warning("dependency unreachable", extra={"error": type(e).__name__})
            return problem_response(unavailable("A service dependency is unreachable; please try again."))
        log.exception("unhandled error")
        return problem_response(Problem(500, c.INTERNAL, "An internal error occurred."))
