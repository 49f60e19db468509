"""create_app(settings): the reports service's Flask application."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from celery import Celery
from flask import Flask
from prometheus_client import Counter
from redis import Redis, RedisError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common import contracts as c
from reportflow_common.api import openapi_blueprint
from reportflow_common.db import engines_for, make_session_factory, ping
from reportflow_common.events import EventLog
from reportflow_common.metrics import register_scrape_collector
from reportflow_common.queue import connect_producer, make_celery
from reportflow_common.redis_pool import redis_client
from reportflow_common.settings import Settings
from reportflow_common.storage import Storage, make_storage
from reportflow_common.tokens import JwksKeys, init_jwt
from reportflow_common.web import init_web

log = logging.getLogger(__name__)
DELETE_OUTCOMES = ("cancelled", "cancel_requested", "deleted")


class ReportsMetrics:
    def __init__(self):
        self.created = Counter("reportflow_reports_created_total", "Reports created, by type.", ["type"])
        self.deletes = Counter("reportflow_reports_delete_requests_total",
                               "DELETE of a report, by what it did (queued job cancelled, running job asked "
                               "to stop, finished report deleted).", ["outcome"])
        for report_type in c.REPORT_TYPES:  # every series exists from the start, so rate() sees the first one
            self.created.labels(report_type)
        for outcome in DELETE_OUTCOMES:
            self.deletes.labels(outcome)


class QueueDepthCollector:
    """Jobs waiting in the Celery queue (a Redis list), read from the broker at scrape time: no process
    keeps this number, and whichever gunicorn worker answers the scrape can ask."""

    def __init__(self, broker: Redis, queues: tuple[str, ...] = (c.REPORTS_QUEUE, c.LANE_QUEUE)):
        self.broker = broker
        self.queues = queues

    def describe(self):
        return []  # nothing to check at registration (and no broker call then)

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        family = GaugeMetricFamily("reportflow_reports_queue_depth_messages",
                                   "Jobs waiting in the broker queue, not yet taken by a worker.", labels=["queue"])
        try:
            for queue in self.queues:  # kombu keeps priority-0 messages (all of ours) under the queue's name
                family.add_metric([queue], float(self.broker.llen(queue)))
        except RedisError as exc:  # no sample rather than a failed scrape; the broker's own alerts say why
            log.warning("queue depth unavailable", extra={"error": str(exc)})
            return
        yield family


@functools.cache
def reports_metrics() -> ReportsMetrics:
    """One set per process: Prometheus refuses a second registration, and tests build apps repeatedly."""
    return ReportsMetrics()


@dataclass
class ReportsContext:
    settings: Settings
    sessions: sessionmaker[Session]
    redis: Redis
    storage: Storage
    celery: Celery
    events: EventLog
    metrics: ReportsMetrics
    reads: Engine  # AUTOCOMMIT: single statements, one round trip each (db.engines_for, records.py)
    keys: JwksKeys  # auth's public keys, which verify every token


def create_app(settings: Settings) -> Flask:
    from .routes import bp

    engine, single_statements = engines_for(settings)
    redis = redis_client(settings)
    storage = make_storage(settings)
    celery = make_celery(settings, "reportflow-reports")
    events = EventLog(redis, history_max=settings.event_history_max,
                      history_ttl=settings.event_history_ttl_seconds)
    if settings.effective_broker_url.startswith(("redis://", "rediss://")):
        register_scrape_collector("queue_depth", QueueDepthCollector(
            redis_client(settings, settings.effective_broker_url, socket_timeout=2, socket_connect_timeout=2)))
    app = Flask("reportflow_reports")
    keys = JwksKeys(settings.jwks_url)
    app.extensions["reportflow"] = ReportsContext(settings, make_session_factory(engine), redis, storage, celery,
                                                  events, reports_metrics(), single_statements, keys)
    init_web(app, "reports", {"postgres": lambda: ping(engine), "redis": redis.ping, "storage": storage.ping},
             settings.trusted_proxy_hops)
    init_jwt(app, redis, settings.jwt_issuer, key_for=keys.key_for)
    app.register_blueprint(bp)
    app.register_blueprint(openapi_blueprint())
    return app


def warm_up(app: Flask) -> None:
    """Open what the first requests of this process would (PostgreSQL with the create and the report read
    prepared, Redis, the broker's producer, auth's keys) before it serves: gunicorn calls this in each worker
    after `create_app`, so the first burst after a start is not slower (bench/README.md, the section on the
    first round). Best effort: what an outage leaves closed, the first requests open, as they did before; an
    unreachable part delays this worker's start by its connect timeout (a refused broker: ~6 s of kombu's retries)."""
    from . import records

    ctx: ReportsContext = app.extensions["reportflow"]
    steps = {
        "postgres": lambda: records.open_connection(ctx.reads, ctx.settings.job_order, ctx.sessions),
        "redis": ctx.redis.ping,
        "broker": lambda: connect_producer(ctx.celery),
        "jwks": ctx.keys.fetch,
    }
    for name, step in steps.items():
        try:
            step()
        except Exception as exc:
            log.warning("not ready ahead of the first request", extra={"part": name, "error": str(exc)})
