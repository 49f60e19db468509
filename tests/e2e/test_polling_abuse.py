"""Long-polling cannot be abused: every request to /socket.io is answered in bounded time, as problem+json
when refused, and no parked request outlives its socket (python-engineio 4.15.1 parks rejected POSTs
forever; see reportflow_notifier.polling_guard)."""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import socketio

from support.clients import SocketClient
from support.rawhttp import raw_request
from support.waiting import wait_until

PROBLEM_JSON = "application/problem+json"
# POST bodies engine.io refuses on a fresh session; before the guard none of these was ever answered
REFUSED_BODIES = {
    "noop packet": ("6", 400),
    "ping packet": ("2", 400),
    "unknown packet type": ("9hello", 400),
    "over max_http_buffer_size": ("4" + "x" * 20_000, 413),
    "not UTF-8": (b"4\xff\xfe", 400),
    "17 packets": ("\x1e".join(["3"] * 17), 400),
    "binary packet not base64": ("b!!", 400),
}


def _polling(url: str, sid: str | None = None) -> str:
    return f"{url}/socket.io/?EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")


def handshake(http: requests.Session, url: str) -> str:
    r = http.get(_polling(url), timeout=10)
    assert r.status_code == 200, r.text
    return json.loads(r.text[1:])["sid"]  # "0{...}": the OPEN packet


def assert_problem(r: requests.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:200])
    assert r.headers["Content-Type"] == PROBLEM_JSON, r.headers
    body = r.json()
    assert body["status"] == status and body["code"] and body["detail"], body
    assert r.headers["X-Request-ID"]
    return body


def test_every_refused_post_is_answered_at_once(stack):
    url = stack.notifiers[0].url
    with requests.Session() as http:
        for name, (body, status) in REFUSED_BODIES.items():
            sid = handshake(http, url)
            r = http.post(_polling(url, sid), data=body, timeout=5,
                          headers={"Content-Type": "text/plain;charset=UTF-8"})
            assert_problem(r, status), name


def test_a_thousand_refused_polls_leave_the_notifier_serving(api, stack):
    """The issue's attack: ~1,000 such requests used to take every connection of the web process."""
    url = stack.notifiers[0].url
    bodies = list(REFUSED_BODIES.values())
    user = api.new_user()

    def login(timeout: float) -> requests.Response:
        return requests.post(f"{stack.auth_url}/v1/auth/login", json={"email": user.email, "password": user.password},
                             timeout=timeout)
    # A login hashes with argon2id in the auth process: on a loaded 2-core machine it alone can take a second,
    # so its bound is a second beyond what it took just before the attack (a parked notifier never answers).
    started = time.monotonic()
    assert login(10).status_code == 200
    login_bound = 1 + 3 * (time.monotonic() - started)

    def abuse(i: int) -> tuple[int, str]:
        body, _status = bodies[i % len(bodies)]
        with requests.Session() as http:
            r = http.post(_polling(url, handshake(http, url)), data=body, timeout=10)
            return r.status_code, r.headers.get("Content-Type")

    with ThreadPoolExecutor(8) as pool:
        answers = Counter(pool.map(abuse, range(1000)))
    assert set(answers) <= {(400, PROBLEM_JSON), (413, PROBLEM_JSON)}, answers
    assert sum(answers.values()) == 1000

    # and the notifier is as responsive as before: health, a login, a real socket, each within a second
    assert requests.get(url + "/healthz", timeout=1).status_code == 200
    r = login(login_bound)
    assert r.status_code == 200
    for transport in ("websocket", "polling"):
        sock = SocketClient(url, r.json()["access_token"], transports=(transport,))
        sock.sio.connect(url, auth={"token": sock.token}, transports=[transport], wait_timeout=1)
        try:
            assert sock.sio.connected and sock.sio.transport() == transport
        finally:
            sock.disconnect()


def test_a_message_after_the_clients_close_packet_is_a_problem_not_a_500(stack):
    url = stack.notifiers[1].url
    with requests.Session() as http:
        sid = handshake(http, url)
        closed = http.post(_polling(url, sid), data="1", timeout=5)  # the client's own CLOSE packet
        assert closed.status_code == 200
        after = http.post(_polling(url, sid), data='40{"token": "x"}', timeout=5)
        assert_problem(after, 400)
        assert_problem(http.get(_polling(url, sid), timeout=5), 400)
    assert "Session is disconnected" not in stack.notifiers[1].output()


