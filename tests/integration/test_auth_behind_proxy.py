"""Behind the ingress (TRUSTED_PROXY_HOPS=1) the login throttle keys on the real client address."""
from __future__ import annotations

import time

from .contract_checks import test_client

LIMIT = 2


def _exhaust(client, email: str, forwarded_for: str) -> list[int]:
    """Wrong-password attempts from one client until the throttle answers (within a window's two budgets)."""
    statuses = []
    for _ in range(2 * LIMIT + 1):
        r = client.post("/v1/auth/login", json={"email": email, "password": "wrong password"},
                        headers={"X-Forwarded-For": forwarded_for})
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    return statuses


def test_trusted_proxy_gives_each_client_its_own_budget(make_auth_app, accounts):
    client = test_client(make_auth_app(LOGIN_ATTEMPTS_PER_MINUTE=str(LIMIT), TRUSTED_PROXY_HOPS="1"))
    email = accounts.register()["email"]
    assert _exhaust(client, email, "203.0.113.7")[-1] == 429
    # another client behind the same ingress is not locked out of the same account
    r = client.post("/v1/auth/login", json={"email": email, "password": "wrong password"},
                    headers={"X-Forwarded-For": "198.51.100.9"})
    assert r.status_code == 401


def test_without_a_trusted_proxy_forwarded_headers_are_ignored(make_auth_app, accounts):
    client = test_client(make_auth_app(LOGIN_ATTEMPTS_PER_MINUTE=str(LIMIT)))
    for _ in range(2):  # the throttle's window is a clock minute: try again if one ends mid-test
        email = accounts.register()["email"]
        window = int(time.time() // 60)
        assert _exhaust(client, email, "203.0.113.7")[-1] == 429
        # a client cannot buy new attempts by inventing X-Forwarded-For
        r = client.post("/v1/auth/login", json={"email": email, "password": "wrong password"},
                        headers={"X-Forwarded-For": "198.51.100.9"})
        if int(time.time() // 60) == window:
            assert r.status_code == 429
            return
    raise AssertionError("two minute boundaries in two attempts")
