"""reportflow_common.events.EventLog against a real Redis: per-user numbering in epochs, replay plans, and
publishing an outbox row exactly once however often it is retried."""
from __future__ import annotations

import uuid

import pytest

from reportflow_common.contracts import EVENT_PROGRESS, EVENT_SUCCEEDED, EVENTS_CHANNEL
from reportflow_common.events import EventLog, live_message, read_live_message


class Channel:
    """What a notifier reads from the events channel, for one user (the Redis server is shared by tests)."""

    def __init__(self, redis, user: str):
        self.user, self.pubsub = user, redis.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(EVENTS_CHANNEL)
        assert self.pubsub.get_message(timeout=5) is None  # the confirmation, read and ignored: subscribed now

    def sent(self, count: int) -> list[tuple[str, int, str]]:
        """The next `count` (event, seq, user_id) of this user, as sent on the channel."""
        out = []
        while len(out) < count:
            message = self.pubsub.get_message(timeout=5)
            assert message is not None, f"only {out} arrived"
            user_id, event, payload = read_live_message(message["data"])
            if user_id == self.user:
                out.append((event, payload["seq"], user_id))
        return out


@pytest.fixture()
def user() -> str:
    return str(uuid.uuid4())


@pytest.fixture()
def channel(redis, user):
    listening = Channel(redis, user)
    yield listening
    listening.pubsub.close()


@pytest.fixture()
def log(redis, channel) -> EventLog:
    return EventLog(redis, history_max=5, history_ttl=60)


def lose_the_event_log(redis, user: str) -> None:
    """What Redis losing its data means for one user (the whole server is shared with other tests)."""
    redis.delete(f"events:position:{user}", f"events:log:{user}")


def test_events_are_numbered_from_1_in_one_epoch_and_carry_it(log, user, channel):
    first = log.publish(user, EVENT_PROGRESS, {"report_id": "r", "progress": 0.5})
    second = log.publish(user, EVENT_SUCCEEDED, {"report_id": "r", "rows": 3})
    assert (first["seq"], second["seq"]) == (1, 2) and first["epoch"] == second["epoch"]
    assert second["rows"] == 3 and second["time"]
    assert channel.sent(2) == [(EVENT_PROGRESS, 1, user), (EVENT_SUCCEEDED, 2, user)]
    assert log.since(user, 0) == [(EVENT_PROGRESS, first), (EVENT_SUCCEEDED, second)]
    position = log.position(user)
    assert (position.epoch, position.seq, position.first) == (first["epoch"], 2, 1)


@pytest.mark.parametrize("payload", [{"report_id": "r", "error": 'quote " backslash \\ and \u00e9\n', "rows": None},
                                     {}], ids=["odd-characters", "empty"])
def test_the_script_sends_what_live_message_writes(log, user, channel, payload):
    """The publish script writes the live message itself (one round trip): the same text `live_message` makes,
    odd characters and an empty payload included."""
    sent = log.publish(user, EVENT_SUCCEEDED, payload)
    while (message := channel.pubsub.get_message(timeout=5)) is not None:  # other tests share the channel
        if read_live_message(message["data"])[0] == user:
            break
    assert message["data"].decode() == live_message(user, EVENT_SUCCEEDED, sent)
    assert read_live_message(message["data"]) == (user, EVENT_SUCCEEDED, sent)


def test_a_lost_log_starts_a_later_epoch_from_1(log, user, redis):
    before = log.publish(user, EVENT_PROGRESS, {"report_id": "r"})
    lose_the_event_log(redis, user)
    after = log.publish(user, EVENT_PROGRESS, {"report_id": "r"})
    assert after["seq"] == 1 and after["epoch"] != before["epoch"]


def test_the_position_of_a_user_without_events_starts_the_epoch_the_first_event_uses(log, user):
    position = log.position(user)
    assert (position.seq, position.first) == (0, None)
    assert log.publish(user, EVENT_PROGRESS, {"report_id": "r"})["epoch"] == position.epoch


def test_positions_are_read_in_one_round_trip_and_create_nothing(log, user, redis):
    nobody = str(uuid.uuid4())
    event = log.publish(user, EVENT_PROGRESS, {"report_id": "r"})
    assert log.positions([user, nobody]) == {user: (event["epoch"], 1), nobody: (None, 0)}
    assert not redis.exists(f"events:position:{nobody}")


def test_an_outbox_row_is_numbered_once_and_a_retry_sends_the_stored_event_again(log, user, channel):
    payload = {"report_id": "r", "rows": 10}
    first = log.publish_once(41, user, EVENT_SUCCEEDED, payload)
    log.publish(user, EVENT_PROGRESS, {"report_id": "other"})
    again = log.publish_once(41, user, EVENT_SUCCEEDED, payload)  # a retry after a crash before marking
    assert again == first and first["seq"] == 1
    assert [seq for _e, seq, _u in channel.sent(3)] == [1, 2, 1]  # sent again: the gate drops it per socket
    assert [d["seq"] for _e, d in log.since(user, 0)] == [1, 2]


def test_an_outbox_row_published_before_the_log_was_lost_is_published_again_in_the_new_epoch(log, user, redis):
    first = log.publish_once(42, user, EVENT_SUCCEEDED, {"report_id": "r"})
    lose_the_event_log(redis, user)
    again = log.publish_once(42, user, EVENT_SUCCEEDED, {"report_id": "r"})
    assert again["epoch"] != first["epoch"] and again["seq"] == 1


def test_the_log_keeps_the_newest_and_plans_say_what_can_be_replayed(log, user, redis):
    events = [log.publish(user, EVENT_PROGRESS, {"report_id": "r", "n": n}) for n in range(8)]  # keeps 5
    epoch = events[0]["epoch"]
    assert [p["seq"] for _e, p in log.since(user, 0)] == [4, 5, 6, 7, 8]
    assert log.replay_plan(user, epoch, 6).reset is None and log.replay_plan(user, epoch, 6).start == 6
    trimmed = log.replay_plan(user, epoch, 1)  # 2 and 3 are gone
    assert trimmed.reset == {"epoch": epoch, "seq": 3} and trimmed.start == 3
    assert log.replay_plan(user, None, None).start == 8
    lose_the_event_log(redis, user)
    lost = log.replay_plan(user, epoch, 8)
    assert lost.reset == {"epoch": lost.epoch, "seq": 0} and lost.epoch != epoch
