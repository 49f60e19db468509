"""Which login each of this process's sockets belongs to, and until when its access token is good.

A socket lives only as long as its login: a revocation of the login (or of its token) ends it, and so does
its token's expiry unless the client sent a fresh token of the same user first (`auth.refresh`).
"""
from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SocketLogin:
    user_id: str
    login: str | None  # the token's `sid`: one per sign-in, shared by every token that login is refreshed to
    jti: str
    expires_at: float

    @classmethod
    def of(cls, claims: dict) -> SocketLogin:
        return cls(claims["sub"], claims.get("sid"), claims["jti"], float(claims["exp"]))

    def claims(self) -> dict:
        """What the deny-list check (`tokens.is_revoked`) reads."""
        return {"jti": self.jti, "sid": self.login}


class OpenSockets:
    def __init__(self):
        self._lock = threading.Lock()
        self._logins: dict[str, SocketLogin] = {}
        self._expiries: list[tuple[float, str]] = []  # a heap; entries of renewed or closed sockets go stale

    def add(self, sid: str, claims: dict) -> None:
        with self._lock:
            self._set(sid, SocketLogin.of(claims))

    def renew(self, sid: str, claims: dict) -> bool:
        """Take a fresh token for `sid`; False (and nothing changes) if it is another user's or `sid` is gone."""
        with self._lock:
            current = self._logins.get(sid)
            if current is None or current.user_id != claims["sub"]:
                return False
            self._set(sid, SocketLogin.of(claims))
            return True

    def _set(self, sid: str, login: SocketLogin) -> None:
        self._logins[sid] = login
        heapq.heappush(self._expiries, (login.expires_at, sid))

    def forget(self, sid: str) -> SocketLogin | None:
        """Take `sid` out; what it was, or None if it was already out (so a socket is ended once)."""
        with self._lock:
            return self._logins.pop(sid, None)

    def revoked(self, login: str | None, jti: str | None) -> list[str]:
        """The sockets of a revoked login, or of the one revoked token."""
        with self._lock:
            return [sid for sid, s in self._logins.items() if (login and s.login == login) or (jti and s.jti == jti)]

    def expired(self, now: float) -> list[str]:
        """The sockets whose token has expired by `now`."""
        out = []
        with self._lock:
            while self._expiries and self._expiries[0][0] <= now:
                at, sid = heapq.heappop(self._expiries)
                current = self._logins.get(sid)
                if current is not None and current.expires_at == at:
                    out.append(sid)
        return out

    def all(self) -> list[tuple[str, SocketLogin]]:
        with self._lock:
            return list(self._logins.items())
