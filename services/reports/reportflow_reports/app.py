"""create_app(settings): the reports service's Flask application."""
from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import Flask
from prometheus_client import Counter
from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common.db import make_engine, make_session_factory, ping
from reportflow_common.events import EventLog
from reportflow_common.queue import make_celery
from reportflow_common.settings import Settings
from reportflow_common.storage import Storage, make_storage
from reportflow_common.tokens import JwksKeys, init_jwt
from reportflow_common.web import init_web


class ReportsMetrics:
    def __init__(self):
        self.created = Counter("reportflow_reports_created_total", "Reports created, by type.", ["type"])


_metrics: ReportsMetrics | None = None


def reports_metrics() -> ReportsMetrics:
    global _metrics
    if _metrics is None:
        _metrics = ReportsMetrics()
    return _metrics


@dataclass
class ReportsContext:
    settings: Settings
    sessions: sessionmaker[Session]
    redis: Redis
    storage: Storage
    celery: Celery
    events: EventLog
    metrics: ReportsMetrics


def create_app(settings: Settings) -> Flask:
    from .routes import bp

    engine = make_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    storage = make_storage(settings)
    celery = make_celery(settings, "reportflow-reports")
    events = EventLog(redis, settings.redis_url, history_max=settings.event_history_max,
                      history_ttl=settings.event_history_ttl_seconds)
    app = Flask("reportflow_reports")
    app.extensions["reportflow"] = ReportsContext(settings, make_session_factory(engine), redis, storage, celery,
                                                  events, reports_metrics())
    init_web(app, "reports", {"postgres": lambda: ping(engine), "redis": redis.ping, "storage": storage.ping})
    init_jwt(app, redis, settings.jwt_issuer, key_for=JwksKeys(settings.jwks_url).key_for)
    app.register_blueprint(bp)
    return app
