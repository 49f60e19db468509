"""IndexedRoomsManager: python-socketio's in-process client manager, with each socket's rooms indexed.

Why: python-socketio 5.18.1's `BaseManager.basic_disconnect` copies the namespace's whole room table and looks for
the leaving sid in every room, and `get_rooms` scans every room too. Every socket has a room of its own, so with
10,000 sockets each disconnect walks 10,001 rooms, and a mass disconnect (a load balancer dropping 5,000 clients)
is quadratic: it holds the notifier's one gevent loop for seconds, pings to the sockets still open go out late and
more of them drop (bench/README.md, "rooms"). This manager remembers, per sid, the rooms it entered besides the two
every sid is in (the namespace's `None` room and its own sid room, which it looks up directly), so a disconnect
and `get_rooms` cost O(that sid's rooms). The notifier enters no other rooms, so the index stays empty and costs
no memory per socket.

Everything else is the base class's: the rooms themselves stay in `self.rooms`; entering and leaving go through
`basic_enter_room` / `basic_leave_room` (and so does `basic_close_room`); a disconnect clears the sid's callbacks,
`pending_connect` and `pending_disconnect` exactly as the base does. One difference: `get_rooms` lists the sid's
own room first, then the others in the order the sid entered them (the base lists them in the order the rooms were
created; neither order is documented).

The notifier passes it to Flask-SocketIO as `client_manager=` (python-socketio's documented way to replace the
client manager). Upstream has no fix: its main branch and its issues, checked 2026-12-06, still scan every room.
When python-socketio indexes a sid's rooms itself, this module can go.
"""
from __future__ import annotations

import socketio


class IndexedRoomsManager(socketio.Manager):
    """`socketio.Manager` whose disconnect and `get_rooms` visit only the sid's rooms; created per app by
    `create_app`."""

    def __init__(self):
        super().__init__()
        # {namespace: {sid: {room: None}}}: the rooms a sid entered other than `None` and its own, in entry order
        self._entered: dict = {}

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # indexed only once it has succeeded
        if room is not None and room != sid:
            self._entered.setdefault(namespace, {}).setdefault(sid, {})[room] = None

    def basic_leave_room(self, sid, namespace, room):
        super().basic_leave_room(sid, namespace, room)
        if room is None or room == sid:
            return
        by_sid = self._entered.get(namespace)
        rooms = by_sid.get(sid) if by_sid else None
        if rooms is not None and room in rooms:
            del rooms[room]
            if not rooms:
                del by_sid[sid]
                if not by_sid:
                    del self._entered[namespace]

    def basic_disconnect(self, sid, namespace, **kwargs):
        """The base class's `basic_disconnect`, leaving only the rooms the sid is in."""
        if namespace not in self.rooms:
            return
        entered = self._entered.get(namespace, {}).get(sid)
        for room in [*entered] if entered else ():
            self.basic_leave_room(sid, namespace, room)
        self.basic_leave_room(sid, namespace, sid)  # nothing happens where the sid is not in the room
        self.basic_leave_room(sid, namespace, None)
        # the rest as in python-socketio 5.18.1's BaseManager.basic_disconnect
        if sid in self.callbacks:
            del self.callbacks[sid]
        if namespace in self.pending_connect and sid in self.pending_connect[namespace]:
            self.pending_connect[namespace].remove(sid)
            if len(self.pending_connect[namespace]) == 0:
                del self.pending_connect[namespace]
        if namespace in self.pending_disconnect and sid in self.pending_disconnect[namespace]:
            self.pending_disconnect[namespace].remove(sid)
            if len(self.pending_disconnect[namespace]) == 0:
                del self.pending_disconnect[namespace]

    def get_rooms(self, sid, namespace):
        """The rooms the sid is in (not `None`): its own room first, then the others in the order it entered them."""
        rooms = self.rooms.get(namespace)
        if rooms is None:
            return []
        own = [sid] if sid in rooms.get(sid, ()) else []
        return own + list(self._entered.get(namespace, {}).get(sid, ()))
