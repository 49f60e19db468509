"""Outages of PostgreSQL, Redis or storage: which errors are one, and retrying a step through one on a time
budget (exponential backoff with jitter), so a blip costs a pause, not a job."""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 15.0


def is_transient(exc: BaseException) -> bool:
    """True for errors that waiting can cure: connections refused or dropped, timeouts, a server starting up
    or answering 5xx. False for everything else (a missing bucket, a bug, bad parameters)."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError | RedisConnectionError | RedisTimeoutError
                  | BotoConnectionError | HTTPClientError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) >= 500
    if isinstance(exc, S3UploadFailedError):  # boto3 wraps the cause of a failed upload_file
        cause = exc.__cause__ or exc.__context__
        return cause is not None and is_transient(cause)
    return False


def backoff_delays(first: float = BACKOFF_FIRST_SECONDS, cap: float = BACKOFF_MAX_SECONDS,
                   rand: Callable[[], float] = random.random) -> Iterator[float]:
    """Pauses that double up to `cap`, each between half and all of its step (jitter, so processes that
    failed together do not all come back at the same instant)."""
    step = first
    while True:
        yield step / 2 + rand() * step / 2
        step = min(cap, step * 2)


def retry_transient(step: Callable[[], T], *, budget: float, what: str,
                    stop: Callable[[], bool] = lambda: False, on_retry: Callable[[BaseException], None] | None = None,
                    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> T:
    """`step()`, retried while it fails with a transient error, for up to `budget` seconds from the first
    failure; then (or as soon as `stop()` says so) the last error is raised. Other errors are raised at once."""
    deadline, delays = None, backoff_delays()
    while True:
        try:
            return step()
        except Exception as exc:
            if not is_transient(exc):
                raise
            now = clock()
            deadline = deadline if deadline is not None else now + budget
            pause = next(delays)
            if now + pause > deadline or stop():
                log.error(f"giving up: could not {what}", extra={"error": str(exc), "budget_seconds": budget})
                raise
            log.warning(f"outage: could not {what}; retrying", extra={"error": str(exc),
                                                                      "retry_in_seconds": round(pause, 2)})
            if on_retry is not None:
                on_retry(exc)
            sleep(pause)
