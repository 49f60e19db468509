"""The notifier's one subscription to the project's Redis channels, against a real Redis: messages reach their
handler, and a dropped connection is subscribed again and announced (where the notifier re-checks what it may
have missed)."""
from __future__ import annotations

import queue
import threading
import time
import uuid

from reportflow_notifier.subscriber import ChannelSubscriber
from support.waiting import wait_until


class Stopped(Exception):
    """Ends the subscriber's thread at its next pause (the loop itself runs for the process's life)."""


def test_messages_reach_their_handler_and_a_dropped_subscription_comes_back(redis, infra):
    channels = [f"test:{uuid.uuid4().hex}:{n}" for n in ("a", "b")]
    name = f"test-subscriber-{uuid.uuid4().hex[:8]}"
    received: queue.Queue = queue.Queue()
    subscriptions: list[float] = []
    stopping = threading.Event()

    def pause(seconds: float) -> None:
        if stopping.is_set() or stopping.wait(seconds):
            raise Stopped

    subscriber = ChannelSubscriber(infra.redis.url, {c: (lambda raw, c=c: received.put((c, raw))) for c in channels},
                                   lambda: subscriptions.append(time.monotonic()), pause, name=name)
    def run() -> None:
        try:
            subscriber.run_forever()
        except Stopped:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def connection_id() -> int | None:
        return next((int(c["id"]) for c in redis.client_list() if c.get("name") == name), None)

    try:
        wait_until(lambda: len(subscriptions) == 1, 10, "the first subscription")
        redis.publish(channels[1], "not json: handlers get the raw message")
        redis.publish(channels[0], '{"x": 1}')
        assert [received.get(timeout=5), received.get(timeout=5)] == [
            (channels[1], b"not json: handlers get the raw message"), (channels[0], b'{"x": 1}')]
        redis.client_kill_filter(_id=wait_until(connection_id, 5, "the subscriber's connection"))
        wait_until(lambda: len(subscriptions) == 2, 15, "a new subscription after the connection was dropped")
        redis.publish(channels[0], "again")
        assert received.get(timeout=5) == (channels[0], b"again")
    finally:
        stopping.set()
        if (live := connection_id()) is not None:
            redis.client_kill_filter(_id=live)
        thread.join(10)
    assert not thread.is_alive()
