"""The HTTP edge: gunicorn's own error answers, the WSGI guard and the long-polling payload check, all
problem+json (the servers themselves are exercised in tests/e2e/test_hostile_http.py)."""
from __future__ import annotations

import json

import pytest
from flask import Flask
from gunicorn.http import errors as e

from reportflow_common.gunicorn_workers import error_status, raw_problem
from reportflow_common.http_guard import HttpGuard, header_problem
from reportflow_common.problems import PROBLEM_JSON
from reportflow_notifier.polling_guard import Refusal, check_payload


@pytest.mark.parametrize(("exc", "status"), [
    (e.LimitRequestHeaders("Request Header Fields Too Large"), 431),
    (e.LimitRequestLine(9000, 8190), 414),
    (e.InvalidHeader("X-A"), 400),
    (e.InvalidHeaderName("X\x00A"), 400),
    (e.InvalidRequestLine("G\x00T /"), 400),
    (e.InvalidChunkSize("zz"), 400),
    (e.UnsupportedTransferCoding("gzip"), 501),
    (e.InvalidResponseHeader("X-A"), 500),  # the app's fault, not the client's
    (RuntimeError("boom"), 500),
])
def test_gunicorn_errors_keep_gunicorns_status(exc, status):
    assert error_status(exc) == status


def test_raw_problem_is_a_whole_problem_json_response():
    raw = raw_problem(431, "A header field is too large.")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Content-Type"] == PROBLEM_JSON and headers["Connection"] == "close"
    assert int(headers["Content-Length"]) == len(body) and len(headers["X-Request-ID"]) == 32
    assert json.loads(body) == {"type": "about:blank", "title": "Request Header Fields Too Large", "status": 431,
                                "detail": "A header field is too large.", "code": "headers_too_large"}


@pytest.mark.parametrize(("environ", "status"), [
    ({"HTTP_AUTHORIZATION": "Bearer " + "a" * 100_000}, 431),
    ({"HTTP_IDEMPOTENCY_KEY": "k" * 10_000}, 431),
    ({f"HTTP_X_{i}": "v" for i in range(101)}, 431),
    ({"HTTP_X_NOTE": "a\x00b"}, 400),
    ({"HTTP_X_NOTE": "a\rb"}, 400),
    ({"HTTP_X_NOTE": "a\nb"}, 400),
    ({"HTTP_X_NOTE": "a\x7fb"}, 400),
    ({"CONTENT_TYPE": "application/json\x01"}, 400),
    ({"HTTP_X_NOTE": "tab\tis fine, and so is caf\xe9"}, None),
])
def test_header_problem(environ, status):
    found = header_problem(environ)
    assert (found and found.status) == status


def _call(app, environ: dict):
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen.update(status=status, headers=dict(headers))
    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/", **environ}, start_response))
    return seen["status"], seen["headers"], body


def test_http_guard_answers_an_escaping_exception_as_a_500_problem():
    def raising(_environ, _start_response):
        raise KeyError("Session is disconnected")
    status, headers, body = _call(HttpGuard(raising), {})
    assert status.startswith("500") and headers["Content-Type"] == PROBLEM_JSON
    assert json.loads(body)["code"] == "internal" and b"Session" not in body


def test_http_guard_refuses_before_the_app_runs():
    ran = []
    status, headers, body = _call(HttpGuard(lambda env, sr: ran.append(1)), {"HTTP_X_NOTE": "a\x00"})
    assert status.startswith("400") and not ran
    assert json.loads(body)["errors"] == [{"field": "X-Note", "message": "must not contain control characters"}]


def test_flask_apps_read_a_malformed_chunked_body_as_the_clients_fault():
    from reportflow_common.problems import install_error_handlers
    app = Flask("unit_edge")
    install_error_handlers(app)

    @app.post("/read")
    def read():
        raise e.InvalidChunkSize("zz")  # what gunicorn's body reader raises mid-request
    r = app.test_client().post("/read")
    assert r.status_code == 400 and r.get_json()["code"] == "invalid_request"


