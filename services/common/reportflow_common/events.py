"""Report events: numbered per user, kept for replay, and sent live on the project's Redis channel.

Producers call `EventLog.publish` for progress (best effort: callers ignore its failures); terminal events
go through the outbox (`outbox.py`), which calls `EventLog.publish_once`. The notifier reads
`EventLog.replay_plan` when a socket connects and when one has fallen behind.

Numbering: each user has a position {epoch, seq} in Redis. `seq` counts that user's events; `epoch` names
the numbering. A new epoch starts whenever the position has to be created (the user's first event, or Redis
lost its data), and its log starts empty, so a client that sends back (epoch, last_seq) is never mistaken
for one that is up to date. Numbering, storing, the position and the live send are one Redis script (one
round trip, and events go out on the channel in `seq` order without a lock).

Live events go out on EVENTS_CHANNEL (pub/sub, at most once) as `live_message`s; every notifier process
reads them with `read_live_message` and sends each to its own sockets of that user.
"""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis

from .contracts import EVENTS_CHANNEL


def _position_key(user_id: str) -> str:
    return f"events:position:{user_id}"


def _stream_key(user_id: str) -> str:
    return f"events:log:{user_id}"


def _published_key(outbox_id: int) -> str:
    return f"events:outbox:{outbox_id}"


def new_epoch() -> str:
    """Milliseconds since 1970 in fixed-width hex, then randomness: unique, and readable as a start time
    (nothing relies on their order: the clocks of the hosts that start them may differ)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


# KEYS[1] position hash, KEYS[2] log stream; ARGV[1] an epoch to start if there is none.
_ENSURE_EPOCH = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
"""
# KEYS: position hashes; one line "epoch seq" per key, in order, "" for a missing field (epochs are hex, seqs
# digits). One script and one string instead of a pipeline of HMGETs: the notifier's catch-up sweep reads
# 5,000 users every 2 s, and packing and parsing a command and a reply per user cost ~5x the CPU
# (bench/bench_sockets.py).
_POSITIONS = """
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'epoch', 'seq')
  out[i] = (v[1] or '') .. ' ' .. (v[2] or '')
end
return table.concat(out, '\\n')
"""
_POSITION = _ENSURE_EPOCH + """
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local first_seq = 0
if #first > 0 then first_seq = tonumber(string.match(first[1][1], '^(%d+)')) end
return {epoch, tonumber(redis.call('HGET', KEYS[1], 'seq')), first_seq}
"""
# KEYS[3] the outbox row's marker; ARGV[2] event, [3] history max, [4] history ttl, [5] '1' to number once,
# [6] the payload as a JSON object, [7] the live channel, [8] the start of the live message (`_live_prefix`): a
# fresh event is sent on the channel as `live_message` would write it. Returns {epoch, seq, 1 if numbered now
# else 0 (numbered before)}.
_PUBLISH = _ENSURE_EPOCH + """
if ARGV[5] == '1' then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local at = string.find(seen, ':', 1, true)
    if string.sub(seen, 1, at - 1) == epoch then return {epoch, tonumber(string.sub(seen, at + 1)), 0} end
  end
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], seq .. '-0', 'event', ARGV[2], 'data', ARGV[6], 'epoch', epoch)
redis.call('EXPIRE', KEYS[2], ARGV[4])
if ARGV[5] == '1' then redis.call('SET', KEYS[3], epoch .. ':' .. seq, 'EX', ARGV[4]) end
local rest = string.sub(ARGV[6], 2)
if rest ~= '}' then rest = ', ' .. rest end
redis.call('PUBLISH', ARGV[7], ARGV[8] .. seq .. ', "epoch": "' .. epoch .. '"' .. rest .. '}')
return {epoch, seq, 1}
"""


@dataclass(frozen=True)
class Position:
    epoch: str
    seq: int
    first: int | None  # the oldest seq still in the log; None when the log is empty


@dataclass(frozen=True)
class ReplayPlan:
    """What a socket gets before live events: a reset when the client's point cannot be replayed, then
    the logged events after `start` (read with `since` once the socket is in its room)."""
    epoch: str
    start: int
    reset: dict | None = None


def replay_start(client_epoch: str | None, client_last_seq: int | None, position: Position) -> tuple[int, bool]:
    """(replay the events after this seq, whether the client must be told to reset first).

    No `last_seq`: live events only. The client's point can be replayed when it is in the current epoch (or
    names none: clients from before epochs), not ahead of the log, and nothing after it has been trimmed
    or expired; otherwise the reset point is where the retained log begins."""
    if client_last_seq is None:
        return position.seq, False
    if client_epoch in (None, position.epoch) and client_last_seq <= position.seq and (
            client_last_seq == position.seq or (position.first is not None and position.first <= client_last_seq + 1)):
        return client_last_seq, False
    return (position.first - 1 if position.first is not None else position.seq), True


