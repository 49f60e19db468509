"""Per-connection ordering: each socket gets every event of its user once, in `seq` order, without gaps.

Live events arrive on the project's Redis channel (`LiveDelivery`); a socket also gets a replay from the event
log when it connects and whenever it has fallen behind. While a socket's replay runs, its live events wait in a buffer.
A socket's cursor is (epoch, last seq sent):
- an event at or below the cursor is a duplicate and is dropped;
- the next seq is sent;
- a gap (a live event was lost, e.g. while the notifier's subscription to Redis was down) puts the socket
  back into buffering and asks for a catch-up replay from the log;
- an event of another epoch (Redis lost its data and numbering started again) is preceded by one
  `events.reset` for that epoch, so nothing is dropped as an old seq.
`StalledSockets` finds sockets behind the log with no live event coming (the last events were lost).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import NamedTuple

from reportflow_common.contracts import EVENT_RESET, REPORT_EVENTS
from reportflow_common.events import read_live_message


class Admission(NamedTuple):
    deliver: list  # (event, payload) to send now, in order
    catch_up: bool  # the socket is missing events: replay from the log (then it is buffering meanwhile)


@dataclass(slots=True)
class _Cursor:
    user_id: str | None
    epoch: str | None
    last_seq: int
    buffer: list | None = field(default_factory=list)  # None while not buffering


class DeliveryGate:
    def __init__(self):
        self._lock = threading.Lock()
        self._cursors: dict[str, _Cursor] = {}
        self._by_user: dict[str, set[str]] = {}

    def open(self, sid: str, last_seq: int, epoch: str | None = None, user_id: str | None = None) -> None:
        """A new socket at (epoch, last_seq); live events are buffered until `replay`."""
        with self._lock:
            self._cursors[sid] = _Cursor(user_id, epoch, last_seq)
            self._by_user.setdefault(user_id, set()).add(sid)

    def close(self, sid: str) -> None:
        with self._lock:
            cursor = self._cursors.pop(sid, None)
            sids = self._by_user.get(cursor.user_id) if cursor is not None else None
            if sids is not None:
                sids.discard(sid)
                if not sids:
                    del self._by_user[cursor.user_id]

    def admit_live(self, sid: str, event: str, payload: dict) -> Admission:
        """What to send `sid` for a live event now (nothing while its replay runs or for a duplicate)."""
        with self._lock:
            cursor = self._cursors.get(sid)
            if cursor is None:
                return Admission([], False)
            if cursor.buffer is not None:
                cursor.buffer.append((event, payload))
                return Admission([], False)
            out: list = []
            return Admission(out, not self._accept(cursor, event, payload, out))

    def begin_catch_up(self, sid: str) -> bool:
        """Put `sid` into buffering for a catch-up replay; False when it is gone or already buffering (a
        replay is on its way)."""
        with self._lock:
            cursor = self._cursors.get(sid)
            if cursor is None or cursor.buffer is not None:
                return False
            cursor.buffer = []
            return True

    def point(self, sid: str) -> tuple[str | None, str | None, int] | None:
        """(user_id, epoch, last_seq) of what `sid` was sent so far, or None when it is gone."""
        with self._lock:
            cursor = self._cursors.get(sid)
            return None if cursor is None else (cursor.user_id, cursor.epoch, cursor.last_seq)

    def replay(self, sid: str, events: list[tuple[str, dict]], reset: dict | None = None,
               tolerate_gaps: bool = False) -> Admission:
        """The end of a replay: `reset` (if the client's point could not be replayed), the replayed events,
        then whatever arrived live meanwhile, in order and without repeats. A gap left even so keeps the
        socket buffering and asks for another catch-up, unless `tolerate_gaps`."""
        with self._lock:
            cursor = self._cursors.get(sid)
            if cursor is None:
                return Admission([], False)
            pending, cursor.buffer = (cursor.buffer or []), None
            out: list = []
            if reset is not None:
                out.append((EVENT_RESET, reset))
                cursor.epoch, cursor.last_seq = reset["epoch"], reset["seq"]
            queue = list(events) + pending
            for i, (event, payload) in enumerate(queue):
                if not self._accept(cursor, event, payload, out, tolerate_gaps):
                    cursor.buffer.extend(queue[i + 1:])
                    return Admission(out, True)
            return Admission(out, False)

    def sids_of(self, user_id: str) -> list[str]:
        """This process's sockets of `user_id` (whose live events pass through here)."""
        with self._lock:
            return list(self._by_user.get(user_id, ()))

    def cursors(self) -> list[tuple[str, str, str | None, int]]:
        """(sid, user_id, epoch, last_seq) of the sockets not buffering."""
        with self._lock:
            return [(sid, c.user_id, c.epoch, c.last_seq) for sid, c in self._cursors.items()
                    if c.buffer is None and c.user_id is not None]

    @staticmethod
    def _accept(cursor: _Cursor, event: str, payload: dict, out: list, tolerate_gaps: bool = False) -> bool:
        """Add what `event` means for this socket to `out`; False on a gap (then it starts a buffer)."""
        seq, epoch = payload.get("seq"), payload.get("epoch")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return True
        if isinstance(epoch, str) and epoch != cursor.epoch:
            if cursor.epoch is not None:  # numbering started again: say so, then follow the new epoch
                out.append((EVENT_RESET, {"epoch": epoch, "seq": 0}))
                cursor.last_seq = 0
            cursor.epoch = epoch
        if seq <= cursor.last_seq:
            return True
        if seq > cursor.last_seq + 1 and not tolerate_gaps:
            cursor.buffer = [(event, payload)]
            return False
        out.append((event, payload))
        cursor.last_seq = seq
        return True


class StalledSockets:
    """Sockets whose user's log is ahead of (or apart from) what they were sent, at two looks in a row with
    the socket not moving in between: their live events were lost, and only a catch-up brings them."""

    def __init__(self):
        self._previous: dict[str, tuple[str | None, int]] = {}

    def find(self, cursors: list[tuple[str, str, str | None, int]],
             positions: dict[str, tuple[str | None, int]]) -> list[str]:
        stalled, behind = [], {}
        for sid, user_id, epoch, last_seq in cursors:
            server_epoch, server_seq = positions.get(user_id, (epoch, last_seq))
            if (server_epoch, server_seq) == (epoch, last_seq) or (server_epoch is None and last_seq == 0):
                continue
            behind[sid] = (epoch, last_seq)
            if self._previous.get(sid) == (epoch, last_seq):
                stalled.append(sid)
        self._previous = behind
        return stalled


class LiveDelivery:
    """Sends each live event (read from EVENTS_CHANNEL) to this process's sockets of its user, through the gate."""

    def __init__(self, gate: DeliveryGate, send):
        self.gate, self.send = gate, send  # send(sid, event, payload): emit to one local socket
        self.on_received = lambda event, payload: None  # once per event this process reads from the channel
        self.on_delivered = lambda event, payload: None  # once per socket it is sent to
        self.on_gap = lambda sid: None  # a socket missed events: replay from the log

    def __call__(self, raw) -> None:
        message = read_live_message(raw)
        if message is None or message[1] not in REPORT_EVENTS:
            return
        user_id, event, payload = message
        self.on_received(event, payload)
        for sid in self.gate.sids_of(user_id):
            admission = self.gate.admit_live(sid, event, payload)
            for name, body in admission.deliver:
                self.send(sid, name, body)
                self.on_delivered(name, body)
            if admission.catch_up:
                self.on_gap(sid)
