"""Which tokens the reports API refuses (401 unauthorized problem), verified with auth's JWKS over HTTP.

Each bad token differs from a good self-made one by one defect; the good one is accepted in the same
test, so each refusal is for that defect, and the service keeps answering good tokens right after.
"""
from __future__ import annotations

import pytest

from .contract_checks import (
    DEFECTS,
    access_claims,
    assert_problem,
    bad_token,
    bearer,
    closed_port_url,
    sign_eddsa,
    test_client,
)


@pytest.fixture()
def user(accounts):
    return accounts.new()


@pytest.fixture()
def good_token(infra, kid, user):
    return sign_eddsa(infra.private_key_pem, kid, access_claims(user.id))


def _accepted(reports, token) -> bool:
    r = reports.get("/v1/reports", headers=bearer(token))
    return r.status_code == 200 and r.get_json()["items"] == []


def test_a_self_made_token_with_auth_key_is_accepted(reports, good_token):
    assert _accepted(reports, good_token)


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_bad_token_is_refused(reports, infra, kid, user, good_token, defect):
    token = bad_token(defect, infra.private_key_pem, kid, user.id)
    for method, path in (("GET", "/v1/reports"), ("POST", "/v1/reports"), ("GET", "/v1/reports/x")):
        r = reports.open(path, method=method, headers=bearer(token), json={"type": "demo"})
        assert_problem(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert _accepted(reports, good_token)


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"])
def test_no_usable_authorization_header_is_refused(reports, good_token, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_problem(reports.get("/v1/reports", headers=headers), 401, "unauthorized")
    assert _accepted(reports, good_token)


def test_a_revoked_token_is_refused(reports, auth, user):
    assert _accepted(reports, user.access)
    assert auth.post("/v1/auth/logout", headers=user.headers).status_code == 204
    assert_problem(reports.get("/v1/reports", headers=user.headers), 401, "unauthorized")
    assert_problem(reports.get("/v1/reports", headers=bearer(user.refresh)), 401, "unauthorized")
    assert _accepted(reports, _new_login(auth, user))


def test_a_refresh_token_is_not_an_access_token(reports, user):
    assert_problem(reports.get("/v1/reports", headers=bearer(user.refresh)), 401, "unauthorized")
    assert_problem(reports.post("/v1/reports", headers=bearer(user.refresh), json={"type": "demo"}),
                   401, "unauthorized")
    assert _accepted(reports, user.access)


def test_tokens_cannot_be_checked_while_jwks_is_unreachable(make_reports_app, good_token):
    blind = test_client(make_reports_app(JWKS_URL=closed_port_url("http") + "/.well-known/jwks.json"))
    assert_problem(blind.get("/v1/reports", headers=bearer(good_token)), 503, "unavailable")
    assert_problem(blind.get("/v1/reports"), 401, "unauthorized")


def _new_login(auth, user) -> str:
    """A fresh access token of `user` (logout ended only the old login)."""
    r = auth.post("/v1/auth/login", json={"email": user.email, "password": user.password})
    assert r.status_code == 200
    return r.get_json()["access_token"]
