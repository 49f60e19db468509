"""reportflow_common.queue.ring_doorbells: the main queue and the lane rung together, one by one if that fails."""
from __future__ import annotations

from contextlib import contextmanager

import pytest

from reportflow_common import contracts as c
from reportflow_common.queue import ring_doorbells


class Batch:
    def __init__(self, fails: bool):
        self.fails = fails

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.fails and exc[0] is None:
            raise ConnectionError("broker gone at flush")


class Producer:
    def __init__(self, fails: bool):
        self.fails = fails

    def batch(self):
        return Batch(self.fails)


class Celery:
    """Records what send_task was asked to send, and with which producer (None: one of its own)."""

    def __init__(self, batch_fails: bool = False, send_fails: bool = False):
        self.batch_fails, self.send_fails, self.sent = batch_fails, send_fails, []

    @contextmanager
    def producer_or_acquire(self):
        yield Producer(self.batch_fails)

    def send_task(self, name, args, queue, producer=None, **_options):
        self.sent.append((name, args, queue, producer is not None))
        if self.send_fails and producer is None:
            raise ConnectionError("broker unreachable")


def test_both_queues_are_rung_in_one_batch():
    celery = Celery()
    ring_doorbells(celery, "r1", (c.REPORTS_QUEUE, c.LANE_QUEUE))
    assert celery.sent == [(c.BUILD_REPORT_TASK, ["r1"], c.REPORTS_QUEUE, True),
                           (c.BUILD_REPORT_TASK, ["r1"], c.LANE_QUEUE, True)]


def test_a_failed_batch_is_sent_again_message_by_message():
    celery = Celery(batch_fails=True)
    ring_doorbells(celery, "r1", (c.REPORTS_QUEUE, c.LANE_QUEUE))
    assert celery.sent[2:] == [(c.BUILD_REPORT_TASK, ["r1"], c.REPORTS_QUEUE, False),
                               (c.BUILD_REPORT_TASK, ["r1"], c.LANE_QUEUE, False)]


def test_an_unreachable_broker_raises():
    with pytest.raises(ConnectionError):
        ring_doorbells(Celery(batch_fails=True, send_fails=True), "r1", (c.REPORTS_QUEUE,))
