"""The notifier's client manager (`socket_rooms.IndexedRoomsManager`) behaves as python-socketio's own
`socketio.Manager`, and its disconnect and `get_rooms` never walk the namespace's rooms.

The managers run inside real `socketio.Server`s (no network: nothing is sent but through Flask-SocketIO's test
client). Where two managers are compared step by step, both servers get the same sequence of sids (engine.io's
`generate_id` is random).
"""
from __future__ import annotations

import itertools
import random

import pytest
import socketio
from flask import Flask, request
from flask_socketio import SocketIO, close_room, join_room, leave_room, rooms

from reportflow_notifier.socket_rooms import IndexedRoomsManager

NS, OTHER_NS = "/", "/admin"
SHARED_ROOMS = ("a", "b", "c", 7)


def server_with(manager: socketio.Manager, monkeypatch) -> socketio.Server:
    server = socketio.Server(client_manager=manager, async_mode="threading")
    ids = (f"sid{n}" for n in itertools.count())
    monkeypatch.setattr(server.eio, "generate_id", lambda: next(ids))
    return server


def state(manager: socketio.Manager) -> dict:
    """Everything the base class keeps about clients, as plain values."""
    return {"rooms": {ns: {room: dict(members) for room, members in by_room.items()}
                      for ns, by_room in manager.rooms.items()},
            "callbacks": {sid: sorted(k for k in ids if k) for sid, ids in manager.callbacks.items()},
            "pending_connect": manager.pending_connect, "pending_disconnect": manager.pending_disconnect}


def outcome(call, *args):
    try:
        return ("ok", call(*args))
    except Exception as exc:  # noqa: BLE001 (the base class's exceptions are part of its behaviour)
        return ("raised", type(exc))


class Unwalkable(dict):
    """A namespace's room table that fails the test when something iterates or copies it."""

    def _walked(self, *_args):
        raise AssertionError("the namespace's rooms were walked")

    copy = items = keys = values = __iter__ = _walked


@pytest.mark.parametrize("seed", range(8))
def test_random_operations_leave_the_same_state_as_the_base_manager(seed, monkeypatch):
    """Connects (some left pending), enters, leaves, closes (sid rooms too), acks, pre-disconnects and
    disconnects (unknown sids too) in two namespaces: after each step both managers hold the same rooms,
    callbacks and pending lists, answer `get_rooms` with the same rooms and raise the same errors."""
    base, ours = socketio.Manager(), IndexedRoomsManager()
    server_with(base, monkeypatch), server_with(ours, monkeypatch)
    rng = random.Random(seed)
    sids = {NS: [], OTHER_NS: []}
    eio_sids = itertools.count()

    def both(method: str, *args):
        """The method on each manager: the same return value or the same exception."""
        expected = outcome(getattr(base, method), *args)
        assert outcome(getattr(ours, method), *args) == expected, (method, args)
        return expected[1]

    for _step in range(400):
        ns = rng.choice((NS, OTHER_NS))
        known = sids[ns] + ["never-connected"]
        sid = rng.choice(known)
        room = rng.choice([*SHARED_ROOMS, None, rng.choice(known)])
        op = rng.choice(["connect", "connect", "pre_connect", "enter", "enter", "enter", "leave", "close", "ack",
                         "disconnect", "pre_and_disconnect", "pre_disconnect_only"])
        if op in ("connect", "pre_connect"):
            eio_sid = f"eio{next(eio_sids)}"
            new_sid = both("pre_connect", eio_sid, ns)
            if op == "connect":
                both("connect", new_sid, ns)
            sids[ns].append(new_sid)
        elif op == "enter":
            both("enter_room", sid, ns, room)
        elif op == "leave":
            both("leave_room", sid, ns, room)
        elif op == "close":
            both("close_room", room, ns)
        elif op == "ack":
            both("_generate_ack_id", sid, print)
        elif op == "pre_disconnect_only":
            both("pre_disconnect", sid, ns)
        else:
            if op == "pre_and_disconnect":
                both("pre_disconnect", sid, ns)
            both("disconnect", sid, ns)
        assert state(ours) == state(base), (op, sid, room)
        for namespace, members in sids.items():
            for member in [*members, "never-connected"]:
                assert sorted(map(repr, ours.get_rooms(member, namespace))) == \
                    sorted(map(repr, base.get_rooms(member, namespace))), (op, member)


def test_a_disconnect_leaves_each_of_the_sids_rooms_and_only_those(monkeypatch):
    manager = IndexedRoomsManager()
    server_with(manager, monkeypatch)
    first, second, third = (manager.connect(f"eio{n}", NS) for n in range(3))
    for room in ("a", "b", "c"):
        manager.enter_room(first, NS, room)
    manager.enter_room(second, NS, "b")
    manager.enter_room(third, NS, "c")
    assert manager.get_rooms(first, NS) == [first, "a", "b", "c"]

    manager.disconnect(first, NS)
    assert set(manager.rooms[NS]) == {None, second, third, "b", "c"}  # "a" had only the first: gone
    assert dict(manager.rooms[NS]["b"]) == {second: "eio1"}
    assert dict(manager.rooms[NS][None]) == {second: "eio1", third: "eio2"}
    assert manager.get_rooms(first, NS) == []
    assert manager.get_rooms(second, NS) == [second, "b"]

    manager.disconnect(second, NS)
    manager.disconnect(third, NS)
    assert manager.rooms == {} and manager._entered == {}


