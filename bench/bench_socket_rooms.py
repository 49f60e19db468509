"""The client manager alone: CPU per connect, get_rooms and disconnect with N sockets held, python-socketio's
`socketio.Manager` against the notifier's `IndexedRoomsManager`, in one process, rounds interleaved.

Why: python-socketio 5.18.1 walks every room of the namespace on each disconnect (and on get_rooms); every socket
has a room of its own, so a disconnect costs O(sockets held) and a mass disconnect is quadratic. This measures
the manager's share only, without sockets, gevent or the notifier's handlers (bench_sockets.py measures the
whole notifier process). Each socket is connected as python-socketio connects it (pre_connect, connect); the
notifier's sockets enter no other room, `--rooms-per-socket` adds shared rooms per socket. Figures only.

    .venv/bin/python bench/bench_socket_rooms.py [--sockets 10000] [--drop 5000] [--rounds 3] [--rooms-per-socket 0]
"""
from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
from importlib.metadata import version

import socketio

from reportflow_notifier.socket_rooms import IndexedRoomsManager

NS = "/"
MANAGERS = {"socketio.Manager": socketio.Manager, "IndexedRoomsManager": IndexedRoomsManager}


def held(kind, sockets: int, rooms_per_socket: int) -> tuple[socketio.Manager, list[str], float]:
    """A manager inside a real socketio.Server holding `sockets` connected sids; and the CPU s the connects took."""
    manager = kind()
    server = socketio.Server(client_manager=manager, async_mode="threading")
    ids = (f"s{n}" for n in itertools.count())
    server.eio.generate_id = lambda: next(ids)  # readable, equal sids for both managers
    sids = []
    started = time.process_time()
    for n in range(sockets):
        sid = manager.pre_connect(f"e{n}", NS)
        manager.connect(sid, NS)
        for k in range(rooms_per_socket):
            manager.enter_room(sid, NS, f"room{(n + k) % 100}")
        sids.append(sid)
    return manager, sids, time.process_time() - started


def measure(kind, args) -> dict:
    manager, sids, connect_s = held(kind, args.sockets, args.rooms_per_socket)
    probe = sids[:: max(1, len(sids) // 1000)]
    started = time.process_time()
    for sid in probe:
        manager.get_rooms(sid, NS)
    get_rooms_s = time.process_time() - started
    leaving = sids[1::2][: args.drop]  # every other socket: the rest stay held while these leave
    started = time.process_time()
    for sid in leaving:
        manager.pre_disconnect(sid, NS)
        manager.disconnect(sid, NS)
    drop_s = time.process_time() - started
    assert len(manager.rooms[NS][None]) == len(sids) - len(leaving)
    return {"connect_ms": 1000 * connect_s / len(sids), "get_rooms_ms": 1000 * get_rooms_s / len(probe),
            "disconnect_ms": 1000 * drop_s / len(leaving), "drop_s": drop_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=10_000, help="sockets held")
    parser.add_argument("--drop", type=int, default=5_000, help="sockets disconnected one after another")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rooms-per-socket", type=int, default=0, help="shared rooms each socket also enters")
    args = parser.parse_args()
    results = {name: [] for name in MANAGERS}
    for round_ in range(args.rounds):
        order = list(MANAGERS) if round_ % 2 == 0 else list(reversed(MANAGERS))
        for name in order:
            results[name].append(measure(MANAGERS[name], args))
    print(f"Python {platform.python_version()}, python-socketio {version('python-socketio')}, "
          f"bidict {version('bidict')}")
    print(f"{args.sockets:,} sockets held (+{args.rooms_per_socket} shared rooms each), then {args.drop:,} of them "
          f"disconnected one after another; CPU (process time), medians of {args.rounds} interleaved rounds")
    print(f"{'':22}{'connect ms':>12}{'get_rooms ms':>14}{'disconnect ms':>15}{'all drops s':>13}")
    for name, runs in results.items():
        median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(f"{name:22}{median['connect_ms']:>12.4f}{median['get_rooms_ms']:>14.4f}"
              f"{median['disconnect_ms']:>15.4f}{median['drop_s']:>13.2f}")


if __name__ == "__main__":
    main()
