"""Report events: numbered per user, kept for replay, and sent through the Socket.IO Redis message queue.

Producers (worker, reports) call `EventLog.publish`; the notifier reads `EventLog.since` on reconnect.
A per-user lock makes numbering, storing and sending one step, so events reach the channel in `seq`
order and a reconnecting client can ask for exactly what it missed.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime

import socketio
from redis import Redis

from .contracts import SOCKETIO_CHANNEL, SOCKETIO_NAMESPACE, user_room


def _seq_key(user_id: str) -> str:
    return f"events:seq:{user_id}"


def _stream_key(user_id: str) -> str:
    return f"events:log:{user_id}"


class EventLog:
    def __init__(self, redis: Redis, redis_url: str, *, history_max: int = 1000, history_ttl: int = 86400,
                 emitter: socketio.RedisManager | None = None):
        self.redis, self.history_max, self.history_ttl = redis, history_max, history_ttl
        self.emitter = emitter or socketio.RedisManager(redis_url, write_only=True, channel=SOCKETIO_CHANNEL)

    def publish(self, user_id: str, event: str, payload: dict) -> dict:
        """Number, store and send one event to `user_id`'s room; returns the payload as sent."""
        user_id = str(user_id)
        with self.redis.lock(f"events:lock:{user_id}", timeout=10, blocking_timeout=10):
            seq = int(self.redis.incr(_seq_key(user_id)))
            message = {"seq": seq, **payload, "time": datetime.now(UTC).isoformat()}
            pipe = self.redis.pipeline()
            pipe.xadd(_stream_key(user_id), {"event": event, "data": json.dumps(message)}, id=f"{seq}-0",
                      maxlen=self.history_max, approximate=False)
            pipe.expire(_stream_key(user_id), self.history_ttl)
            pipe.execute()
            self.emitter.emit(event, message, namespace=SOCKETIO_NAMESPACE, room=user_room(user_id))
        return message

    def since(self, user_id: str, last_seq: int, limit: int | None = None) -> list[tuple[str, dict]]:
        """Events of `user_id` with seq > last_seq, oldest first, as (event name, payload)."""
        entries = self.redis.xrange(_stream_key(str(user_id)), min=f"{int(last_seq) + 1}-0", max="+",
                                    count=limit or self.history_max)
        return [(_text(fields[b"event"]), json.loads(fields[b"data"])) for _id, fields in entries]

    def last_seq(self, user_id: str) -> int:
        return int(self.redis.get(_seq_key(str(user_id))) or 0)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
