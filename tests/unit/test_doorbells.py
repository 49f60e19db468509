"""reportflow_common.queue.doorbell_queue: one message per job, on the queue of its size."""
from __future__ import annotations

from reportflow_common import contracts as c
from reportflow_common.queue import doorbell_queue


def test_a_small_job_rings_the_lanes_queue_only():
    assert doorbell_queue("demo", {"rows": 1000, "columns": 8}, 8000) == c.LANE_QUEUE
    assert doorbell_queue("activity", {}, 8000) == c.LANE_QUEUE  # its cells count as 0


def test_a_large_job_rings_the_pools_queue():
    assert doorbell_queue("demo", {"rows": 1001, "columns": 8}, 8000) == c.REPORTS_QUEUE


def test_without_a_lane_every_job_rings_the_pools_queue():
    assert doorbell_queue("demo", {"rows": 1, "columns": 1}, 0) == c.REPORTS_QUEUE
