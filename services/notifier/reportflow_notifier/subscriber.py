"""One Redis pub/sub subscription per notifier process, on the project's own channels (contracts.py).

It replaces the Socket.IO Redis message queue: messages are read here and handed to the process's handlers,
which emit to local sockets only. Pub/sub is at most once: while the subscription is down (Redis restarted,
the connection dropped) messages are lost, so each (re)subscription calls `on_subscribed`, where the
notifier looks again at what it may have missed (the catch-up sweep covers report events by itself).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from redis import Redis, RedisError

log = logging.getLogger(__name__)
RECEIVE_WAIT_SECONDS = 5.0  # one wait for a message; between waits the connection's health is checked
HEALTH_CHECK_SECONDS = 10  # a PING on an idle subscription, so a dead connection is noticed
RESUBSCRIBE_SECONDS = 1.0  # pause after a failure before subscribing again


class ChannelSubscriber:
    def __init__(self, redis_url: str, handlers: dict[str, Callable[[bytes], None]],
                 on_subscribed: Callable[[], None], sleep: Callable[[float], None],
                 name: str = "reportflow-notifier-subscriber"):
        """`name`: the connection's name in Redis's CLIENT LIST."""
        self.redis = Redis.from_url(redis_url, socket_connect_timeout=5, socket_keepalive=True,
                                    health_check_interval=HEALTH_CHECK_SECONDS, client_name=name)
        self.handlers, self.on_subscribed, self.sleep = handlers, on_subscribed, sleep

    def run_forever(self) -> None:
        while True:
            pubsub = self.redis.pubsub()
            try:
                pubsub.subscribe(*self.handlers)
                while True:
                    message = pubsub.get_message(timeout=RECEIVE_WAIT_SECONDS)
                    if message is not None:
                        self._dispatch(message)
            except RedisError as exc:
                log.warning("subscription to Redis lost; subscribing again", extra={"error": str(exc)})
            finally:
                _close(pubsub)
            self.sleep(RESUBSCRIBE_SECONDS)

    def _dispatch(self, message: dict) -> None:
        channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        try:
            if message["type"] == "subscribe" and message["data"] == len(self.handlers):
                self.on_subscribed()  # subscribed to every channel (again: redis-py may resubscribe by itself)
            elif message["type"] == "message" and channel in self.handlers:
                self.handlers[channel](message["data"])
        except RedisError:
            raise
        except Exception:  # one bad message or handler bug must not end the subscription
            log.exception("a pub/sub message could not be handled", extra={"channel": channel})


def _close(pubsub) -> None:
    try:
        pubsub.close()
    except (RedisError, OSError):
        pass
