"""A WSGI guard in front of python-engineio, so every request to /socket.io gets an answer in bounded time,
as application/problem+json when it is refused.

Why it exists (python-engineio 4.15.1, the newest release when written; python-socketio 5.18.1,
Flask-SocketIO 5.7.0): when engine.io refuses a long-polling POST (a packet type a client may not send,
such as NOOP, PING or an unknown digit, or a body over `max_http_buffer_size`), it closes the session
with `Socket.close(wait=True)`, which waits on the session's queue for a poll that never comes. The POST
is never answered and its connection stays open: a thousand of them, no token needed, take every
connection a gevent worker accepts. A POST after the client's own CLOSE packet raises
KeyError('Session is disconnected') (a 500 page), and an undecodable body logs a traceback and gets 200.

So the guard refuses, before engine.io sees them, the POSTs engine.io would choke on (each checked
against the Engine.IO v4 wire format: UTF-8, at most 16 packets split by U+001E, each a type a client may
send), answers requests for unknown or closed sessions itself, allows one pending poll per session (as
the reference JavaScript server does) and bounds every long-polling request in time. engine.io's own
refusals (text/plain) are rewritten as problem+json. A WebSocket lives as long as its socket, and its
socket as long as the peer is heard from within engine.io's ping interval + timeout (see `_websocket`).
"""
from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import logging
from urllib.parse import parse_qs

import gevent
from prometheus_client import Counter

from reportflow_common import contracts as c
from reportflow_common.contracts import code_for_status
from reportflow_common.http_guard import header_problem
from reportflow_common.problems import PROBLEM_JSON, Problem, wsgi_problem
from reportflow_common.web import as_function, take_request_id, with_request_id

log = logging.getLogger(__name__)

SOCKETIO_PATH = "/socket.io/"
MAX_PACKETS = 16  # engine.io's own Payload.max_decode_packets: more makes it log a traceback and answer 200
CLIENT_PACKET_TYPES = frozenset("1345")  # CLOSE, PONG, MESSAGE, UPGRADE: what engine.io accepts from a client
POST_SECONDS = 10.0  # reading and handing over one POST; engine.io answers a valid one at once
GRACE_SECONDS = 5.0  # beyond engine.io's own poll timeout (ping interval + ping timeout)
REASONS = ("jsonp", "too_large", "malformed", "packet_type", "unknown_session", "overlapping_poll",
           "body_timeout", "no_answer", "engineio_refused", "websocket_timeout")


@functools.cache
def polling_refusals() -> Counter:
    """Created on first use, not at import (one per process; apps are built repeatedly in tests)."""
    counter = Counter("reportflow_notifier_polling_refusals_total",
                      "Socket.IO HTTP requests refused before or by engine.io, by reason.", ["reason"])
    for reason in REASONS:
        counter.labels(reason)
    return counter


class Refusal(Problem):
    """A Problem the guard answers itself; `reason` is its metric label."""

    def __init__(self, status: int, code: str, detail: str, reason: str, headers: dict | None = None):
        super().__init__(status, code, detail, headers=headers)
        self.reason = reason


def check_payload(body: bytes) -> None:
    """Raise Refusal unless `body` is an Engine.IO v4 polling payload engine.io will accept from a client."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(400, c.INVALID_REQUEST, "The payload is not UTF-8.", "malformed") from None
    if not text:
        return
    packets = text.split("\x1e")
    if len(packets) > MAX_PACKETS:
        raise Refusal(400, c.INVALID_REQUEST, f"At most {MAX_PACKETS} packets per request.", "malformed")
    for packet in packets:
        if packet.startswith("b"):  # a binary MESSAGE, base64-encoded
            try:
                base64.b64decode(packet[1:], validate=True)
            except (binascii.Error, ValueError):
                raise Refusal(400, c.INVALID_REQUEST, "A binary packet is not base64.", "malformed") from None
        elif not packet or packet[0] not in CLIENT_PACKET_TYPES:
            raise Refusal(400, c.INVALID_REQUEST, "A packet has a type a client may not send.", "packet_type")


def check_websocket_handshake(environ) -> None:
    """Raise Refusal unless the request is an RFC 6455 opening handshake simple-websocket will complete
    (it sends no answer at all to one it cannot parse)."""
    connection = {t.strip().lower() for t in environ.get("HTTP_CONNECTION", "").split(",")}
    if environ.get("REQUEST_METHOD") != "GET" or "upgrade" not in connection:
        raise Refusal(400, c.INVALID_REQUEST, "A WebSocket opens with GET and Connection: Upgrade.", "malformed")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
        raise Refusal(426, c.INVALID_REQUEST, "Only WebSocket version 13 is spoken.", "malformed",
                      {"Sec-WebSocket-Version": "13"})
    try:
        key_ok = len(base64.b64decode(environ.get("HTTP_SEC_WEBSOCKET_KEY", ""), validate=True)) == 16
    except (binascii.Error, ValueError):
        key_ok = False
    if not key_ok:
        raise Refusal(400, c.INVALID_REQUEST, "Sec-WebSocket-Key must be 16 bytes in base64.", "malformed")


class _WebSocketEnding:
    """How a WebSocket's request ends under gunicorn: simple-websocket ends every one with StopIteration, which
    passes; any other exception means the peer went silent or away mid-upgrade (engine.io fails reading
    nothing), and is counted, logged and turned into StopIteration: the connection is no HTTP one any more, so
    it is closed and nothing is said. A context manager rather than a function around the call, so that no
    frame of its own stays on a parked WebSocket's stack: `__enter__` has returned before the socket parks."""
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, _traceback) -> bool:
        if kind is None or issubclass(kind, StopIteration) or not issubclass(kind, Exception):
            return False
        polling_refusals().labels("websocket_timeout").inc()
        log.info("websocket ended abnormally", extra={"error": kind.__name__})
        raise StopIteration from None