def test_one_pending_poll_per_session_and_none_outlives_its_socket(stack):
    url = stack.notifiers[0].url
    http = requests.Session()
    sid = handshake(http, url)
    first: dict = {}

    def park():  # nothing to deliver yet: engine.io holds this poll open
        first["response"] = requests.get(_polling(url, sid), timeout=30)

    parked = threading.Thread(target=park)
    parked.start()
    # once the first poll is parked, a second one on the same session is refused at once (a second that
    # arrived first would itself park: then it is the one pending and the next attempt is refused)
    wait_until(lambda: requests.get(_polling(url, sid), timeout=2).status_code == 400, 20,
               "an overlapping poll to be refused")
    http.post(_polling(url, sid), data="1", timeout=5)  # the socket closes: its parked poll ends with it
    parked.join(10)
    assert not parked.is_alive(), "the parked poll outlived its socket"
    assert first["response"].status_code in (200, 400)


def test_a_body_that_never_arrives_is_answered_408(stack):
    url = stack.notifiers[1].url
    with requests.Session() as http:
        sid = handshake(http, url)
    path = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n"
            "\r\n4hel").encode()  # 4 bytes of the 100 promised, then silence
    r = raw_request(url, head, timeout=30)
    assert r.status == 408 and r.headers["content-type"] == PROBLEM_JSON
    assert r.json()["code"] == "request_timeout"


def test_engine_io_refusals_are_problems_too(stack):
    url = stack.notifiers[0].url
    unknown = requests.get(_polling(url, "no-such-session"), timeout=5)
    assert_problem(unknown, 400)
    old_protocol = requests.get(f"{url}/socket.io/?EIO=3&transport=polling", timeout=5)
    assert_problem(old_protocol, 400)
    wrong_method = requests.put(_polling(url), timeout=5)
    assert_problem(wrong_method, 405)
    jsonp = requests.get(_polling(url, "x") + "&j=0", timeout=5)
    assert_problem(jsonp, 400)


def test_a_polling_client_still_gets_its_events(api, stack):
    user = api.new_user()
    sock = SocketClient(stack.notifiers[1].url, user.token, transports=("polling",)).connect()
    try:
        assert sock.sio.transport() == "polling"
        rep = user.create({"rows": 50, "columns": 2, "seed": 12})
        sock.wait_event("report.succeeded", rep["id"], 60)
    finally:
        sock.disconnect()


def test_a_refused_socket_over_polling_is_still_refused_properly(stack):
    client = socketio.Client(reconnection=False)
    errors = []
    client.on("connect_error", errors.append)
    try:
        client.connect(stack.notifiers[0].url, auth={"token": "garbage"}, transports=["polling"], wait_timeout=5)
    except socketio.exceptions.ConnectionError:
        pass
    assert errors == [{"message": "unauthorized", "data": {"code": "unauthorized"}}]


def test_a_silent_websocket_upgrade_does_not_hold_its_connection(stack):
    """A client that opens the WebSocket upgrade of a polling session and never sends its probe: engine.io
    means to give up after ping interval + timeout (40 s) but misses simple-websocket's socket, so before
    the guard such a connection was held forever. Twenty at once are closed by the server in bounded time."""
    import websocket

    url = stack.notifiers[1].url
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket&sid="
    with requests.Session() as http:
        sids = [handshake(http, url) for _ in range(20)]
    sockets = [websocket.create_connection(ws_url + sid, timeout=90) for sid in sids]
    closed: list[str] = []

    def wait_closed(ws):
        try:
            while ws.recv():
                pass
        except websocket.WebSocketException:
            pass
        closed.append("closed")

    waiters = [threading.Thread(target=wait_closed, args=(ws,), daemon=True) for ws in sockets]
    for waiter in waiters:
        waiter.start()
    assert requests.get(url + "/healthz", timeout=1).status_code == 200  # meanwhile the notifier serves
    wait_until(lambda: len(closed) == len(sockets), 75, "the server to close every silent upgrade")


@pytest.mark.parametrize(("headers", "status"), [
    ({"Upgrade": "websocket", "Connection": "Upgrade"}, 426),  # no version, no key
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}, 400),  # no key
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "not base64!"}, 400),
    ({"Upgrade": "websocket", "Connection": "keep-alive", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 400),
])
def test_a_malformed_websocket_handshake_is_answered(stack, headers, status):
    """simple-websocket sends nothing back to a handshake it cannot parse: the guard answers instead."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    r = raw_request(stack.notifiers[0].url,
                    f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: localhost\r\n{head}\r\n".encode(),
                    timeout=10)
    assert r.status == status and r.headers["content-type"] == PROBLEM_JSON, r
    assert r.headers.get("x-request-id"), r  # answered in front of every other layer, with the request id too
