"""Clients as a user's program would use them: HTTP with requests, Socket.IO with python-socketio."""
from __future__ import annotations

import threading
import time
import uuid

import requests
import socketio

from .waiting import wait_until


class Api:
    def __init__(self, auth_url: str, reports_url: str):
        self.auth_url, self.reports_url = auth_url, reports_url
        self.http = requests.Session()

    def register(self, email: str | None = None, password: str = "correct horse battery") -> tuple[str, str]:
        email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
        r = self.http.post(f"{self.auth_url}/v1/auth/register", json={"email": email, "password": password})
        assert r.status_code == 201, r.text
        return email, password

    def login(self, email: str, password: str) -> dict:
        r = self.http.post(f"{self.auth_url}/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return r.json()

    def new_user(self) -> User:
        email, password = self.register()
        return User(self, email, password, self.login(email, password))


class User:
    def __init__(self, api: Api, email: str, password: str, tokens: dict):
        self.api, self.email, self.password, self.tokens = api, email, password, tokens

    @property
    def token(self) -> str:
        return self.tokens["access_token"]

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.api.http.request(method, self.api.reports_url + path, headers=headers, **kwargs)

    def create(self, params: dict | None = None, report_type: str = "demo", **kwargs) -> dict:
        r = self.request("POST", "/v1/reports", json={"type": report_type, "params": params or {}}, **kwargs)
        assert r.status_code in (200, 202), r.text
        return r.json()

    def get(self, report_id: str) -> dict:
        r = self.request("GET", f"/v1/reports/{report_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_status(self, report_id: str, statuses: tuple[str, ...], timeout: float = 60) -> dict:
        return wait_until(lambda: (rep := self.get(report_id))["status"] in statuses and rep, timeout,
                          f"report {report_id} to reach {statuses}")

    def me(self) -> dict:
        return self.api.http.get(f"{self.api.auth_url}/v1/auth/me", headers=self.headers).json()

    def logout(self) -> requests.Response:
        return self.api.http.post(f"{self.api.auth_url}/v1/auth/logout", headers=self.headers)

    def refresh(self, refresh_token: str | None = None) -> requests.Response:
        """POST /v1/auth/refresh with `refresh_token` (default: this login's current one); keeps a new pair."""
        r = self.api.http.post(f"{self.api.auth_url}/v1/auth/refresh",
                               headers={"Authorization": f"Bearer {refresh_token or self.tokens['refresh_token']}"})
        if r.status_code == 200:
            self.tokens = r.json()
        return r

    def another_login(self) -> User:
        """The same user signed in a second time (another login: its own `sid`)."""
        return User(self.api, self.email, self.password, self.api.login(self.email, self.password))


class SocketClient:
    """Records every event received, and lets a test wait for the ones it expects."""

    EVENTS = ("report.progress", "report.succeeded", "report.failed", "report.cancelled")

    def __init__(self, url: str, token: str | None, last_seq: int | None = None, transports=("websocket",),
                 headers: dict | None = None, origin: str | None = None):
        """`origin`: the page's origin, sent as a browser does (the WebSocket client otherwise adds one of its
        own, and two Origin headers reach the server joined into one that matches nothing)."""
        self.url, self.token, self.last_seq, self.transports = url, token, last_seq, list(transports)
        self.headers = {**(headers or {}), **({"Origin": origin} if origin else {})}
        self.events: list[tuple[str, dict]] = []
        self.errors: list = []
        self.ended: list[dict] = []  # session.ended payloads
        self.disconnected_at: float | None = None  # time.monotonic() when the connection went
        self._cond = threading.Condition()
        self.sio = socketio.Client(reconnection=False,
                                   websocket_extra_options={"suppress_origin": True} if origin else {})
        for name in self.EVENTS:
            self.sio.on(name, self._recorder(name))
        self.sio.on("connect_error", lambda data: self.errors.append(data))
        self.sio.on("session.ended", lambda payload: self.ended.append(payload))
        self.sio.on("disconnect", self._disconnected)

    def _disconnected(self, *_reason) -> None:
        self.disconnected_at = time.monotonic()

    def _recorder(self, name: str):
        def record(payload):
            with self._cond:
                self.events.append((name, payload))
                self._cond.notify_all()
        return record

    def connect(self) -> SocketClient:
        auth = {} if self.token is None else {"token": self.token}
        if self.last_seq is not None:
            auth["last_seq"] = self.last_seq
        self.sio.connect(self.url, auth=auth, transports=self.transports, headers=self.headers, wait_timeout=10)
        return self

    def disconnect(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()

    def refresh(self, token, timeout: float = 10) -> dict:
        """Send `auth.refresh` with `token` (as given: tests send garbage too); the server's ack."""
        return self.sio.call("auth.refresh", {"token": token}, timeout=timeout)

    def wait_for(self, predicate, timeout: float = 60, what: str = "event") -> tuple[str, dict]:
        with self._cond:
            ok = self._cond.wait_for(lambda: next((e for e in self.events if predicate(*e)), None), timeout)
            if not ok:
                raise AssertionError(f"timed out waiting for {what}; got {self.events}")
            return ok

    def wait_event(self, name: str, report_id: str, timeout: float = 60) -> dict:
        """The payload of the first `name` event of `report_id` (waiting for it if it has not come yet)."""
        return self.wait_for(lambda n, p: n == name and p["report_id"] == report_id, timeout,
                             f"{name} of {report_id}")[1]

    def of_report(self, report_id: str) -> list[tuple[str, dict]]:
        return [e for e in self.events if e[1].get("report_id") == report_id]

    def seqs(self) -> list[int]:
        return [p["seq"] for _n, p in self.events]
