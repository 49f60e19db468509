"""A socket lives only as long as its login: logout and refresh-token reuse end it on every notifier within a
second, with `session.ended` saying why; so does its access token's expiry, unless the client sent a fresh
token of the same user first (`auth.refresh`). Two notifier processes each time."""
from __future__ import annotations

import time
from contextlib import contextmanager

import jwt
import pytest
from redis import Redis

from reportflow_common.tokens import revoked_sid_key
from support.clients import Api, SocketClient, User
from support.stack import start_auth, start_notifier
from support.waiting import wait_until

REVOCATION_DEADLINE = 1.0  # seconds from auth's answer to every socket of the login being gone (the contract)
SHORT_TTL = 6  # access-token lifetime of the short-lived stack, in seconds


@contextmanager
def sockets_of(user: User, urls: list[str]):
    """One socket of `user`'s current token on each notifier, closed at the end whatever happened."""
    sockets: list[SocketClient] = []
    try:
        sockets.extend(SocketClient(url, user.token).connect() for url in urls)
        yield sockets
    finally:
        for sock in sockets:
            sock.disconnect()


def ended_within_deadline(sockets: list[SocketClient], answered_at: float, reason: str, what: str) -> list[float]:
    """Wait (until REVOCATION_DEADLINE after `answered_at`) for every socket to get `session.ended` with
    `reason` and be disconnected; the seconds each took, printed for the record."""
    def gone():
        return all(s.disconnected_at is not None and not s.sio.connected for s in sockets)
    wait_until(gone, max(0.0, answered_at + REVOCATION_DEADLINE - time.monotonic()),
               f"{what}: every socket of the login disconnected within {REVOCATION_DEADLINE}s", interval=0.01)
    taken = [round(s.disconnected_at - answered_at, 3) for s in sockets]
    print(f"\n{what}: sockets disconnected {taken} s after auth's answer")
    assert [s.ended for s in sockets] == [[{"reason": reason}]] * len(sockets)
    return taken


def test_logout_ends_that_logins_sockets_on_both_notifiers_and_no_other_login(api, stack):
    user = api.new_user()
    other_login = user.another_login()
    notifiers = [n.url for n in stack.notifiers]
    with sockets_of(user, notifiers) as mine, sockets_of(other_login, notifiers) as others:
        r = user.logout()
        answered_at = time.monotonic()
        assert r.status_code == 204
        ended_within_deadline(mine, answered_at, "logged_out", "logout")
        rep = other_login.create({"rows": 20, "columns": 2, "seed": 3})
        for sock in others:  # the user's other login is untouched and still hears its events
            sock.wait_event("report.succeeded", rep["id"], 60)
            assert sock.sio.connected and sock.ended == []
        assert [s.of_report(rep["id"]) for s in mine] == [[], []], "an ended socket heard a later event"


def test_refresh_token_reuse_ends_the_logins_sockets_on_both_notifiers(api, stack):
    user = api.new_user()
    stolen = user.tokens["refresh_token"]
    with sockets_of(user, [n.url for n in stack.notifiers]) as sockets:
        assert user.refresh().status_code == 200
        assert all(s.sio.connected for s in sockets), "a refresh alone ends nothing"
        r = user.refresh(stolen)  # the same refresh token again: someone else has it
        answered_at = time.monotonic()
        assert r.status_code == 401
        ended_within_deadline(sockets, answered_at, "revoked", "refresh-token reuse")


def test_a_revocation_missed_while_unsubscribed_is_found_in_the_deny_list_on_resubscribing(api, stack):
    """What a notifier whose subscription was down when auth published is left with: the login on the deny-list,
    no message. Dropping the notifiers' subscriptions makes them subscribe again, look, and end the sockets."""
    user = api.new_user()
    redis = Redis.from_url(stack.infra.redis.url)
    login = jwt.decode(user.token, options={"verify_signature": False})["sid"]
    with sockets_of(user, [n.url for n in stack.notifiers]) as sockets:
        redis.set(revoked_sid_key(login), 1, ex=600)  # revoked, the message missed
        for client in redis.client_list():
            if client.get("name") == "reportflow-notifier-subscriber":
                redis.client_kill_filter(_id=int(client["id"]))
        wait_until(lambda: all(s.disconnected_at for s in sockets), 15, "the sockets of the revoked login to end")
        assert [s.ended for s in sockets] == [[{"reason": "revoked"}]] * 2
    redis.close()


