"""Rate limits that hold across every process of a service: the `limits` library's moving window, kept in
Redis (each attempt is a timestamp in a capped list per key; a refused attempt is not recorded).

When Redis cannot be reached, `Throttle.hit` raises redis's own ConnectionError/TimeoutError, which every
app answers 503 `unavailable` with Retry-After: a throttled action fails closed rather than going unlimited.
"""
from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis

from .contracts import RATE_LIMITED
from .problems import Problem


def per_minute(amount: int) -> RateLimitItem:
    return RateLimitItemPerMinute(amount)


class Throttle:
    """Moving-window limits on the Redis that `redis` talks to (sharing its connection pool)."""

    def __init__(self, redis_url: str, redis: Redis):
        self._limiter = MovingWindowRateLimiter(RedisStorage(redis_url, connection_pool=redis.connection_pool))

    def hit(self, limit: RateLimitItem, *key: str, detail: str = "Too many attempts; try again later.") -> None:
        """Count one attempt under `key`; raise 429 with Retry-After (seconds until one attempt frees up)
        when `limit` is already used up."""
        if self._limiter.hit(limit, *key):
            return
        reset_at = self._limiter.get_window_stats(limit, *key).reset_time
        retry = max(1, math.ceil(reset_at - time.time()))
        raise Problem(429, RATE_LIMITED, detail, headers={"Retry-After": str(retry)})
