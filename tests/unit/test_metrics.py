"""Metrics read at scrape time (queue depth) and the notifier's latency measurements."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from reportflow_common import metrics
from reportflow_common.contracts import EVENT_PROGRESS, EVENT_SUCCEEDED, REPORTS_QUEUE
from reportflow_common.events import live_message
from reportflow_notifier.app import notifier_metrics
from reportflow_notifier.delivery import DeliveryGate, LiveDelivery
from reportflow_reports.app import QueueDepthCollector


class FakeBroker:
    def __init__(self, lengths: dict[str, int] | None = None):
        self.lengths = lengths

    def llen(self, key: str) -> int:
        if self.lengths is None:
            raise RedisConnectionError("broker down")
        return self.lengths.get(key, 0)


@pytest.fixture
def scrape_collectors(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(metrics, "_scrape_collectors", {})


def queue_collector(lengths) -> QueueDepthCollector:
    collector = QueueDepthCollector(None)  # the broker is replaced
    collector.broker = FakeBroker(lengths)
    return collector


def test_queue_depth_is_read_from_the_broker_at_scrape_time(scrape_collectors):
    collector = queue_collector({REPORTS_QUEUE: 3})
    metrics.register_scrape_collector("queue_depth", collector)
    assert b'reportflow_reports_queue_depth_messages{queue="reports"} 3.0' in metrics.render_latest()[0]
    collector.broker.lengths[REPORTS_QUEUE] = 0
    assert b'reportflow_reports_queue_depth_messages{queue="reports"} 0.0' in metrics.render_latest()[0]


def test_an_app_built_again_replaces_its_collector(scrape_collectors):
    metrics.register_scrape_collector("queue_depth", queue_collector({REPORTS_QUEUE: 3}))
    metrics.register_scrape_collector("queue_depth", queue_collector({REPORTS_QUEUE: 5}))
    body = metrics.render_latest()[0]
    assert body.count(b"reportflow_reports_queue_depth_messages{") == 2  # the queue and the lane's, once each
    assert b'reportflow_reports_queue_depth_messages{queue="reports"} 5.0' in body
    assert b'reportflow_reports_queue_depth_messages{queue="reports.lane"} 0.0' in body


def test_an_unreachable_broker_leaves_out_the_depth_not_the_scrape(scrape_collectors):
    metrics.register_scrape_collector("queue_depth", queue_collector(None))
    body = metrics.render_latest()[0]
    assert b"reportflow_reports_queue_depth_messages{" not in body
    assert b"python_gc_objects_collected_total" in body  # everything else is still there


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_live_delivery_measures_latency_and_the_wait_from_creation():
    m, now = notifier_metrics(), datetime.now(UTC)
    before = {k: sample(k, **lab) for k, lab in [
        ("reportflow_notifier_delivery_latency_seconds_count", {"event": EVENT_SUCCEEDED}),
        ("reportflow_notifier_delivery_latency_seconds_sum", {"event": EVENT_SUCCEEDED}),
        ("reportflow_notifier_create_to_notify_seconds_count", {}),
        ("reportflow_notifier_create_to_notify_seconds_sum", {}),
        ("reportflow_notifier_events_delivered_total", {"event": EVENT_SUCCEEDED})]}
    m.observe_live(EVENT_SUCCEEDED, {"seq": 1, "report_id": "r", "time": (now - timedelta(seconds=2)).isoformat(),
                                     "created_at": (now - timedelta(seconds=30)).isoformat()})
    grown = {k: sample(k, **({"event": EVENT_SUCCEEDED} if "delivery" in k or "delivered" in k else {})) - v
             for k, v in before.items()}
    assert grown["reportflow_notifier_delivery_latency_seconds_count"] == 1
    assert 2 <= grown["reportflow_notifier_delivery_latency_seconds_sum"] < 3
    assert grown["reportflow_notifier_create_to_notify_seconds_count"] == 1
    assert 30 <= grown["reportflow_notifier_create_to_notify_seconds_sum"] < 31
    assert grown["reportflow_notifier_events_delivered_total"] == 1


def test_events_without_usable_times_are_counted_not_timed():
    m = notifier_metrics()
    count = "reportflow_notifier_delivery_latency_seconds_count"
    before = (sample(count, event=EVENT_PROGRESS), sample("reportflow_notifier_create_to_notify_seconds_count"),
              sample("reportflow_notifier_events_delivered_total", event=EVENT_PROGRESS))
    m.observe_live(EVENT_PROGRESS, {"seq": 1, "time": "not a time", "created_at": datetime.now(UTC).isoformat()})
    m.observe_live(EVENT_PROGRESS, {"seq": 2, "time": "2024-01-01T00:00:00"})  # no zone: ambiguous
    assert sample(count, event=EVENT_PROGRESS) == before[0]
    assert sample("reportflow_notifier_create_to_notify_seconds_count") == before[1], "only report.succeeded"
    assert sample("reportflow_notifier_events_delivered_total", event=EVENT_PROGRESS) == before[2] + 2


def test_live_delivery_reports_each_event_read_once_and_each_socket_delivery():
    gate = DeliveryGate()
    sent, received, delivered = [], [], []
    live = LiveDelivery(gate, lambda sid, event, payload: sent.append((sid, payload["seq"])))
    live.on_received = lambda event, payload: received.append(payload["seq"])
    live.on_delivered = lambda event, payload: delivered.append(payload["seq"])
    for sid, user in (("s1", "u"), ("s2", "u"), ("s3", "someone else")):
        gate.open(sid, 0, user_id=user)
        gate.replay(sid, [])  # replay done: live events pass
    message = live_message("u", EVENT_SUCCEEDED, {"seq": 1, "report_id": "r"})
    live(message)
    live(message)  # a duplicate: read from the channel again, sent to no socket
    live(b"not json")
    live(live_message("u", "not.a.report.event", {"seq": 2}))
    assert received == [1, 1]
    assert delivered == [1, 1]
    assert sorted(sent) == [("s1", 1), ("s2", 1)]
