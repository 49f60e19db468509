"""The HTTP edge every service shares, so no refusal leaves as anything but problem+json.

Two layers: gunicorn parses the request line and headers within the limits in `contracts` (configured by
`serve.run_gunicorn`), and its workers answer what they cannot parse as problem+json (`gunicorn_workers`);
then `HttpGuard`, the WSGI middleware just inside the request-id one, refuses headers a server let through
that the contract does not accept (for servers other than gunicorn, and the in-process test client) and
turns any exception that escapes the app and its middleware (Socket.IO's included) into a 500 problem
instead of the server's HTML page.
"""
from __future__ import annotations

import logging
import re

from gunicorn.http.errors import ParseException

from .contracts import HEADERS_TOO_LARGE, INTERNAL, INVALID_REQUEST, MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS
from .problems import Problem, wsgi_problem

log = logging.getLogger(__name__)
# Control characters other than horizontal tab (RFC 9110 field values); CR and LF would split a field.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HEADER_KEYS = ("CONTENT_TYPE", "CONTENT_LENGTH")


def header_problem(environ) -> Problem | None:
    """The contract's answer to headers it does not accept, or None when they are fine."""
    fields = [(k, v) for k, v in environ.items() if k.startswith("HTTP_") or k in _HEADER_KEYS]
    if len(fields) > MAX_HEADER_FIELDS:
        return Problem(431, HEADERS_TOO_LARGE, f"At most {MAX_HEADER_FIELDS} header fields.")
    for key, value in fields:
        if not isinstance(value, str):
            continue
        name = key.removeprefix("HTTP_").replace("_", "-").title()
        if len(name) + 2 + len(value) > MAX_HEADER_FIELD_BYTES:
            return Problem(431, HEADERS_TOO_LARGE, f"The {name} header is over {MAX_HEADER_FIELD_BYTES} bytes.")
        if _CONTROL.search(value):
            return Problem(400, INVALID_REQUEST, f"The {name} header holds a control character.",
                           errors=[{"field": name, "message": "must not contain control characters"}])
    return None


class HttpGuard:
    """WSGI middleware: refuses bad headers before the app runs; an exception escaping the app becomes a
    problem+json 500 (logged here, never shown)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        refused = header_problem(environ)
        if refused is not None:
            log.info("request refused at the edge", extra={"status": refused.status, "detail": refused.detail})
            return wsgi_problem(start_response, refused)
        started = []

        def start(status, headers, exc_info=None):
            started.append(status)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            return self.app(environ, start_response)  # the connection is handed over; it ends as the server's
        try:
            return self.app(environ, start)
        except StopIteration:  # gunicorn's signal to close a connection without an answer
            raise
        except ParseException as exc:  # gunicorn could not read the body (a broken chunk) for middleware
            if started:
                raise
            log.info("malformed request body", extra={"error": type(exc).__name__})
            return wsgi_problem(start_response, Problem(400, INVALID_REQUEST, "The request body is malformed."))
        except Exception:
            if started:  # the answer has begun: nothing sane can follow, let the server close the connection
                raise
            log.exception("unhandled error outside the app")
            return wsgi_problem(start_response, Problem(500, INTERNAL, "An internal error occurred."))