def test_get_rooms_and_disconnect_do_not_walk_the_namespace(monkeypatch):
    """O(the sid's rooms): the namespace's room table is never iterated or copied (the base class does both)."""
    managers = {}
    for kind in (socketio.Manager, IndexedRoomsManager):
        manager = managers[kind] = kind()
        server_with(manager, monkeypatch)
        for n in range(50):
            manager.connect(f"eio{n}", NS)
        manager.enter_room("sid0", NS, "team")
        manager.enter_room("sid1", NS, "team")
        manager.rooms[NS] = Unwalkable(manager.rooms[NS])
    with pytest.raises(AssertionError, match="walked"):
        managers[socketio.Manager].disconnect("sid0", NS)

    ours = managers[IndexedRoomsManager]
    assert ours.get_rooms("sid0", NS) == ["sid0", "team"]
    ours.pre_disconnect("sid0", NS)
    ours.disconnect("sid0", NS)
    assert "sid0" not in ours.rooms[NS] and "sid0" not in ours.rooms[NS][None]
    assert dict(ours.rooms[NS]["team"]) == {"sid1": "eio1"}
    assert ours.pending_disconnect == {}


def test_close_room_takes_the_room_out_of_each_sids_rooms(monkeypatch):
    manager = IndexedRoomsManager()
    server_with(manager, monkeypatch)
    first, second = manager.connect("eio0", NS), manager.connect("eio1", NS)
    for sid in (first, second):
        manager.enter_room(sid, NS, "team")
        manager.enter_room(sid, NS, "other")
    manager.close_room("team", NS)
    assert "team" not in manager.rooms[NS]
    assert manager.get_rooms(first, NS) == [first, "other"]
    with pytest.raises(ValueError, match="sid room"):
        manager.close_room(second, NS)
    manager.disconnect(first, NS)
    assert dict(manager.rooms[NS]["other"]) == {second: "eio1"}


def test_disconnect_clears_callbacks_and_pending_lists_as_the_base_does(monkeypatch):
    manager = IndexedRoomsManager()
    server_with(manager, monkeypatch)
    pending = manager.pre_connect("eio0", NS)  # refused in its connect handler: never connected
    connected = manager.connect("eio1", NS)
    manager._generate_ack_id(connected, print)
    manager.pre_disconnect(connected, NS)
    assert not manager.is_connected(connected, NS)
    manager.disconnect(pending, NS)
    manager.disconnect(connected, NS)
    assert (manager.rooms, manager.callbacks, manager.pending_connect, manager.pending_disconnect) == ({}, {}, {}, {})


@pytest.mark.parametrize("kind", [socketio.Manager, IndexedRoomsManager])
def test_through_flask_socketio_emits_reach_the_sids_still_connected(kind):
    """Several clients, one in several rooms; after the others disconnect, an emit to its sid and to its rooms
    reaches it, and `rooms()` in a handler lists what it joined: the same with the base manager."""
    app = Flask(__name__)
    sio = SocketIO(app, async_mode="threading", client_manager=kind())
    sids = {}

    @sio.on("connect")
    def connect(auth=None):
        sids[auth["name"]] = request.sid

    @sio.on("join")
    def join(names):
        for name in names:
            join_room(name)
        return sorted(rooms())

    @sio.on("leave")
    def leave(name):
        leave_room(name)
        return sorted(rooms())

    @sio.on("close")
    def close(name):
        close_room(name)

    clients = {name: sio.test_client(app, auth={"name": name}) for name in ("ann", "bob", "cy")}
    assert clients["bob"].emit("join", ["x", "y", "z"], callback=True) == sorted([sids["bob"], "x", "y", "z"])
    clients["ann"].emit("join", ["x"], callback=True)
    clients["cy"].emit("join", ["y"], callback=True)
    assert clients["bob"].emit("leave", "z", callback=True) == sorted([sids["bob"], "x", "y"])
    clients["ann"].disconnect()
    clients["cy"].disconnect()

    sio.emit("direct", {"n": 1}, to=sids["bob"])
    sio.emit("to-room", {"n": 2}, to="y")
    sio.emit("to-gone", {"n": 3}, to=sids["ann"])
    clients["bob"].emit("close", "x")
    sio.emit("to-closed", {"n": 4}, to="x")
    assert [(m["name"], m["args"]) for m in clients["bob"].get_received()] == \
        [("direct", [{"n": 1}]), ("to-room", [{"n": 2}])]
    assert clients["bob"].emit("join", [], callback=True) == sorted([sids["bob"], "y"])
    clients["bob"].disconnect()
    assert sio.server.manager.rooms == {}


def test_the_notifier_uses_it_and_a_refused_socket_leaves_nothing_behind():
    """create_app builds no connection (Redis and the JWKS are not asked until a token needs checking); a socket
    with a malformed token is refused before either is asked, after python-socketio has pre-connected it."""
    from reportflow_common.settings import NOTIFIER, load_settings
    from reportflow_notifier.app import create_app

    app = create_app(load_settings(NOTIFIER, {"REDIS_URL": "redis://127.0.0.1:1/0",
                                              "JWKS_URL": "http://127.0.0.1:1/.well-known/jwks.json"}))
    sio = app.extensions["reportflow"]
    manager = sio.server.manager
    assert isinstance(manager, IndexedRoomsManager)
    client = sio.test_client(app, auth={"token": "not-a-token"})
    assert not client.is_connected()
    assert (manager.rooms, manager.pending_connect, manager.pending_disconnect) == ({}, {}, {})