class EventLog:
    def __init__(self, redis: Redis, *, history_max: int = 1000, history_ttl: int = 86400):
        self.redis, self.history_max, self.history_ttl = redis, history_max, history_ttl
        self._position = redis.register_script(_POSITION)  # registering sends nothing; the first call loads it
        self._publish = redis.register_script(_PUBLISH)
        self._positions = redis.register_script(_POSITIONS)

    def publish(self, user_id: str, event: str, payload: dict) -> dict:
        """Number, store and send one event to `user_id`'s room; returns the payload as sent."""
        return self._number_and_send(str(user_id), event, payload, None)

    def publish_once(self, outbox_id: int, user_id: str, event: str, payload: dict) -> dict | None:
        """Publish an outbox row's event: numbered once however often this is retried (a marker is set with
        the log entry, in one step); a retry sends the stored event again, and the notifier's gate drops it
        for sockets that already have it. None when a retry finds the entry already trimmed from the log."""
        return self._number_and_send(str(user_id), event, payload, outbox_id)

    def _number_and_send(self, user_id: str, event: str, payload: dict, outbox_id: int | None) -> dict | None:
        data = json.dumps({**payload, "time": datetime.now(UTC).isoformat()})
        once = outbox_id is not None
        keys = [_position_key(user_id), _stream_key(user_id),
                _published_key(outbox_id) if once else _position_key(user_id)]
        epoch, seq, fresh = self._publish(keys=keys, args=[new_epoch(), event, self.history_max, self.history_ttl,
                                                           "1" if once else "0", data, EVENTS_CHANNEL,
                                                           _live_prefix(user_id, event)])
        epoch, seq = _text(epoch), int(seq)
        if fresh:  # numbered, stored and sent by the script
            return _message(seq, epoch, data)
        stored = self._entry(user_id, seq)  # numbered before: send the stored event again
        if stored is None:
            return None
        event, message = stored
        self.redis.publish(EVENTS_CHANNEL, live_message(user_id, event, message))
        return message

    def position(self, user_id: str) -> Position:
        """The user's current epoch and seq (starting an epoch if there is none) and the oldest logged seq."""
        user_id = str(user_id)
        epoch, seq, first = self._position(keys=[_position_key(user_id), _stream_key(user_id)], args=[new_epoch()])
        return Position(_text(epoch), int(seq), int(first) or None)

    def positions(self, user_ids: Iterable[str]) -> dict[str, tuple[str | None, int]]:
        """(epoch, seq) of many users in one round trip, read only: (None, 0) for a user without a position."""
        users = [str(u) for u in user_ids]
        if not users:
            return {}
        lines = _text(self._positions(keys=[_position_key(user_id) for user_id in users])).split("\n")
        return {user_id: (epoch or None, int(seq or 0))
                for user_id, (epoch, seq) in zip(users, (line.split(" ") for line in lines), strict=True)}

    def since(self, user_id: str, last_seq: int, limit: int | None = None) -> list[tuple[str, dict]]:
        """Events of `user_id` with seq > last_seq, oldest first, as (event name, payload)."""
        entries = self.redis.xrange(_stream_key(str(user_id)), min=f"{int(last_seq) + 1}-0", max="+",
                                    count=limit or self.history_max)
        return [_entry(entry_id, fields) for entry_id, fields in entries]

    def _entry(self, user_id: str, seq: int) -> tuple[str, dict] | None:
        entries = self.redis.xrange(_stream_key(user_id), min=f"{seq}-0", max=f"{seq}-0")
        return _entry(*entries[0]) if entries else None

    def last_seq(self, user_id: str) -> int:
        return int(self.redis.hget(_position_key(str(user_id)), "seq") or 0)

    def replay_plan(self, user_id: str, client_epoch: str | None, client_last_seq: int | None) -> ReplayPlan:
        """Where a socket of `user_id` that has seen (client_epoch, client_last_seq) starts."""
        position = self.position(user_id)
        start, reset = replay_start(client_epoch, client_last_seq, position)
        return ReplayPlan(position.epoch, start, {"epoch": position.epoch, "seq": start} if reset else None)


def live_message(user_id: str, event: str, payload: dict) -> str:
    """What EVENTS_CHANNEL carries for one numbered event."""
    return json.dumps({"user_id": user_id, "event": event, "payload": payload})


def _live_prefix(user_id: str, event: str) -> str:
    """`live_message` up to the seq of its payload (the publish script writes the rest)."""
    return f'{{"user_id": {json.dumps(user_id)}, "event": {json.dumps(event)}, "payload": {{"seq": '


def read_live_message(raw) -> tuple[str, str, dict] | None:
    """(user_id, event, payload) of an EVENTS_CHANNEL message; None for anything else."""
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if not isinstance(message, dict):
        return None
    user_id, event, payload = message.get("user_id"), message.get("event"), message.get("payload")
    if not (isinstance(user_id, str) and isinstance(event, str) and isinstance(payload, dict)):
        return None
    return user_id, event, payload


def _entry(entry_id, fields: dict) -> tuple[str, dict]:
    seq = int(_text(entry_id).split("-", 1)[0])
    return _text(fields[b"event"]), _message(seq, _text(fields[b"epoch"]), fields[b"data"])


def _message(seq: int, epoch: str, data) -> dict:
    return {"seq": seq, "epoch": epoch, **json.loads(data)}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