WEBSOCKET_ENDS_QUIETLY = _WebSocketEnding()


class PollingGuard:
    """WSGI middleware wrapping Flask-SocketIO's; `eio` is the engine.io server (for its documented
    `get_session` and the limits it was configured with)."""

    def __init__(self, app, eio, path: str = SOCKETIO_PATH):
        self.app, self.eio, self.path = app, eio, path
        self.poll_seconds = eio.ping_interval + eio.ping_timeout + GRACE_SECONDS
        self.max_body = eio.max_http_buffer_size
        self.polling: set[str] = set()  # sessions with a long-poll GET in flight

    def __call__(self, environ, start_response):
        if not environ.get("PATH_INFO", "").startswith(self.path):
            return self.app(environ, start_response)
        try:
            return self._guarded(environ, start_response)
        except Refusal as refusal:
            polling_refusals().labels(refusal.reason).inc()
            log.info("socket.io request refused", extra={"reason": refusal.reason, "status": refusal.status})
            return wsgi_problem(start_response, refusal)

    def _guarded(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        method, sid = environ.get("REQUEST_METHOD", "GET"), query.get("sid", [None])[0]
        websocket = query.get("transport", ["polling"])[0] == "websocket" or \
            environ.get("HTTP_UPGRADE", "").lower() == "websocket"
        if websocket:
            return self._websocket(environ, start_response)
        if method not in ("GET", "POST") or (method == "GET" and sid is None):
            return self._rewritten(environ, start_response)  # a handshake or OPTIONS: answered at once
        if "j" in query:  # JSONP polling: no Engine.IO v4 client uses it
            raise Refusal(400, c.INVALID_REQUEST, "JSONP polling is not served.", "jsonp")
        if method == "POST":
            body = self._read_body(environ)
            check_payload(body)
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
            self._require_live_session(sid)
            return self._bounded(environ, start_response, POST_SECONDS)
        self._require_live_session(sid)
        if sid in self.polling:
            raise Refusal(400, c.INVALID_REQUEST, "A poll is already pending for this session.", "overlapping_poll")
        self.polling.add(sid)
        try:
            return self._bounded(environ, start_response, self.poll_seconds)
        finally:
            self.polling.discard(sid)

    def _websocket(self, environ, start_response):
        """A WebSocket lives as long as its socket; but a peer silent for longer than engine.io's ping
        interval + timeout is gone. engine.io means to set that read timeout itself, but looks for the
        socket under attribute names simple-websocket does not use, so a client that opens the upgrade of a
        polling session and never sends its probe held the connection forever. Under gunicorn the timeout
        is set here on the connection's socket; the request then ends as gunicorn ends every WebSocket."""
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            check_websocket_handshake(environ)
        sock = environ.get("gunicorn.socket")
        if sock is None:
            return self._rewritten(environ, start_response)
        sock.settimeout(self.poll_seconds)
        with WEBSOCKET_ENDS_QUIETLY:
            return self._rewritten(environ, start_response)

    def _read_body(self, environ) -> bytes:
        try:
            declared = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            raise Refusal(400, c.INVALID_REQUEST, "Content-Length is not a number.", "malformed") from None
        if declared > self.max_body:
            raise Refusal(413, c.PAYLOAD_TOO_LARGE, f"At most {self.max_body} bytes per request.", "too_large")
        try:
            with gevent.Timeout(POST_SECONDS):
                body = environ["wsgi.input"].read(declared if declared >= 0 else self.max_body + 1)
        except gevent.Timeout:
            raise Refusal(408, c.REQUEST_TIMEOUT, "The request body did not arrive in time.", "body_timeout",
                          {"Connection": "close"}) from None
        if len(body) > self.max_body:
            raise Refusal(413, c.PAYLOAD_TOO_LARGE, f"At most {self.max_body} bytes per request.", "too_large")
        return body

    def _require_live_session(self, sid: str | None) -> None:
        if sid is None:
            raise Refusal(400, c.INVALID_REQUEST, "The request names no session.", "unknown_session")
        try:
            self.eio.get_session(sid)  # KeyError for an unknown session or one already closed
        except KeyError:
            raise Refusal(400, c.INVALID_REQUEST, "Invalid session: unknown to this server, or closed.",
                          "unknown_session") from None

    def _bounded(self, environ, start_response, seconds: float):
        """engine.io answers within `seconds`; if a code path of its parks instead, answer 503 for it."""
        started = []

        def start(status, headers, exc_info=None):
            started.append(True)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            with gevent.Timeout(seconds):
                return self._rewritten(environ, start)
        except gevent.Timeout:
            if started:  # too late to answer otherwise; the server closes the connection
                raise
            log.warning("engine.io did not answer a long-polling request in time")
            raise Refusal(503, c.UNAVAILABLE, "The request could not be answered in time.", "no_answer",
                          {"Retry-After": "1"}) from None

    def _rewritten(self, environ, start_response):
        """engine.io's own refusals (400/405 text/plain with a JSON string) as problem+json."""
        refused = {}

        def start(status, headers, exc_info=None):
            code = int(status.split(" ", 1)[0])
            content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
            if code >= 400 and not content_type.startswith(PROBLEM_JSON):
                refused["status"] = code
                return lambda _data: None  # the body is replaced below
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        result = self.app(environ, start)
        if "status" not in refused:
            return result
        return _engineio_refusal(start_response, refused["status"], result)


def _engineio_refusal(start_response, status: int, result) -> list[bytes]:
    """engine.io's refusal (`result`, a JSON string as text/plain) answered as problem+json."""
    body = b"".join(result)
    if hasattr(result, "close"):
        result.close()
    try:
        detail = json.loads(body)
    except ValueError:
        detail = None
    polling_refusals().labels("engineio_refused").inc()
    detail = detail[:200] if isinstance(detail, str) else "The Socket.IO request was refused."
    return wsgi_problem(start_response, Problem(status, code_for_status(status), detail))


def upgrades_first(chain, guard: PollingGuard):
    """`chain` (the request-id and HTTP-guard layers around `guard`, around Socket.IO) with the WebSocket
    upgrades of Socket.IO's path under gunicorn taken out of it and handed to Socket.IO from one frame, doing
    what those layers do to them: the request id, the header refusals, the handshake check, the read timeout
    and engine.io's refusals as problem+json (`PollingGuard._websocket`). Why: a WebSocket's request greenlet
    lives as long as its socket and keeps every frame under it; the layers' frames and closures took ~6 KB
    per socket (bench/bench_sockets.py). Every other request goes through `chain` as before."""
    sockets = guard.app

    def edge(environ, start_response):
        if environ.get("HTTP_UPGRADE", "").lower() != "websocket" or "gunicorn.socket" not in environ \
                or not environ.get("PATH_INFO", "").startswith(guard.path):
            return chain(environ, start_response)
        request_id = take_request_id(environ)
        refused = header_problem(environ)
        if refused is not None:
            log.info("request refused at the edge", extra={"status": refused.status, "detail": refused.detail})
        else:
            try:
                check_websocket_handshake(environ)
            except Refusal as refusal:
                polling_refusals().labels(refusal.reason).inc()
                log.info("socket.io request refused", extra={"reason": refusal.reason, "status": refusal.status})
                refused = refusal
        if refused is not None:
            return wsgi_problem(lambda status, headers: start_response(status, with_request_id(headers, request_id)),
                                refused)
        environ["gunicorn.socket"].settimeout(guard.poll_seconds)
        engineio_refused = []

        def start(status, headers, exc_info=None):
            code = int(status.split(" ", 1)[0])
            content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
            if code >= 400 and not content_type.startswith(PROBLEM_JSON):
                engineio_refused.append(code)
                return lambda _data: None  # the body is replaced below
            return start_response(status, with_request_id(headers, request_id), exc_info)

        with WEBSOCKET_ENDS_QUIETLY:
            result = sockets(environ, start)
        if not engineio_refused:
            return result
        return _engineio_refusal(lambda status, headers: start_response(status, with_request_id(headers, request_id)),
                                 engineio_refused[0], result)

    return edge


def guard_polling(app, socketio) -> PollingGuard:
    """Called by the notifier's create_app right after Flask-SocketIO is bound to `app`; then `upgrades_first`
    goes around the layers `init_web` adds."""
    guard = PollingGuard(as_function(app.wsgi_app), socketio.server.eio)
    app.wsgi_app = as_function(guard)
    return guard
