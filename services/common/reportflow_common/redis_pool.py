"""Every service's Redis client, on a blocking pool sized by REDIS_MAX_CONNECTIONS.

redis-py's default pool raises MaxConnectionsError once 100 connections are in use, which a gevent process
with a few hundred requests in flight reaches: those requests got 503. A blocking pool makes a burst wait
(up to REDIS_POOL_TIMEOUT_SECONDS) for a connection another greenlet or thread is about to return.
"""
from __future__ import annotations

from redis import BlockingConnectionPool, Redis

from .settings import Settings


def redis_client(settings: Settings, url: str | None = None, *, socket_timeout: float = 5,
                 socket_connect_timeout: float = 5) -> Redis:
    """A client of `url` (default REDIS_URL) whose commands wait their turn for one of the pool's connections."""
    pool = BlockingConnectionPool.from_url(url or settings.redis_url, max_connections=settings.redis_max_connections,
                                           timeout=settings.redis_pool_timeout_seconds, socket_timeout=socket_timeout,
                                           socket_connect_timeout=socket_connect_timeout)
    return Redis.from_pool(pool)

