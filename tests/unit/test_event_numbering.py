"""reportflow_common.events: where a reconnecting socket starts, from the client's (epoch, last_seq) and the
user's position in Redis."""
from __future__ import annotations

import time

import pytest

from reportflow_common.events import Position, new_epoch, replay_start

E1, E2 = "0000000000010000", "0000000000020000"


@pytest.mark.parametrize(("client", "position", "expected"), [
    # (client epoch, client last_seq), Position(epoch, seq, first logged seq), (replay after, reset?)
    ((None, None), Position(E1, 7, 1), (7, False)),  # no last_seq: live events only
    ((E1, None), Position(E1, 7, 1), (7, False)),
    ((E1, 4), Position(E1, 7, 1), (4, False)),  # the usual reconnect: 5, 6, 7 are replayed
    ((E1, 7), Position(E1, 7, None), (7, False)),  # up to date, the log expired meanwhile: nothing missed
    ((E1, 0), Position(E1, 3, 1), (0, False)),  # everything from the start
    ((None, 4), Position(E1, 7, 1), (4, False)),  # a client from before epochs, in the same numbering
    ((E1, 4), Position(E2, 2, 1), (0, True)),  # Redis lost its data: reset, then the new epoch's events
    ((E1, 4), Position(E2, 0, None), (0, True)),  # ... even before the new epoch has any
    ((E1, 4), Position(E1, 7, 6), (5, True)),  # 5 was trimmed away: reset at what the log still has
    ((E1, 4), Position(E1, 7, None), (7, True)),  # the log expired: reset at the latest
    ((E1, 9), Position(E1, 7, 1), (0, True)),  # ahead of the log: that point cannot be trusted
    ((None, 9), Position(E1, 7, 3), (2, True)),
])
def test_replay_start(client, position, expected):
    assert replay_start(*client, position) == expected


def test_epochs_are_unique_and_begin_with_their_start_time():
    before = int(time.time() * 1000)
    epoch = new_epoch()
    assert len(epoch) == 20 and before <= int(epoch[:12], 16) <= int(time.time() * 1000)
    assert len({new_epoch() for _ in range(50)}) == 50