@pytest.fixture(scope="module")
def short_lived(infra):
    """Auth issuing access tokens of SHORT_TTL seconds, and two notifiers that trust it."""
    started = [start_auth(infra, ACCESS_TOKEN_TTL_SECONDS=str(SHORT_TTL))]
    try:
        jwks = started[0].url + "/.well-known/jwks.json"
        for _ in range(2):
            started.append(start_notifier(infra, jwks))
        yield Api(started[0].url, ""), [n.url for n in started[1:]]
    finally:
        for process in reversed(started):
            process.stop()


def expiry(token: str) -> float:
    """The token's `exp` on the monotonic clock (the tests' clock), from its claims."""
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    return time.monotonic() + exp - time.time()


def wait_past(moment: float, what: str) -> None:
    """Wait until the monotonic clock passes `moment` (a point in a token's life)."""
    wait_until(lambda: time.monotonic() > moment, max(0.0, moment - time.monotonic()) + 5, what)


def all_expire(sockets: list[SocketClient]) -> None:
    """Wait for every socket to be ended by the server with reason `expired`."""
    wait_until(lambda: all(s.disconnected_at for s in sockets), SHORT_TTL + 15, "the sockets' tokens to expire")
    assert [s.ended for s in sockets] == [[{"reason": "expired"}]] * len(sockets)


def test_a_socket_ends_with_expired_when_its_token_expires(short_lived):
    api, notifiers = short_lived
    user = api.new_user()
    ends = expiry(user.token)
    with sockets_of(user, notifiers) as sockets:
        all_expire(sockets)
        assert all(s.disconnected_at >= ends - 0.05 for s in sockets), "ended before its token expired"
        print(f"\nexpiry: sockets ended {[round(s.disconnected_at - ends, 3) for s in sockets]} s after exp")


def test_a_fresh_token_sent_with_auth_refresh_keeps_the_socket_past_the_old_expiry(short_lived):
    api, notifiers = short_lived
    user = api.new_user()
    first_ends = expiry(user.token)
    with sockets_of(user, notifiers) as sockets:
        wait_past(first_ends - SHORT_TTL / 2, "half the token's life")
        assert user.refresh().status_code == 200  # as the page does before expiry
        acks = [s.refresh(user.token) for s in sockets]
        assert all(ack["ok"] is True and isinstance(ack["expires_at"], int) for ack in acks), acks
        wait_past(first_ends + 1.0, "the first token's expiry")
        assert all(s.sio.connected and s.ended == [] for s in sockets), "ended at the old token's expiry"
        all_expire(sockets)  # the new token's expiry is kept as strictly as the first one's


def test_auth_refresh_with_another_users_or_a_bad_token_is_refused_and_changes_nothing(short_lived):
    api, notifiers = short_lived
    alice = api.new_user()
    alice_ends = expiry(alice.token)
    with sockets_of(alice, notifiers[:1]) as (sock,):
        wait_past(alice_ends - SHORT_TTL / 2, "half the token's life")
        bob = api.new_user()  # a later, longer-lived token, but bob's
        refused = {"bob's": sock.refresh(bob.token), "a refresh token": sock.refresh(alice.tokens["refresh_token"]),
                   "garbage": sock.refresh("not-a-jwt"), "none": sock.refresh(None)}
        statuses = {what: (ack["ok"], ack["problem"]["status"], ack["problem"]["code"])
                    for what, ack in refused.items()}
        assert statuses == {"bob's": (False, 403, "forbidden"), "a refresh token": (False, 401, "unauthorized"),
                            "garbage": (False, 401, "unauthorized"), "none": (False, 401, "unauthorized")}
        assert sock.sio.call("auth.refresh", "not an object", timeout=10)["ok"] is False
        # nothing changed: the socket still ends at alice's token's expiry, not bob's
        all_expire([sock])
        assert sock.disconnected_at < expiry(bob.token) - 0.5
