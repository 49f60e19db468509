"""gunicorn's thread worker answering as the contract does: a request gunicorn cannot parse (a header over
the limits, CR, LF or NUL in a header, a bad request line) gets application/problem+json, not gunicorn's
HTML error page. `serve.run_gunicorn` picks this class for "gthread" (and `gunicorn_gevent` for "gevent").

`handle_error` is the hook gunicorn's workers call for such requests (a public method of
`gunicorn.workers.base.Worker`; custom worker classes are a documented gunicorn feature). gunicorn imports
this module in its master before the gevent worker monkey-patches, so it imports nothing heavy (no Flask,
redis or SQLAlchemy): only the constants of `contracts`.
"""
from __future__ import annotations

import json
import ssl
import uuid
from http import HTTPStatus

from gunicorn import util
from gunicorn.http import errors as e
from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker

from .contracts import code_for_status

# The statuses gunicorn itself gives these; any other parse error is 400, anything else 500.
_STATUS = ((e.InvalidResponseHeader, 500), (e.InvalidResponseHeaderName, 500), (e.ConfigurationProblem, 500),
           (e.LimitRequestHeaders, 431), (e.LimitRequestLine, 414), (e.ExpectationFailed, 417),
           (e.UnsupportedTransferCoding, 501), (e.ForbiddenProxyRequest, 403), (ssl.SSLError, 403),
           (e.ParseException, 400))
_DETAIL = {400: "The request is malformed (request line, header or body framing).",
           403: "The request is forbidden.", 414: "The request line is too long.",
           417: "The expectation cannot be met.", 431: "A header field, or all of them together, is too large.",
           500: "An internal error occurred.", 501: "That transfer coding is not supported."}


def raw_problem(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 response (connection closing) for a request the server could not parse into WSGI."""
    phrase = HTTPStatus(status).phrase
    body = json.dumps({"type": "about:blank", "title": phrase, "status": status, "detail": detail,
                       "code": code_for_status(status)}).encode()
    head = (f"HTTP/1.1 {status} {phrase}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            f"X-Request-ID: {uuid.uuid4().hex}\r\n\r\n")
    return head.encode("latin-1") + body


def error_status(exc: BaseException) -> int:
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 500)


class ProblemErrors:
    """Mixin for a gunicorn worker class: its own error answers as problem+json."""

    def handle_error(self, req, client, addr, exc):
        status = error_status(exc)
        if status < 500:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        else:
            self.log.exception("Error handling request")
        try:
            util.write_nonblock(client, raw_problem(status, _DETAIL.get(status, _DETAIL[400])))
        except Exception:  # the client is gone; nothing more to tell it
            self.log.debug("Failed to send error message.")


class ThreadWorker(ProblemErrors, _ThreadWorker):
    """gunicorn's gthread worker (auth, reports) with problem+json error answers."""
