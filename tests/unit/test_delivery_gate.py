"""reportflow_notifier.delivery: each socket gets every event of its user once, in seq order, without gaps;
a new epoch is announced with events.reset instead of being dropped as old seqs."""
from __future__ import annotations

from reportflow_common.contracts import EVENT_PROGRESS, EVENT_RESET, EVENT_SUCCEEDED
from reportflow_notifier.delivery import DeliveryGate, StalledSockets

E1, E2 = "0000000000010000", "0000000000020000"


def ev(seq: int, event: str = EVENT_PROGRESS, epoch: str | None = E1) -> tuple[str, dict]:
    payload = {"seq": seq, "report_id": "r1"}
    if epoch is not None:
        payload["epoch"] = epoch
    return event, payload


def seqs(events) -> list:
    return [payload["seq"] if name != EVENT_RESET else ("reset", payload["epoch"], payload["seq"])
            for name, payload in events]


def live(gate: DeliveryGate, sid: str, *events) -> list:
    """Everything the gate sends `sid` for these live events (asserting none needs a catch-up)."""
    out = []
    for event in events:
        admission = gate.admit_live(sid, *event)
        assert not admission.catch_up, event
        out += admission.deliver
    return seqs(out)


def opened(sid: str = "s1", last_seq: int = 0, epoch: str = E1) -> DeliveryGate:
    gate = DeliveryGate()
    gate.open(sid, last_seq, epoch, "u1")
    assert gate.replay(sid, []) == ([], False)
    return gate


def test_live_events_wait_while_the_replay_runs():
    gate = DeliveryGate()
    gate.open("s1", 3, E1, "u1")
    assert gate.admit_live("s1", *ev(4)) == ([], False)
    assert gate.admit_live("s1", *ev(5)) == ([], False)


def test_replay_merges_buffered_live_events_in_order_without_duplicates():
    gate = DeliveryGate()
    gate.open("s1", 3, E1, "u1")
    for seq in (5, 6, 7):  # live events overlapping the replayed history
        gate.admit_live("s1", *ev(seq))
    delivered, catch_up = gate.replay("s1", [ev(4), ev(5), ev(6, EVENT_SUCCEEDED)])
    assert seqs(delivered) == [4, 5, 6, 7] and not catch_up
    assert delivered[2][0] == EVENT_SUCCEEDED


def test_events_at_or_below_last_seq_are_dropped():
    gate = DeliveryGate()
    gate.open("s1", 10, E1, "u1")
    gate.admit_live("s1", *ev(9))
    gate.admit_live("s1", *ev(10))
    assert seqs(gate.replay("s1", [ev(8), ev(10), ev(11)]).deliver) == [11]


def test_after_the_replay_live_events_pass_only_in_sequence():
    gate = DeliveryGate()
    gate.open("s1", 0, E1, "u1")
    assert seqs(gate.replay("s1", [ev(1), ev(2)]).deliver) == [1, 2]
    assert live(gate, "s1", ev(2)) == []  # already replayed
    assert live(gate, "s1", ev(3)) == [3]
    assert live(gate, "s1", ev(3), ev(1)) == []  # a duplicate from another path, a stale one


def test_a_gap_holds_the_event_and_asks_for_a_catch_up_from_the_log():
    """A live event was lost (the notifier's subscription to Redis was down): the next one must not jump it."""
    gate = opened(last_seq=3)
    assert gate.admit_live("s1", *ev(6)) == ([], True)  # 4 and 5 never came
    assert gate.admit_live("s1", *ev(7)) == ([], False)  # waits behind the catch-up
    assert gate.point("s1") == ("u1", E1, 3)
    assert seqs(gate.replay("s1", [ev(4), ev(5), ev(6)]).deliver) == [4, 5, 6, 7]
    assert live(gate, "s1", ev(8)) == [8]


def test_a_gap_left_after_a_replay_asks_again_unless_tolerated():
    gate = opened(last_seq=3)
    gate.admit_live("s1", *ev(6))
    delivered, catch_up = gate.replay("s1", [ev(4)])  # the log read missed 5
    assert seqs(delivered) == [4] and catch_up
    assert seqs(gate.replay("s1", [], tolerate_gaps=True).deliver) == [6]


def test_a_newer_epoch_is_announced_with_a_reset_then_followed():
    """Redis lost its data and numbering started again: the new low seqs are not dropped as duplicates."""
    gate = opened(last_seq=40)
    assert live(gate, "s1", ev(1, epoch=E2), ev(2, epoch=E2)) == [("reset", E2, 0), 1, 2]
    assert gate.point("s1") == ("u1", E2, 2)


