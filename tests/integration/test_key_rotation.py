"""Signing-key rotation (README, key rotation): auth signs with the new key and keeps publishing the old key's
public half (JWT_PREVIOUS_PUBLIC_KEYS), so tokens signed before the rotation verify, at auth and at the reports
API (through auth's JWKS over HTTP), until they expire; once the old key is removed they do not.

Each stage of the rotation is an auth app of its own on the same PostgreSQL and Redis, as the pods of a rollout.
"""
from __future__ import annotations

from contextlib import contextmanager

import jwt
import pytest
import requests

from reportflow_auth.keys import generate_private_key_pem, load_signing_key, public_key_pem
from reportflow_common.settings import ConfigError
from support.waiting import wait_until

from .conftest import served
from .contract_checks import Accounts, access_claims, assert_problem, bearer, sign_eddsa, test_client


@pytest.fixture(scope="module")
def keys(infra):
    """old: the key before the rotation (the session's), new: the one after."""
    old = infra.private_key_pem
    return {"old": old, "new": generate_private_key_pem(), "old_kid": load_signing_key(old).kid}


@pytest.fixture(scope="module")
def stages(make_auth_app, keys):
    """before: the old key signs; rotated: the new key signs, the old one is still honoured; after: the old
    key removed. Short access tokens, so that expiry can be watched."""
    return {
        "before": make_auth_app(ACCESS_TOKEN_TTL_SECONDS="3"),
        "rotated": make_auth_app(JWT_PRIVATE_KEY=keys["new"], JWT_PREVIOUS_PUBLIC_KEYS=public_key_pem(keys["old"]),
                                 ACCESS_TOKEN_TTL_SECONDS="3"),
        "after": make_auth_app(JWT_PRIVATE_KEY=keys["new"]),
    }


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


@contextmanager
def reports_on(make_reports_app, auth_app):
    """A reports API (a fresh JWKS cache) verifying with `auth_app`'s JWKS, served over HTTP: (client, JWKS)."""
    with served(auth_app) as base:
        url = base + "/.well-known/jwks.json"
        wait_until(lambda: requests.get(url, timeout=2).status_code == 200, 20, "the JWKS over HTTP")
        yield test_client(make_reports_app(JWKS_URL=url)), requests.get(url, timeout=5).json()


def accepted(client, token) -> bool:
    r = client.get("/v1/reports", headers=bearer(token))
    assert r.status_code in (200, 401), r.get_data(as_text=True)
    return r.status_code == 200


def test_old_tokens_verify_after_the_rotation_until_they_expire_and_not_after_the_removal(
        stages, keys, make_reports_app):
    before = test_client(stages["before"])
    user = Accounts(before).new()
    assert kid_of(user.access) == kid_of(user.refresh) == keys["old_kid"]

    rotated = test_client(stages["rotated"])
    new_kid = load_signing_key(keys["new"]).kid
    with reports_on(make_reports_app, stages["rotated"]) as (reports, jwks):
        assert [k["kid"] for k in jwks["keys"]] == [new_kid, keys["old_kid"]], "current key first, then the old"
        assert all(set(k) == {"kty", "crv", "x", "kid", "use", "alg"} for k in jwks["keys"]), "public halves only"
        # Tokens signed before the rotation: accepted by the reports API and by auth itself.
        assert accepted(reports, user.access)
        assert rotated.get("/v1/auth/me", headers=user.headers).status_code == 200
        # A refresh token of the old key gets a pair signed with the new key.
        r = rotated.post("/v1/auth/refresh", headers=bearer(user.refresh))
        assert r.status_code == 200, r.get_data(as_text=True)
        fresh = r.get_json()
        assert kid_of(fresh["access_token"]) == kid_of(fresh["refresh_token"]) == new_kid
        assert accepted(reports, fresh["access_token"])
        # ... until they expire (3 s here): then refused, though their key is still published.
        wait_until(lambda: not accepted(reports, user.access), 15, "the old access token to expire")
        assert_problem(rotated.get("/v1/auth/me", headers=user.headers), 401, "unauthorized")

    # The old key removed: a token it signed is refused everywhere, even one that has not expired.
    late = sign_eddsa(keys["old"], keys["old_kid"], access_claims(user.id, lifetime=600))
    after = test_client(stages["after"])
    with reports_on(make_reports_app, stages["after"]) as (reports, jwks):
        assert [k["kid"] for k in jwks["keys"]] == [new_kid]
        assert not accepted(reports, late)
        assert_problem(after.get("/v1/auth/me", headers=bearer(late)), 401, "unauthorized")
        second = Accounts(after).new()
        assert accepted(reports, second.access) and kid_of(second.access) == new_kid


@pytest.mark.parametrize("text, message", [
    ("not a key", "something other than PEM public keys"),
    ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not a PEM public key"),
])
def test_a_malformed_previous_key_stops_auth_at_start(keys, text, message):
    with pytest.raises(ConfigError, match=message):
        load_signing_key(keys["new"], text)


def test_previous_keys_are_read_one_after_another_and_the_current_one_is_not_listed_twice(keys):
    third = generate_private_key_pem()
    listed = public_key_pem(keys["old"]) + public_key_pem(third) + public_key_pem(keys["new"])
    key = load_signing_key(keys["new"], listed.replace("\n", "\\n"))  # an env file's escaped newlines too
    kids = [k["kid"] for k in key.jwks()["keys"]]
    assert kids == [key.kid, keys["old_kid"], load_signing_key(third).kid]
