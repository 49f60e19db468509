"""Per-connection ordering: each socket gets every event of its user once, in `seq` order.

Live events arrive through the Socket.IO Redis queue; a reconnecting socket also gets a replay from the
event log. While a socket's replay runs, its live events wait in a buffer; afterwards anything at or
below the last delivered `seq` is dropped. This is what makes "no duplicates" hold across the hand-over.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import socketio

from reportflow_common.contracts import REPORT_EVENTS, SOCKETIO_CHANNEL


@dataclass
class _Cursor:
    last_seq: int
    buffer: list | None = field(default_factory=list)  # None once the replay is over


class DeliveryGate:
    def __init__(self):
        self._lock = threading.Lock()
        self._cursors: dict[str, _Cursor] = {}

    def open(self, sid: str, last_seq: int) -> None:
        """A new socket; live events are buffered until `finish_replay`."""
        with self._lock:
            self._cursors[sid] = _Cursor(last_seq)

    def close(self, sid: str) -> None:
        with self._lock:
            self._cursors.pop(sid, None)

    def admit_live(self, sid: str, event: str, payload: dict) -> bool:
        """True when a live event should be sent now; buffered or duplicate events return False."""
        with self._lock:
            cursor = self._cursors.get(sid)
            if cursor is None:
                return False
            if cursor.buffer is not None:
                cursor.buffer.append((event, payload))
                return False
            return self._advance(cursor, payload)

    def replay(self, sid: str, events: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
        """The replayed events plus whatever arrived live meanwhile, in order, without repeats."""
        with self._lock:
            cursor = self._cursors.get(sid)
            if cursor is None:
                return []
            pending, cursor.buffer = (cursor.buffer or []), None
            merged = sorted(events + pending, key=lambda e: e[1]["seq"])
            return [(event, payload) for event, payload in merged if self._advance(cursor, payload)]

    @staticmethod
    def _advance(cursor: _Cursor, payload: dict) -> bool:
        seq = payload.get("seq")
        if not isinstance(seq, int) or seq <= cursor.last_seq:
            return False
        cursor.last_seq = seq
        return True


class SequencedRedisManager(socketio.RedisManager):
    """The Socket.IO Redis adapter, with report events to a user room passed through the gate per socket."""

    def __init__(self, url: str, gate: DeliveryGate, **kwargs):
        super().__init__(url, channel=SOCKETIO_CHANNEL, **kwargs)
        self.gate = gate
        self.on_received = lambda event, payload: None  # once per event this process reads from the queue
        self.on_delivered = lambda event, payload: None  # once per socket it is sent to

    def _handle_emit(self, message):
        event, room, data = message.get("event"), message.get("room"), message.get("data")
        if event not in REPORT_EVENTS or not isinstance(room, str) or not isinstance(data, list) or not data \
                or not isinstance(data[0], dict):
            return super()._handle_emit(message)
        namespace, payload = message.get("namespace") or "/", data[0]
        self.on_received(event, payload)
        for sid, _eio_sid in list(self.get_participants(namespace, room)):
            if self.gate.admit_live(sid, event, payload):
                socketio.Manager.emit(self, event, payload, namespace=namespace, room=sid)
                self.on_delivered(event, payload)
