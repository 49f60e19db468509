"""Hostile input against the real processes: control characters and non-addresses in JSON fields, tokens
genuinely signed but missing a claim, and the login throttle (per address, per account, Redis down)."""
from __future__ import annotations

import time
import uuid

import jwt
import pytest
import requests
import socketio

from support.clients import Api
from support.infra import RedisServer
from support.stack import start_auth

PROBLEM_JSON = "application/problem+json"
PASSWORD = "correct horse battery"


def assert_problem(r: requests.Response, status: int, code: str, *fields: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"] == PROBLEM_JSON
    body = r.json()
    assert body["code"] == code and body["status"] == status, body
    assert {e["field"] for e in body.get("errors", [])} >= set(fields), body
    return body


# Control characters and email addresses

@pytest.mark.parametrize(("body", "field"), [
    ({"email": "nul\x00@example.com", "password": PASSWORD}, "email"),
    ({"email": "fine@example.com", "password": "nul\x00password"}, "password"),
    ({"email": "esc\x1b[31m@example.com", "password": PASSWORD}, "email"),
    ({"email": "c1\x9b@example.com", "password": PASSWORD}, "email"),
    ({"email": "<script>alert(1)</script>@example.com", "password": PASSWORD}, "email"),
    ({"email": "<script>x@example.com</script>", "password": PASSWORD}, "email"),
    ({"email": "x@example.com\r\nBcc: y@example.com", "password": PASSWORD}, "email"),
])
def test_register_refuses_control_characters_and_non_addresses(stack, body, field):
    r = requests.post(f"{stack.auth_url}/v1/auth/register", json=body, timeout=10)
    assert_problem(r, 422, "invalid_request", field)


@pytest.mark.parametrize("body", [{"email": "nul\x00@example.com", "password": PASSWORD},
                                  {"email": "a@example.com", "password": "p\x00"},
                                  {"email": "a@example.com", "password": PASSWORD, "extra": ["\x07"]}])
def test_login_with_control_characters_is_422_and_logs_no_traceback(stack, body):
    r = requests.post(f"{stack.auth_url}/v1/auth/login", json=body, timeout=10)
    assert_problem(r, 422, "invalid_request")
    assert "Traceback" not in stack.auth.output()


def test_reports_refuse_control_characters_in_any_string(api, stack):
    user = api.new_user()
    for body, field in (({"type": "demo\x00"}, "type"), ({"type": "demo", "params": {"seed": "\x00"}}, "params.seed"),
                        ({"type": "demo", "params": {"r\x00ws": 1}}, "params")):
        assert_problem(user.request("POST", "/v1/reports", json=body), 422, "invalid_request", field)
    assert "Traceback" not in stack.reports.output()


def test_emails_are_normalised_once_for_every_spelling(stack):
    api = Api(stack.auth_url, stack.reports_url)
    local = f"Case.{uuid.uuid4().hex[:8]}"
    r = requests.post(f"{stack.auth_url}/v1/auth/register", timeout=10,
                      json={"email": f"{local}@Example.COM", "password": PASSWORD})
    assert r.status_code == 201 and r.json()["email"] == f"{local.lower()}@example.com"
    again = requests.post(f"{stack.auth_url}/v1/auth/register", timeout=10,
                          json={"email": f"{local.upper()}@EXAMPLE.com", "password": PASSWORD})
    assert_problem(again, 409, "conflict")
    assert api.login(f" {local.upper()}@example.COM ", PASSWORD)["access_token"]


# Claims: every token must carry exp, iat, jti, type, sub and iss

def _claims(user_id: str) -> dict:
    now = int(time.time())
    return {"sub": user_id, "jti": uuid.uuid4().hex, "type": "access", "iat": now, "nbf": now, "exp": now + 300,
            "iss": "reportflow", "sid": uuid.uuid4().hex}


@pytest.mark.parametrize("missing", ["exp", "iat", "jti", "type", "sub", "iss"])
def test_a_genuinely_signed_token_missing_a_claim_is_refused_everywhere(api, stack, missing):
    user = api.new_user()
    user_id = user.me()["id"]
    kid = requests.get(f"{stack.auth_url}/.well-known/jwks.json", timeout=10).json()["keys"][0]["kid"]

    def signed(claims: dict) -> str:
        return jwt.encode(claims, stack.infra.private_key_pem, algorithm="EdDSA", headers={"kid": kid})

    good, bad = signed(_claims(user_id)), signed({k: v for k, v in _claims(user_id).items() if k != missing})
    for url in (f"{stack.auth_url}/v1/auth/me", f"{stack.reports_url}/v1/reports"):
        assert requests.get(url, headers={"Authorization": f"Bearer {good}"}, timeout=10).status_code == 200
        assert_problem(requests.get(url, headers={"Authorization": f"Bearer {bad}"}, timeout=10), 401, "unauthorized")
    assert_problem(requests.post(f"{stack.auth_url}/v1/auth/logout", headers={"Authorization": f"Bearer {bad}"},
                                 timeout=10), 401, "unauthorized")

    refused = socketio.Client(reconnection=False)
    errors = []
    refused.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(stack.notifiers[0].url, auth={"token": bad}, transports=["websocket"], wait_timeout=10)
    assert errors == [{"message": "unauthorized", "data": {"code": "unauthorized"}}]
    accepted = socketio.Client(reconnection=False)
    accepted.connect(stack.notifiers[0].url, auth={"token": good}, transports=["websocket"], wait_timeout=10)
    accepted.disconnect()


# Login throttling: a library's moving window in Redis, per address and per account

@pytest.fixture(scope="module")
def strict_auth(stack):
    auth = start_auth(stack.infra, LOGIN_ATTEMPTS_PER_MINUTE="3", LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE="5",
                      TRUSTED_PROXY_HOPS="1")
    try:
        yield auth
    finally:
        auth.stop()


def _login(url: str, email: str, password: str, client: str) -> requests.Response:
    return requests.post(f"{url}/v1/auth/login", json={"email": email, "password": password},
                         headers={"X-Forwarded-For": client}, timeout=10)


def test_one_address_cannot_spray_a_password_over_many_accounts(strict_auth):
    statuses = [_login(strict_auth.url, f"victim-{i}-{uuid.uuid4().hex[:6]}@example.com", "Winter2026!",
                       "192.0.2.10").status_code for i in range(6)]
    assert statuses == [401] * 5 + [429]
    r = _login(strict_auth.url, f"one-more-{uuid.uuid4().hex[:6]}@example.com", "Winter2026!", "192.0.2.10")
    assert "address" in assert_problem(r, 429, "rate_limited")["detail"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_many_addresses_cannot_guess_one_accounts_password(api, strict_auth):
    email, password = api.register()
    statuses = [_login(strict_auth.url, email, f"guess-{i}", f"198.51.100.{i}").status_code for i in range(4)]
    assert statuses == [401] * 3 + [429]
    r = _login(strict_auth.url, email, password, "203.0.113.99")  # even the right password, from anywhere
    assert "account" in assert_problem(r, 429, "rate_limited")["detail"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_login_fails_closed_while_redis_is_down(stack):
    """The throttle cannot count without Redis: login answers 503 with Retry-After rather than go unlimited."""
    redis = RedisServer(stack.infra.workdir).start()
    auth = start_auth(stack.infra, REDIS_URL=redis.url)
    try:
        api = Api(auth.url, auth.url)
        email, password = api.register()
        assert api.login(email, password)["access_token"]
        redis.stop()
        r = requests.post(f"{auth.url}/v1/auth/login", json={"email": email, "password": password}, timeout=30)
        assert_problem(r, 503, "unavailable")
        assert int(r.headers["Retry-After"]) >= 1
        assert requests.get(f"{auth.url}/healthz", timeout=10).status_code == 200
    finally:
        auth.stop()
        redis.stop()
