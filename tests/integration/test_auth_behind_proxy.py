"""Behind the ingress (TRUSTED_PROXY_HOPS=1) the login throttle's per-address budget keys on the real client
address; without a trusted proxy an invented X-Forwarded-For buys nothing."""
from __future__ import annotations

from .contract_checks import fresh_email, test_client

LIMIT = 2


def _spray(client, forwarded_for: str, attempts: int) -> list[int]:
    """One wrong password against `attempts` different emails from one client (password spraying)."""
    return [client.post("/v1/auth/login", json={"email": fresh_email(), "password": "wrong password"},
                        headers={"X-Forwarded-For": forwarded_for}).status_code for _ in range(attempts)]


def test_trusted_proxy_gives_each_client_address_its_own_budget(make_auth_app):
    client = test_client(make_auth_app(LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE=str(LIMIT), TRUSTED_PROXY_HOPS="1"))
    assert _spray(client, "203.0.113.7", LIMIT + 1) == [401] * LIMIT + [429]
    # another client behind the same ingress still has its own budget
    assert _spray(client, "198.51.100.9", 1) == [401]


def test_without_a_trusted_proxy_forwarded_headers_are_ignored(make_auth_app):
    # (each session has a fresh Redis, and only this test gives 127.0.0.1 a budget of LIMIT)
    client = test_client(make_auth_app(LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE=str(LIMIT)))
    assert _spray(client, "203.0.113.7", LIMIT + 1) == [401] * LIMIT + [429]
    # a client cannot buy new attempts by inventing X-Forwarded-For: the budget is 127.0.0.1's
    assert _spray(client, "198.51.100.9", 1) == [429]
