"""The fault suite's users: they submit reports over HTTP (retrying with the same Idempotency-Key through
outages, as a careful client does) and follow them over Socket.IO with a client that reconnects to any
notifier with its (epoch, last_seq), and reloads its list over HTTP on `events.reset` (as the demo page does).

Everything they see is recorded, so that a scenario can check it against the database: per connection,
events in sequence with no gap and no repeat; per user, a known final state for every report that equals the
database's; every HTTP answer either a success or a problem+json 503 (never another 5xx).
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import requests
import socketio

from reportflow_common.contracts import EVENT_RESET, FINISHED_STATUSES, REPORT_EVENTS, RUNNING, TERMINAL_EVENTS
from support.waiting import wait_until

EVENT_STATUS = {event: status for status, event in TERMINAL_EVENTS.items()}


class Http:
    """requests with every answer's status recorded; a connection error counts as no answer."""

    def __init__(self, stack):
        self.stack, self.session = stack, requests.Session()
        self.statuses: Counter = Counter()
        self.bad: list[str] = []
        self._lock = threading.Lock()

    def call(self, method: str, url: str, **kwargs) -> requests.Response | None:
        try:
            r = self.session.request(method, url, timeout=kwargs.pop("timeout", 15), **kwargs)
        except requests.RequestException:
            with self._lock:
                self.statuses["no answer"] += 1
            return None
        with self._lock:
            self.statuses[r.status_code] += 1
            if r.status_code >= 500 and not (r.status_code == 503 and
                                              r.headers.get("Content-Type", "").startswith("application/problem+json")
                                              and r.json().get("code") == "unavailable"):
                self.bad.append(f"{method} {url} -> {r.status_code} {r.text[:200]}")
        return r


@dataclass
class Person:
    http: Http
    email: str
    password: str
    id: str = ""
    token: str = ""

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def submit(self, key: str, params: dict, deadline: float) -> str:
        """POST until accepted (same Idempotency-Key each time): the report's id."""
        while time.monotonic() < deadline:
            r = self.http.call("POST", f"{self.http.stack.reports_url}/v1/reports", headers={
                **self.headers(), "Idempotency-Key": key}, json={"type": "demo", "params": params})
            if r is not None and r.status_code in (200, 202):
                return r.json()["id"]
            assert r is None or r.status_code == 503, r.text
            threading.Event().wait(0.5)
        raise AssertionError(f"report {key} was never accepted")

    def statuses(self, deadline_seconds: float = 60) -> dict[str, str]:
        """GET /v1/reports until it answers: {report id: status}."""
        def listed():
            r = self.http.call("GET", f"{self.http.stack.reports_url}/v1/reports?limit=100", headers=self.headers())
            return r is not None and r.status_code == 200 and {i["id"]: i["status"] for i in r.json()["items"]}
        return wait_until(listed, deadline_seconds, "the report list", interval=0.5)


def new_person(http: Http) -> Person:
    email = f"faults-{uuid.uuid4().hex[:12]}@example.com"
    person = Person(http, email, "correct horse battery")
    auth = http.stack.auth_url
    r = http.call("POST", f"{auth}/v1/auth/register", json={"email": email, "password": person.password})
    assert r is not None and r.status_code == 201, r
    person.id = r.json()["id"]
    r = http.call("POST", f"{auth}/v1/auth/login", json={"email": email, "password": person.password})
    person.token = r.json()["access_token"]
    return person


@dataclass
class Connection:
    url: str
    auth: dict
    events: list = field(default_factory=list)


class FollowingClient:
    """One person's Socket.IO client, connected to some notifier at all times it can be."""

    def __init__(self, person: Person, notifier_urls, first: int = 0):
        self.person, self.notifier_urls, self.next = person, notifier_urls, first
        self.epoch: str | None = None
        self.last_seq = 0
        self.connections: list[Connection] = []
        self.problems: list[str] = []
        self.known: dict[str, str] = {}  # report id -> status, from events and reloads
        self.terminal_events: Counter = Counter()
        self.resets = 0
        self.failed_connects = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sio: socketio.Client | None = None
        self._thread = threading.Thread(target=self._run, name=f"client-{person.email}", daemon=True)

    def start(self) -> FollowingClient:
        self._thread.start()
        wait_until(lambda: self.connections, 30, "the first connection")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sio is not None and self._sio.connected:
            self._sio.disconnect()
        self._thread.join(20)

    def _run(self) -> None:
        while not self._stop.is_set():
            urls = self.notifier_urls()
            url = urls[self.next % len(urls)]
            sio = socketio.Client(reconnection=False)
            with self._lock:
                auth = {"token": self.person.token, "last_seq": self.last_seq}
                if self.epoch is not None:
                    auth["epoch"] = self.epoch
            connection = Connection(url, dict(auth))
            for name in (*REPORT_EVENTS, EVENT_RESET):
                sio.on(name, self._handler(name, connection))
            try:
                sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=10)
            except Exception:
                self.failed_connects += 1
                self.next += 1  # fail over to the next notifier
                self._stop.wait(0.5)
                continue
            self._sio = sio
            self.connections.append(connection)
            sio.wait()  # until the connection ends
            self._stop.wait(0.2)

    def _handler(self, name: str, connection: Connection):
        def handle(payload):
            reload = False
            with self._lock:
                connection.events.append((name, payload))
                if name == EVENT_RESET:
                    self.epoch, self.last_seq, self.resets = payload["epoch"], payload["seq"], self.resets + 1
                    reload = True
                else:
                    self._follow(name, payload)
            if reload:  # as the demo page does: what was missed is read over HTTP
                listed = self.person.statuses()
                with self._lock:
                    self.known.update(listed)
        return handle

    def _follow(self, name: str, payload: dict) -> None:
        seq, epoch = payload["seq"], payload.get("epoch")
        if self.epoch is not None and epoch != self.epoch:
            self.problems.append(f"{name} #{seq} of epoch {epoch} without a reset (was {self.epoch})")
        elif seq != self.last_seq + 1:
            kind = "repeated" if seq <= self.last_seq else "missed events before"
            self.problems.append(f"{kind} {name} #{seq} (last was #{self.last_seq})")
        self.epoch, self.last_seq = epoch, max(seq, self.last_seq)
        report_id = payload["report_id"]
        if name in EVENT_STATUS:
            self.terminal_events[(epoch, report_id)] += 1
            self.known[report_id] = EVENT_STATUS[name]
        elif self.known.get(report_id) not in FINISHED_STATUSES:
            self.known[report_id] = RUNNING

    def knows(self, expected: dict[str, str]) -> bool:
        with self._lock:
            return all(self.known.get(report_id) == status for report_id, status in expected.items())
