"""reportflow_worker.outages: which errors are outages, and retrying a step through one on a time budget."""
from __future__ import annotations

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import IntegrityError, OperationalError

from reportflow_worker.outages import backoff_delays, is_transient, retry_transient


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def wrapped_upload_error(cause: Exception) -> S3UploadFailedError:
    try:
        try:
            raise cause
        except Exception as exc:
            raise S3UploadFailedError("Failed to upload") from exc
    except S3UploadFailedError as exc:
        return exc


@pytest.mark.parametrize("exc", [
    OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")),
    RedisConnectionError("Connection refused"), BusyLoadingError("Redis is loading the dataset in memory"),
    EndpointConnectionError(endpoint_url="http://s3:9000"), ReadTimeoutError(endpoint_url="http://s3:9000"),
    client_error(503, "SlowDown"), wrapped_upload_error(client_error(500, "InternalError")),
    ConnectionRefusedError(),
])
def test_outages_are_transient(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    client_error(404, "NoSuchBucket"), wrapped_upload_error(client_error(403, "AccessDenied")),
    IntegrityError("INSERT", {}, Exception("duplicate key")), ValueError("rows must be positive"), KeyError("x"),
])
def test_faults_that_waiting_cannot_cure_are_not(exc):
    assert not is_transient(exc)


def test_backoff_doubles_to_a_cap_with_jitter_in_the_upper_half():
    low = backoff_delays(first=1, cap=8, rand=lambda: 0.0)
    high = backoff_delays(first=1, cap=8, rand=lambda: 0.999999)
    assert [next(low) for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert [round(next(high), 3) for _ in range(6)] == [1, 2, 4, 8, 8, 8]


class Clock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_step_is_retried_through_an_outage_until_it_works():
    clock, calls = Clock(), []

    def step():
        calls.append(clock.now)
        if len(calls) < 4:
            raise RedisConnectionError("down")
        return "done"

    retried = []
    assert retry_transient(step, budget=60, what="publish", sleep=clock.sleep, clock=lambda: clock.now,
                           on_retry=retried.append) == "done"
    assert len(calls) == 4 and len(retried) == 3 and all(0 < s <= 15 for s in clock.slept)


def test_the_last_error_is_raised_once_the_budget_is_spent():
    clock, calls = Clock(), []

    def step():
        calls.append(clock.now)
        raise EndpointConnectionError(endpoint_url=f"http://s3/{len(calls)}")

    with pytest.raises(EndpointConnectionError):
        retry_transient(step, budget=30, what="upload", sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.now <= 30 and len(calls) > 3  # kept trying for the budget, no longer


def test_other_errors_are_raised_at_once_and_a_stop_ends_the_wait():
    clock = Clock()
    with pytest.raises(ValueError):
        retry_transient(lambda: (_ for _ in ()).throw(ValueError("bad")), budget=30, what="build",
                        sleep=clock.sleep, clock=lambda: clock.now)
    with pytest.raises(RedisConnectionError):
        retry_transient(lambda: (_ for _ in ()).throw(RedisConnectionError("down")), budget=300, what="claim",
                        stop=lambda: True, sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.slept == []
