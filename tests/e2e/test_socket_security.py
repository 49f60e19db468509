"""A socket is accepted only with a valid access token, and only ever hears its own user's events."""
from __future__ import annotations

import pytest
import requests
import socketio

from support.clients import SocketClient
from support.stack import start_notifier
from support.waiting import wait_until

UNAUTHORIZED = [{"message": "unauthorized", "data": {"code": "unauthorized"}}]  # JS clients: err.data


def _refused(url: str, auth: dict | None, **kwargs) -> SocketClient:
    client = SocketClient(url, None, **kwargs)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=10, headers=kwargs.get("headers"))
    return client


@pytest.mark.parametrize("auth", [None, {}, {"token": ""}, {"token": "not-a-jwt"}, {"token": 42}])
def test_connection_without_a_valid_token_is_refused(stack, auth):
    client = _refused(stack.notifiers[0].url, auth)
    assert client.errors == UNAUTHORIZED


def test_refresh_token_and_revoked_token_are_refused(api, stack):
    user = api.new_user()
    assert _refused(stack.notifiers[0].url, {"token": user.tokens["refresh_token"]}).errors == UNAUTHORIZED
    r = requests.post(f"{stack.auth_url}/v1/auth/logout", headers=user.headers, timeout=10)
    assert r.status_code == 204
    assert _refused(stack.notifiers[1].url, {"token": user.token}).errors == UNAUTHORIZED


def test_notifier_keeps_serving_after_refusals(api, stack):
    for _ in range(5):
        _refused(stack.notifiers[0].url, {"token": "garbage"})
    user = api.new_user()
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    assert sock.sio.connected
    sock.disconnect()


def test_foreign_origin_is_refused(api, stack):
    user = api.new_user()
    client = SocketClient(stack.notifiers[0].url, user.token, origin="https://evil.example")
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect()


def test_a_client_cannot_join_another_users_room(api, stack):
    alice, bob = api.new_user(), api.new_user()
    bob_id = bob.me()["id"]
    spy = SocketClient(stack.notifiers[0].url, alice.token).connect()
    bob_sock = SocketClient(stack.notifiers[1].url, bob.token).connect()
    try:
        for event in ("join", "join_room", "enter_room", "subscribe", "message"):
            for room in (f"user:{bob_id}", bob_id):
                spy.sio.emit(event, {"room": room, "user_id": bob_id})
        rep = bob.create({"rows": 50, "columns": 2, "seed": 1})
        bob_sock.wait_event("report.succeeded", rep["id"], 60)
        # alice's own event afterwards proves her socket was live while bob's event went out
        mine = alice.create({"rows": 50, "columns": 2, "seed": 2})
        spy.wait_event("report.succeeded", mine["id"], 60)
        assert {p["report_id"] for _n, p in spy.events} == {mine["id"]}
    finally:
        spy.disconnect()
        bob_sock.disconnect()


def test_socket_io_responses_carry_the_request_id_too(stack):
    """Socket.IO's own HTTP answers (long-polling) bypass Flask; the request id still comes back."""
    r = requests.get(f"{stack.notifiers[0].url}/socket.io/?EIO=4&transport=polling",
                     headers={"X-Request-ID": "sio-check-1"}, timeout=10)
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "sio-check-1"
    generated = requests.get(f"{stack.notifiers[1].url}/socket.io/?EIO=4&transport=polling", timeout=10)
    assert len(generated.headers["X-Request-ID"]) == 32


def test_auth_refresh_cannot_move_a_socket_to_another_user(api, stack):
    """`auth.refresh` with bob's valid token is refused, and alice's socket goes on hearing alice alone."""
    alice, bob = api.new_user(), api.new_user()
    spy = SocketClient(stack.notifiers[0].url, alice.token).connect()
    try:
        ack = spy.refresh(bob.token)
        assert (ack["ok"], ack["problem"]["status"], ack["problem"]["code"]) == (False, 403, "forbidden")
        bobs = bob.create({"rows": 30, "columns": 2, "seed": 4})
        bob.wait_status(bobs["id"], ("succeeded",))
        mine = alice.create({"rows": 30, "columns": 2, "seed": 5})
        spy.wait_event("report.succeeded", mine["id"], 60)  # live all along, and still alice's
        assert {p["report_id"] for _n, p in spy.events} == {mine["id"]}
    finally:
        spy.disconnect()


@pytest.mark.parametrize("payload", [None, "token", 42, [], {"token": None}, {"token": "x" * 4000},
                                     {"token": "a.b.c"}])
def test_auth_refresh_with_garbage_is_refused_and_the_socket_stays(api, stack, payload):
    user = api.new_user()
    sock = SocketClient(stack.notifiers[1].url, user.token).connect()
    try:
        ack = sock.sio.call("auth.refresh", payload, timeout=10)
        assert ack["ok"] is False and ack["problem"]["code"] == "unauthorized"
        assert sock.sio.connected and sock.ended == []
    finally:
        sock.disconnect()


def test_auth_refresh_with_a_logged_out_token_ends_nothing_but_is_refused(api, stack):
    """A token of another login of the same user, logged out since, is refused; the socket's own login stays."""
    user = api.new_user()
    gone = user.another_login()
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    try:
        assert gone.logout().status_code == 204
        ack = sock.refresh(gone.token)
        assert (ack["ok"], ack["problem"]["status"]) == (False, 401)
        assert sock.sio.connected and sock.ended == []
        assert sock.refresh(user.token)["ok"] is True  # its own token is still good
    finally:
        sock.disconnect()


def test_a_logged_out_token_cannot_reconnect_after_its_socket_was_ended(api, stack):
    user = api.new_user()
    sock = SocketClient(stack.notifiers[1].url, user.token).connect()
    assert user.logout().status_code == 204
    wait_until(lambda: sock.disconnected_at, 10, "the socket to be ended")
    assert sock.ended == [{"reason": "logged_out"}]
    assert _refused(stack.notifiers[0].url, {"token": user.token}).errors == UNAUTHORIZED


@pytest.fixture(scope="module")
def proxied_notifier(stack):
    """A notifier as behind the gateway (TRUSTED_PROXY_HOPS=1), with the default same-origin policy."""
    notifier = start_notifier(stack.infra, stack.auth_url + "/.well-known/jwks.json", TRUSTED_PROXY_HOPS="1")
    try:
        yield notifier
    finally:
        notifier.stop()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_behind_a_tls_proxy_the_public_origin_is_its_own_and_others_are_refused(api, proxied_notifier, transport):
    """The proxy ends TLS and says so in X-Forwarded-Proto: a page served from https://<host> may open a socket
    (its Origin is the notifier's own), one from another site may not."""
    user = api.new_user()
    host = proxied_notifier.url.split("://", 1)[1]
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    own = SocketClient(proxied_notifier.url, user.token, transports=[transport],
                       headers=forwarded, origin=f"https://{host}").connect()
    assert own.sio.connected
    own.disconnect()
    foreign = SocketClient(proxied_notifier.url, user.token, transports=[transport],
                           headers=forwarded, origin="https://evil.example")
    with pytest.raises(socketio.exceptions.ConnectionError):
        foreign.connect()
