"""reportflow_notifier.delivery.DeliveryGate: each socket gets every event of its user once, in seq order."""
from __future__ import annotations

from reportflow_common.contracts import EVENT_PROGRESS, EVENT_SUCCEEDED
from reportflow_notifier.delivery import DeliveryGate


def ev(seq: int, event: str = EVENT_PROGRESS) -> tuple[str, dict]:
    return event, {"seq": seq, "report_id": "r1"}


def seqs(events) -> list[int]:
    return [payload["seq"] for _event, payload in events]


def test_live_events_wait_while_the_replay_runs():
    gate = DeliveryGate()
    gate.open("s1", 3)
    assert gate.admit_live("s1", *ev(4)) is False
    assert gate.admit_live("s1", *ev(5)) is False


def test_replay_merges_buffered_live_events_in_order_without_duplicates():
    gate = DeliveryGate()
    gate.open("s1", 3)
    for seq in (6, 5, 7):  # live events overlapping the replayed history, out of order
        gate.admit_live("s1", *ev(seq))
    delivered = gate.replay("s1", [ev(4), ev(5), ev(6, EVENT_SUCCEEDED)])
    assert seqs(delivered) == [4, 5, 6, 7]
    assert delivered[2][0] == EVENT_SUCCEEDED


def test_events_at_or_below_last_seq_are_dropped():
    gate = DeliveryGate()
    gate.open("s1", 10)
    gate.admit_live("s1", *ev(9))
    gate.admit_live("s1", *ev(10))
    assert seqs(gate.replay("s1", [ev(8), ev(10), ev(11)])) == [11]


def test_after_the_replay_live_events_pass_only_when_seq_increases():
    gate = DeliveryGate()
    gate.open("s1", 0)
    assert seqs(gate.replay("s1", [ev(1), ev(2)])) == [1, 2]
    assert gate.admit_live("s1", *ev(2)) is False  # already replayed
    assert gate.admit_live("s1", *ev(3)) is True
    assert gate.admit_live("s1", *ev(3)) is False  # duplicate from another path
    assert gate.admit_live("s1", *ev(1)) is False  # stale
    assert gate.admit_live("s1", *ev(5)) is True  # a gap is fine: seq only has to increase


def test_empty_replay_ends_buffering_and_flushes_what_came_in():
    gate = DeliveryGate()
    gate.open("s1", 0)
    gate.admit_live("s1", *ev(1))
    assert seqs(gate.replay("s1", [])) == [1]
    assert gate.admit_live("s1", *ev(2)) is True


def test_events_without_an_integer_seq_are_never_delivered():
    gate = DeliveryGate()
    gate.open("s1", 0)
    gate.replay("s1", [])
    assert gate.admit_live("s1", EVENT_PROGRESS, {"report_id": "r1"}) is False
    assert gate.admit_live("s1", EVENT_PROGRESS, {"seq": "7", "report_id": "r1"}) is False
    assert gate.admit_live("s1", *ev(1)) is True


def test_sockets_are_independent():
    gate = DeliveryGate()
    gate.open("a", 0)
    gate.open("b", 5)
    gate.replay("a", [])
    assert gate.admit_live("a", *ev(3)) is True
    assert gate.admit_live("b", *ev(6)) is False  # b is still replaying
    assert seqs(gate.replay("b", [ev(4), ev(6)])) == [6]
    assert gate.admit_live("a", *ev(4)) is True


def test_a_closed_or_unknown_socket_gets_nothing():
    gate = DeliveryGate()
    gate.open("s1", 0)
    gate.replay("s1", [])
    gate.close("s1")
    assert gate.admit_live("s1", *ev(1)) is False
    assert gate.replay("s1", [ev(2)]) == []
    assert gate.admit_live("never-opened", *ev(1)) is False
    gate.close("never-opened")  # closing twice or an unknown sid is harmless


def test_closing_during_the_replay_discards_the_buffer():
    gate = DeliveryGate()
    gate.open("s1", 0)
    gate.admit_live("s1", *ev(1))
    gate.close("s1")
    assert gate.replay("s1", [ev(2)]) == []