def test_a_newer_epoch_that_starts_with_a_gap_is_caught_up_after_the_reset():
    gate = opened(last_seq=40)
    delivered, catch_up = gate.admit_live("s1", *ev(3, epoch=E2))
    assert seqs(delivered) == [("reset", E2, 0)] and catch_up
    assert seqs(gate.replay("s1", [ev(1, epoch=E2), ev(2, epoch=E2), ev(3, epoch=E2)]).deliver) == [1, 2, 3]


def test_any_other_epoch_resets_whatever_the_clocks_said_when_it_began():
    """Epochs begin on different hosts: ordering them by time could drop a new epoch's events as stale."""
    gate = opened(last_seq=2, epoch=E2)
    assert live(gate, "s1", ev(1, epoch=E1), ev(2, epoch=E1)) == [("reset", E1, 0), 1, 2]


def test_a_reset_from_the_replay_plan_comes_first_and_sets_the_point():
    gate = DeliveryGate()
    gate.open("s1", 5, E2, "u1")
    gate.admit_live("s1", *ev(7, epoch=E2))
    delivered, catch_up = gate.replay("s1", [ev(6, epoch=E2), ev(7, epoch=E2)], reset={"epoch": E2, "seq": 5})
    assert seqs(delivered) == [("reset", E2, 5), 6, 7] and not catch_up


def test_events_without_an_integer_seq_are_never_delivered():
    gate = opened()
    assert live(gate, "s1", (EVENT_PROGRESS, {"report_id": "r1"}), (EVENT_PROGRESS, {"seq": "1"}),
                (EVENT_PROGRESS, {"seq": True})) == []
    assert live(gate, "s1", ev(1)) == [1]


def test_events_of_clients_before_epochs_are_taken_as_the_current_epoch():
    gate = opened()
    assert live(gate, "s1", ev(1, epoch=None), ev(2)) == [1, 2]


def test_sockets_are_independent():
    gate = DeliveryGate()
    gate.open("a", 0, E1, "u1")
    gate.open("b", 5, E1, "u1")
    gate.replay("a", [])
    assert live(gate, "a", ev(1)) == [1]
    assert gate.admit_live("b", *ev(6)) == ([], False)  # b is still replaying
    assert seqs(gate.replay("b", [ev(6)]).deliver) == [6]
    assert live(gate, "a", ev(2)) == [2]


def test_a_closed_or_unknown_socket_gets_nothing():
    gate = opened()
    gate.close("s1")
    assert gate.admit_live("s1", *ev(1)) == ([], False)
    assert gate.replay("s1", [ev(2)]) == ([], False)
    assert gate.admit_live("never-opened", *ev(1)) == ([], False)
    assert gate.point("s1") is None and gate.begin_catch_up("s1") is False
    gate.close("never-opened")  # closing twice or an unknown sid is harmless


def test_closing_during_the_replay_discards_the_buffer():
    gate = DeliveryGate()
    gate.open("s1", 0, E1, "u1")
    gate.admit_live("s1", *ev(1))
    gate.close("s1")
    assert gate.replay("s1", [ev(2)]) == ([], False)


def test_a_catch_up_buffers_live_events_and_only_one_runs_at_a_time():
    gate = opened(last_seq=2)
    assert gate.cursors() == [("s1", "u1", E1, 2)]
    assert gate.begin_catch_up("s1") is True
    assert gate.begin_catch_up("s1") is False  # one is on its way
    assert gate.cursors() == []  # buffering sockets are not swept
    gate.admit_live("s1", *ev(4))
    assert seqs(gate.replay("s1", [ev(3), ev(4)]).deliver) == [3, 4]


def test_stalled_sockets_are_those_behind_twice_without_moving():
    stalled = StalledSockets()
    positions = {"u1": (E1, 5), "u2": (E1, 3)}
    cursors = [("a", "u1", E1, 4), ("b", "u2", E1, 3)]
    assert stalled.find(cursors, positions) == []  # a is behind, but its event may be in flight
    assert stalled.find(cursors, positions) == ["a"]  # still at 4 a sweep later: it was lost
    assert stalled.find([("a", "u1", E1, 5)], positions) == []  # caught up
    moving = [("a", "u1", E1, 2)]
    stalled.find(moving, positions)
    assert stalled.find([("a", "u1", E1, 3)], positions) == []  # behind, but moving: live events flow


def test_a_socket_of_another_epoch_or_after_lost_data_is_stalled():
    stalled = StalledSockets()
    for _ in range(2):
        found = stalled.find([("a", "u1", E1, 9), ("b", "u2", E1, 4), ("c", "u3", None, 0)],
                             {"u1": (E2, 1), "u2": (None, 0), "u3": (None, 0)})
    assert found == ["a", "b"]  # c has seen nothing and nothing exists: nothing to tell it
