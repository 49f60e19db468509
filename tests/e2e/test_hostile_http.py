"""Hostile HTTP against every service process: over-long and malformed request heads are refused by the
HTTP server layer itself, as problem+json with the right status, never gunicorn's HTML page."""
from __future__ import annotations

import pytest

from support.rawhttp import get, raw_request

PROBLEM_JSON = "application/problem+json"

HEADS = {  # name: (request, status, code)
    "100 KB bearer token": (get("/healthz", b"Authorization: Bearer " + b"a" * 100_000), 431, "headers_too_large"),
    "10 KB Idempotency-Key": (get("/healthz", b"Idempotency-Key: " + b"k" * 10_000), 431, "headers_too_large"),
    "10 KB X-Request-ID": (get("/healthz", b"X-Request-ID: " + b"r" * 10_000), 431, "headers_too_large"),
    "150 header fields": (get("/healthz", *(b"X-F%d: v" % i for i in range(150))), 431, "headers_too_large"),
    "NUL in a header": (get("/healthz", b"X-Note: a\x00b"), 400, "invalid_request"),
    "CR in a header": (get("/healthz", b"X-Note: a\rb"), 400, "invalid_request"),
    "LF in a header": (get("/healthz", b"X-Note: a\nb"), 400, "invalid_request"),
    "CR/LF in a header name": (get("/healthz", b"X-No\r\nte: a"), 400, "invalid_request"),
    "0x01 in a header": (get("/healthz", b"X-Note: a\x01b"), 400, "invalid_request"),
    "folded header": (get("/healthz", b"X-Note: a", b" b"), 400, "invalid_request"),
    "10 KB URL": (get("/healthz?" + "q" * 10_000), 414, "uri_too_long"),
    "NUL in the method": (b"G\x00T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request"),
    "HTTP/9.9": (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400, "invalid_request"),
    "broken chunk": (b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n", 400, "invalid_request"),
}


def assert_raw_problem(r, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body[:200])
    assert r.headers["content-type"] == PROBLEM_JSON, r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code and body["title"] and body["detail"], body
    assert b"<html" not in r.body.lower() and b"Traceback" not in r.body
    assert r.headers.get("x-request-id")


@pytest.fixture(scope="module")
def services(stack):
    return {"auth": stack.auth.url, "reports": stack.reports.url, "notifier": stack.notifiers[0].url}


# reports authenticates before it reads any body, so a broken chunk is tried where a body is read first
CASES = [(service, case) for case in HEADS for service in ("auth", "reports", "notifier")
         if not (case == "broken chunk" and service == "reports")]


@pytest.mark.parametrize(("service", "case"), CASES)
def test_malformed_heads_are_problems_from_the_server_layer(services, service, case):
    request, status, code = HEADS[case]
    if case == "broken chunk" and service == "notifier":
        request = request.replace(b"/v1/auth/login", b"/socket.io/?EIO=4&transport=polling")
    assert_raw_problem(raw_request(services[service], request), status, code)


@pytest.mark.parametrize("service", ["auth", "reports", "notifier"])
def test_headers_just_inside_the_limits_reach_the_app(services, service):
    r = raw_request(services[service], get("/healthz", b"X-Note: " + b"n" * 8000, b"X-Request-ID: edge-ok-1"))
    assert r.status == 200 and r.headers["x-request-id"] == "edge-ok-1"


def test_services_keep_serving_after_hostile_heads(services):
    for url in services.values():
        for request, _status, _code in HEADS.values():
            raw_request(url, request)
        assert raw_request(url, get("/healthz")).status == 200
