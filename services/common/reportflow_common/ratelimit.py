"""Fixed-window counters in Redis, for limits that must hold across every process of a service."""
from __future__ import annotations

import time

from redis import Redis

from .contracts import RATE_LIMITED
from .problems import Problem


def hit(redis: Redis, key: str, limit: int, window_seconds: int = 60) -> None:
    """Count one attempt under `key`; raise 429 with Retry-After once `limit` is passed in this window."""
    window = int(time.time() // window_seconds)
    full_key = f"ratelimit:{key}:{window}"
    pipe = redis.pipeline()
    pipe.incr(full_key)
    pipe.expire(full_key, window_seconds + 1)
    count = pipe.execute()[0]
    if count > limit:
        retry = int(window_seconds - time.time() % window_seconds) + 1
        raise Problem(429, RATE_LIMITED, "Too many attempts; try again later.", headers={"Retry-After": str(retry)})
