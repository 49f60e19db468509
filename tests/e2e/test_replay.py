"""Reconnecting with last_seq: what was missed arrives once, in order, before live events."""
from __future__ import annotations

from support.clients import SocketClient


def _final(report_id):
    return lambda name, p: name in ("report.succeeded", "report.failed") and p["report_id"] == report_id


def test_missed_events_are_replayed_once_in_order(api, stack):
    user = api.new_user()
    first = SocketClient(stack.notifiers[0].url, user.token).connect()
    r1 = user.create({"rows": 100, "columns": 3, "seed": 1})
    first.wait_for(_final(r1["id"]), 60)
    last_seq = first.seqs()[-1]
    first.disconnect()

    # while offline, two jobs finish
    r2 = user.create({"rows": 100, "columns": 3, "seed": 2})
    r3 = user.create({"rows": 100, "columns": 3, "seed": 3})
    user.wait_status(r2["id"], ("succeeded",))
    user.wait_status(r3["id"], ("succeeded",))

    # reconnect to the *other* process with last_seq
    again = SocketClient(stack.notifiers[1].url, user.token, last_seq=last_seq).connect()
    try:
        again.wait_for(_final(r3["id"]), 30, "replayed succeeded of r3")
        again.wait_for(_final(r2["id"]), 30, "replayed succeeded of r2")
        replayed = again.seqs()
        assert replayed == sorted(set(replayed)) and replayed[0] == last_seq + 1
        assert {p["report_id"] for _n, p in again.events} == {r2["id"], r3["id"]}
        # then live events follow on the same connection, still without repeats
        r4 = user.create({"rows": 100, "columns": 3, "seed": 4})
        again.wait_for(_final(r4["id"]), 60, "live event after replay")
        seqs = again.seqs()
        assert seqs == list(range(last_seq + 1, last_seq + 1 + len(seqs))), "every event once, none skipped"
    finally:
        again.disconnect()


def test_connect_without_last_seq_gets_only_live_events(api, stack):
    user = api.new_user()
    r1 = user.create({"rows": 50, "columns": 2, "seed": 1})
    user.wait_status(r1["id"], ("succeeded",))
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    try:
        r2 = user.create({"rows": 50, "columns": 2, "seed": 2})
        sock.wait_for(_final(r2["id"]), 60)
        assert {p["report_id"] for _n, p in sock.events} == {r2["id"]}
    finally:
        sock.disconnect()


def test_last_seq_zero_replays_the_whole_history(api, stack):
    user = api.new_user()
    ids = [user.create({"rows": 20, "columns": 2, "seed": i})["id"] for i in range(2)]
    for rid in ids:
        user.wait_status(rid, ("succeeded",))
    sock = SocketClient(stack.notifiers[1].url, user.token, last_seq=0).connect()
    try:
        for rid in ids:
            sock.wait_for(_final(rid), 30)
        assert sock.seqs()[0] == 1 and sock.seqs() == sorted(set(sock.seqs()))
    finally:
        sock.disconnect()
