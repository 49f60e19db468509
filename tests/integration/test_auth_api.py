"""The auth service in-process against real PostgreSQL and Redis: /v1/auth/*, JWKS, health and metrics."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from flask import json

from reportflow_common.contracts import REVOCATIONS_CHANNEL

from .contract_checks import (
    DEFECTS,
    PASSWORD,
    access_claims,
    assert_problem,
    bad_token,
    bearer,
    closed_port_url,
    fresh_email,
    sign_eddsa,
    test_client,
    unverified_parts,
)


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.utcoffset() == timedelta(0), text
    return value


# Registration

def test_register_returns_the_new_user(auth):
    email = fresh_email()
    r = auth.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201 and r.mimetype == "application/json"
    body = r.get_json()
    assert set(body) == {"id", "email", "created_at"}
    assert uuid.UUID(body["id"]) and body["email"] == email
    assert abs(_utc(body["created_at"]) - datetime.now(_utc(body["created_at"]).tzinfo)) < timedelta(minutes=5)
    assert "password" not in r.get_data(as_text=True)


def test_register_an_existing_email_in_any_case_is_a_conflict(auth):
    email = fresh_email()
    assert auth.post("/v1/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    again = auth.post("/v1/auth/register", json={"email": email.upper(), "password": "another password"})
    assert_problem(again, 409, "conflict")
    assert auth.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).status_code == 200


@pytest.mark.parametrize("body, fields", [
    ({"email": "not-an-email", "password": PASSWORD}, ["email"]),
    ({"email": fresh_email(), "password": "short"}, ["password"]),
    ({"email": "two@@example.com", "password": "1234567"}, ["email", "password"]),
    ({"email": 42, "password": ["x"]}, ["email", "password"]),
    ({}, ["email", "password"]),
    ({"email": "<script>alert(1)@example.com</script>", "password": PASSWORD}, ["email"]),
    ({"email": "someone@localhost", "password": PASSWORD}, ["email"]),
    ({"email": "a..b@example.com", "password": PASSWORD}, ["email"]),
    ({"email": "x" * 250 + "@example.com", "password": PASSWORD}, ["email"]),
    ({"email": "nul\u0000@example.com", "password": PASSWORD}, ["email"]),
    ({"email": fresh_email(), "password": "tab\tand newline\nin it"}, ["password"]),
    ({"email": fresh_email(), "password": "lone surrogate \ud800 here"}, ["password"]),
])
def test_register_invalid_credentials_name_their_fields(auth, body, fields):
    assert_problem(auth.post("/v1/auth/register", json=body), 422, "invalid_request", *fields)


def test_register_normalises_the_email(auth):
    local = f"Mixed.Case-{uuid.uuid4().hex[:8]}"
    r = auth.post("/v1/auth/register", json={"email": f"  {local}@EXAMPLE.com ", "password": PASSWORD})
    assert r.status_code == 201 and r.get_json()["email"] == f"{local.lower()}@example.com"
    idn = auth.post("/v1/auth/register", json={"email": f"{local}@BÜCHER.de", "password": PASSWORD})
    assert idn.status_code == 201 and idn.get_json()["email"] == f"{local.lower()}@bücher.de"
    assert auth.post("/v1/auth/login", json={"email": f"{local}@bücher.DE", "password": PASSWORD}).status_code == 200


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "nul\u0000@example.com", "password": PASSWORD}, "email"),
    ({"email": "someone@example.com", "password": "pass\u0000word"}, "password"),
    ({"email": "someone@example.com\r\nBcc: x@example.com", "password": PASSWORD}, "email"),
])
def test_control_characters_in_a_login_are_a_422_not_a_500(auth, body, field):
    assert_problem(auth.post("/v1/auth/login", json=body), 422, "invalid_request", field)


def test_register_with_a_body_that_is_not_json(auth):
    assert_problem(auth.post("/v1/auth/register", data="{", content_type="application/json"), 400,
                   "invalid_request", "body")
    r = auth.post("/v1/auth/register", data="email=a@b.c", content_type="application/x-www-form-urlencoded")
    assert_problem(r, 415, "unsupported_media_type")


def test_registration_switched_off_is_not_served(make_auth_app, auth):
    closed = test_client(make_auth_app(ALLOW_REGISTRATION="false"))
    email = fresh_email()
    assert_problem(closed.post("/v1/auth/register", json={"email": email, "password": PASSWORD}), 404, "not_found")
    assert_problem(closed.post("/v1/auth/login", json={"email": email, "password": PASSWORD}), 401, "unauthorized")
    # nothing was stored: the address is still free where registration is open
    assert auth.post("/v1/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    assert closed.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).status_code == 200


# Login

def test_login_returns_a_bearer_token_pair(auth, accounts, kid):
    user = accounts.register()
    r = auth.post("/v1/auth/login", json={"email": user["email"].upper(), "password": PASSWORD})
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] <= 3600
    for name, kind in (("access_token", "access"), ("refresh_token", "refresh")):
        header, claims = unverified_parts(body[name])
        assert header["alg"] == "EdDSA" and header["kid"] == kid
        assert claims["sub"] == user["id"] and claims["type"] == kind and claims["jti"] and claims["exp"]
    access, refresh = (unverified_parts(body[n])[1] for n in ("access_token", "refresh_token"))
    assert access["exp"] - access["iat"] == body["expires_in"]
    assert refresh["exp"] > access["exp"] and access["jti"] != refresh["jti"]


def test_unknown_email_and_wrong_password_get_the_same_answer(auth, accounts):
    user = accounts.register()
    wrong_password = auth.post("/v1/auth/login", json={"email": user["email"], "password": "not the password"})
    unknown_email = auth.post("/v1/auth/login", json={"email": fresh_email(), "password": "not the password"})
    assert_problem(wrong_password, 401, "unauthorized")
    assert_problem(unknown_email, 401, "unauthorized")
    assert wrong_password.get_data() == unknown_email.get_data()
    same = ("Content-Type", "WWW-Authenticate")
    assert [wrong_password.headers.get(h) for h in same] == [unknown_email.headers.get(h) for h in same]


@pytest.mark.parametrize("body", [{}, {"email": 1, "password": 2}, {"email": "x@example.com"}])
def test_login_with_missing_or_mistyped_fields_is_unauthorized(auth, body):
    assert_problem(auth.post("/v1/auth/login", json=body), 401, "unauthorized")


def test_login_is_throttled_per_account_from_every_address(make_auth_app, accounts):
    """A moving window of LOGIN_ATTEMPTS_PER_MINUTE per account, whatever address the attempts come from."""
    limit = 3
    limited = test_client(make_auth_app(LOGIN_ATTEMPTS_PER_MINUTE=str(limit), TRUSTED_PROXY_HOPS="1"))
    email = accounts.register()["email"]
    statuses = [limited.post("/v1/auth/login", json={"email": email, "password": "wrong password"},
                             headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(limit + 1)]
    assert statuses == [401] * limit + [429], statuses
    # the right password does not get around it, nor the address, nor the spelling of the email
    r = limited.post("/v1/auth/login", json={"email": f" {email.upper()} ", "password": PASSWORD},
                     headers={"X-Forwarded-For": "203.0.113.50"})
    body = assert_problem(r, 429, "rate_limited")
    assert "account" in body["detail"] and 1 <= int(r.headers["Retry-After"]) <= 60
    other = accounts.register()["email"]  # another account is not limited
    assert limited.post("/v1/auth/login", json={"email": other, "password": PASSWORD}).status_code == 200


def test_login_is_throttled_per_address_over_every_account(make_auth_app, accounts):
    """One address spraying a password over many accounts meets LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE."""
    limit = 4
    limited = test_client(make_auth_app(LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE=str(limit), TRUSTED_PROXY_HOPS="1"))
    sprayer = {"X-Forwarded-For": "192.0.2.77"}
    statuses = [limited.post("/v1/auth/login", json={"email": fresh_email(), "password": "Summer2026!"},
                             headers=sprayer).status_code for _ in range(limit + 1)]
    assert statuses == [401] * limit + [429], statuses
    user = accounts.register()
    r = limited.post("/v1/auth/login", json={"email": user["email"], "password": PASSWORD}, headers=sprayer)
    body = assert_problem(r, 429, "rate_limited")
    assert "address" in body["detail"] and 1 <= int(r.headers["Retry-After"]) <= 60
    ok = limited.post("/v1/auth/login", json={"email": user["email"], "password": PASSWORD},
                      headers={"X-Forwarded-For": "192.0.2.78"})
    assert ok.status_code == 200


# Tokens in use

def test_me_with_the_access_token(auth, accounts):
    user = accounts.register()
    tokens = accounts.login(user["email"])
    r = auth.get("/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert r.status_code == 200 and r.get_json() == user
    assert_problem(auth.get("/v1/auth/me"), 401, "unauthorized")
    assert_problem(auth.get("/v1/auth/me", headers=bearer(tokens["refresh_token"])), 401, "unauthorized")
    assert_problem(auth.get("/v1/auth/me", headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401, "unauthorized")


def _refresh(auth, token):
    return auth.post("/v1/auth/refresh", headers=bearer(token))


def test_refresh_rotates_the_pair(auth, accounts):
    user = accounts.new()
    r = _refresh(auth, user.refresh)
    assert r.status_code == 200
    second = r.get_json()
    assert set(second) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert second["token_type"] == "Bearer"
    assert second["refresh_token"] != user.refresh and second["access_token"] != user.access
    assert auth.get("/v1/auth/me", headers=bearer(second["access_token"])).get_json()["id"] == user.id
    third = _refresh(auth, second["refresh_token"])
    assert third.status_code == 200
    assert_problem(_refresh(auth, user.refresh), 401, "unauthorized")
    assert_problem(_refresh(auth, user.access), 401, "unauthorized")  # an access token cannot refresh


def test_reusing_a_refresh_token_revokes_the_whole_login(auth, reports, accounts):
    user = accounts.new()
    other_login = accounts.login(user.email)
    newest = _refresh(auth, user.refresh).get_json()
    assert auth.get("/v1/auth/me", headers=bearer(newest["access_token"])).status_code == 200

    assert_problem(_refresh(auth, user.refresh), 401, "unauthorized")  # the replay, as a thief would

    assert_problem(auth.get("/v1/auth/me", headers=bearer(newest["access_token"])), 401, "unauthorized")
    assert_problem(reports.get("/v1/reports", headers=bearer(newest["access_token"])), 401, "unauthorized")
    assert_problem(_refresh(auth, newest["refresh_token"]), 401, "unauthorized")
    # only that login ends: the user's other session goes on
    assert auth.get("/v1/auth/me", headers=bearer(other_login["access_token"])).status_code == 200
    assert _refresh(auth, other_login["refresh_token"]).status_code == 200


def test_logout_ends_the_access_and_refresh_token_everywhere(auth, reports, accounts):
    user = accounts.new()
    other_login = accounts.login(user.email)
    assert reports.get("/v1/reports", headers=user.headers).status_code == 200
    r = auth.post("/v1/auth/logout", headers=user.headers)
    assert r.status_code == 204 and r.get_data() == b""
    assert_problem(auth.get("/v1/auth/me", headers=user.headers), 401, "unauthorized")
    assert_problem(reports.get("/v1/reports", headers=user.headers), 401, "unauthorized")
    assert_problem(_refresh(auth, user.refresh), 401, "unauthorized")
    assert_problem(auth.post("/v1/auth/logout", headers=user.headers), 401, "unauthorized")
    assert auth.get("/v1/auth/me", headers=bearer(other_login["access_token"])).status_code == 200
    assert reports.get("/v1/reports", headers=bearer(other_login["access_token"])).status_code == 200


def test_logout_needs_an_access_token(auth, accounts):
    user = accounts.new()
    assert_problem(auth.post("/v1/auth/logout"), 401, "unauthorized")
    assert_problem(auth.post("/v1/auth/logout", headers=bearer(user.refresh)), 401, "unauthorized")
    assert auth.get("/v1/auth/me", headers=user.headers).status_code == 200


# auth holds the one signing key and checks with it whatever the kid says, so kid defects are the verifiers' concern
@pytest.mark.parametrize("defect", [d for d in DEFECTS if "kid" not in d or "foreign" in d])
def test_auth_refuses_the_same_bad_tokens(auth, infra, kid, accounts, defect):
    user = accounts.new()
    assert_problem(auth.get("/v1/auth/me", headers=bearer(bad_token(defect, infra.private_key_pem, kid, user.id))),
                   401, "unauthorized")
    good = sign_eddsa(infra.private_key_pem, kid, access_claims(user.id))
    assert auth.get("/v1/auth/me", headers=bearer(good)).get_json()["id"] == user.id


def test_jwks_publishes_only_public_keys(auth):
    r = auth.get("/.well-known/jwks.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    keys = json.loads(r.get_data())["keys"]
    assert keys
    for key in keys:
        assert key["kid"] and key["kty"] == "OKP" and key["alg"] == "EdDSA" and key["crv"] == "Ed25519"
        assert key["x"] and "d" not in key


# Every service

def test_health_readiness_and_metrics(auth):
    assert auth.get("/healthz").status_code == 200
    assert auth.get("/readyz").status_code == 200
    auth.post("/v1/auth/login", json={"email": fresh_email(), "password": PASSWORD})
    r = auth.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert 'reportflow_auth_http_requests_total{method="POST",route="/v1/auth/login",status="401"}' in text
    assert 'reportflow_auth_logins_total{outcome="failure"}' in text


def test_an_unreachable_dependency_makes_auth_unready_and_its_answers_503(make_auth_app, accounts):
    user = accounts.register()
    cut_off = test_client(make_auth_app(REDIS_URL=closed_port_url("redis") + "/0"))
    assert cut_off.get("/healthz").status_code == 200
    body = assert_problem(cut_off.get("/readyz"), 503, "unavailable")
    assert body["failed"] == ["redis"]
    # the login throttle and the deny-list live in Redis: retry later, rather than a server fault
    r = cut_off.post("/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert_problem(r, 503, "unavailable")


def test_logout_while_redis_is_unreachable_is_503_and_the_login_goes_on(make_auth_app, auth, accounts):
    """Nothing can be revoked (nor any socket told) without Redis: the client is told to try again."""
    user = accounts.new()
    cut_off = test_client(make_auth_app(REDIS_URL=closed_port_url("redis") + "/0"))
    assert_problem(cut_off.post("/v1/auth/logout", headers=user.headers), 503, "unavailable")
    assert auth.get("/v1/auth/me", headers=user.headers).status_code == 200


def test_logout_and_refresh_reuse_announce_the_revocation_to_the_notifiers(auth, accounts, redis):
    """The message every notifier acts on (docs/events.md): the login, the token and why."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(REVOCATIONS_CHANNEL)
    assert pubsub.get_message(timeout=5) is None  # the confirmation: subscribed from here on

    def announced(login: str) -> dict:
        while (message := pubsub.get_message(timeout=5)) is not None:
            body = json.loads(message["data"])
            if body["login"] == login:
                return body
        raise AssertionError(f"no revocation of login {login} was published")

    try:
        user = accounts.new()
        claims = unverified_parts(user.access)[1]
        assert auth.post("/v1/auth/logout", headers=user.headers).status_code == 204
        assert announced(claims["sid"]) == {"login": claims["sid"], "jti": claims["jti"], "reason": "logged_out"}
        again = accounts.new()
        refresh_claims = unverified_parts(again.refresh)[1]
        assert _refresh(auth, again.refresh).status_code == 200
        assert_problem(_refresh(auth, again.refresh), 401, "unauthorized")  # reused: the login is revoked
        assert announced(refresh_claims["sid"]) == {"login": refresh_claims["sid"], "jti": refresh_claims["jti"],
                                                    "reason": "revoked"}
    finally:
        pubsub.close()


def test_unknown_path_and_wrong_method_are_problems(auth):
    assert_problem(auth.get("/v1/auth/nowhere"), 404, "not_found")
    r = auth.get("/v1/auth/login")
    assert_problem(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]


def test_a_client_request_id_is_echoed_and_a_bad_one_replaced(auth):
    r = auth.get("/healthz", headers={"X-Request-ID": "client-chosen-42"})
    assert r.headers["X-Request-ID"] == "client-chosen-42"
    r = auth.post("/v1/auth/login", json={}, headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 401 and r.headers["X-Request-ID"] == "abc-123"
    r = auth.get("/healthz", headers={"X-Request-ID": "no spaces <allowed>"})
    assert r.headers["X-Request-ID"] and r.headers["X-Request-ID"] != "no spaces <allowed>"
    assert auth.get("/healthz", headers={"X-Request-ID": ""}).headers["X-Request-ID"]