@pytest.mark.parametrize("body", [b"", b"40", b"40{\"token\":\"t\"}", b"3", b"1", b"5",
                                  "\x1e".join(["3"] * 16).encode(), b"4caf\xc3\xa9", b"bAAEC"])
def test_payloads_engine_io_accepts_pass(body):
    check_payload(body)


@pytest.mark.parametrize(("body", "reason"), [
    (b"6", "packet_type"), (b"2", "packet_type"), (b"0", "packet_type"), (b"9x", "packet_type"),
    (b"4a\x1e", "packet_type"),  # an empty packet after the separator
    (b"4\xff", "malformed"), ("\x1e".join(["3"] * 17).encode(), "malformed"), (b"b!!", "malformed"),
])
def test_payloads_engine_io_would_choke_on_are_refused(body, reason):
    with pytest.raises(Refusal) as refused:
        check_payload(body)
    assert refused.value.reason == reason and refused.value.status == 400


def test_http_guard_lets_gunicorns_end_of_connection_through():
    """simple-websocket ends every WebSocket under gunicorn with StopIteration: never a 500 written on it."""
    def websocket_ended(_environ, _start_response):
        raise StopIteration
    with pytest.raises(StopIteration):
        _call(HttpGuard(websocket_ended), {})
    with pytest.raises(RuntimeError):  # a handed-over connection is the server's to end, whatever happened
        _call(HttpGuard(lambda env, sr: (_ for _ in ()).throw(RuntimeError("x"))), {"HTTP_UPGRADE": "websocket"})


@pytest.mark.parametrize(("environ", "status"), [
    ({}, 400),
    ({"HTTP_CONNECTION": "Upgrade"}, 426),
    ({"HTTP_CONNECTION": "keep-alive, Upgrade", "HTTP_SEC_WEBSOCKET_VERSION": "13"}, 400),
    ({"HTTP_CONNECTION": "Upgrade", "HTTP_SEC_WEBSOCKET_VERSION": "13", "HTTP_SEC_WEBSOCKET_KEY": "c2hvcnQ="}, 400),
    ({"HTTP_CONNECTION": "Upgrade", "HTTP_SEC_WEBSOCKET_VERSION": "13",
      "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ=="}, None),
])
def test_websocket_handshake_check(environ, status):
    from reportflow_notifier.polling_guard import check_websocket_handshake
    environ = {"REQUEST_METHOD": "GET", "HTTP_UPGRADE": "websocket", **environ}
    if status is None:
        check_websocket_handshake(environ)
        return
    with pytest.raises(Refusal) as refused:
        check_websocket_handshake(environ)
    assert refused.value.status == status


def test_a_websocket_ending_in_an_error_is_counted_and_closed_quietly():
    """Both ways a WebSocket enters Socket.IO (the guard and the edge) end through WEBSOCKET_ENDS_QUIETLY:
    simple-websocket's StopIteration passes; another error (the peer went away mid-upgrade) is counted and
    becomes StopIteration; what is not an Exception (gevent's GreenletExit, KeyboardInterrupt) passes too."""
    from prometheus_client import REGISTRY

    from reportflow_notifier.polling_guard import WEBSOCKET_ENDS_QUIETLY, polling_refusals

    polling_refusals()  # registered on first use

    def timeouts() -> float:
        return REGISTRY.get_sample_value("reportflow_notifier_polling_refusals_total", {"reason": "websocket_timeout"})

    before = timeouts()
    with pytest.raises(StopIteration) as ended, WEBSOCKET_ENDS_QUIETLY:
        raise OSError("the peer went away")
    assert ended.value.__cause__ is None and ended.value.__suppress_context__
    assert timeouts() == before + 1
    for passing in (StopIteration(), KeyboardInterrupt()):
        with pytest.raises(type(passing)), WEBSOCKET_ENDS_QUIETLY:
            raise passing
    with WEBSOCKET_ENDS_QUIETLY:
        pass
    assert timeouts() == before + 1
