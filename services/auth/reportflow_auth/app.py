"""create_app(settings): the auth service's Flask application."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from flask import Flask
from prometheus_client import Counter
from redis import Redis
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common.db import engine_for, make_session_factory, ping
from reportflow_common.ratelimit import Throttle
from reportflow_common.redis_pool import redis_client
from reportflow_common.settings import Settings
from reportflow_common.tokens import init_jwt
from reportflow_common.web import init_web

from .keys import SigningKey, load_signing_key


class AuthMetrics:
    def __init__(self):
        self.logins = Counter("reportflow_auth_logins_total", "Login attempts by outcome.", ["outcome"])
        self.tokens_issued = Counter("reportflow_auth_tokens_issued_total", "Token pairs issued.")
        self.tokens_refreshed = Counter("reportflow_auth_tokens_refreshed_total", "Refresh rotations.")
        self.tokens_revoked = Counter("reportflow_auth_tokens_revoked_total", "Revocations by reason.", ["reason"])
        for outcome in ("success", "failure"):  # every series exists from the start, so rate() sees the first one
            self.logins.labels(outcome)
        for reason in ("logout", "refresh_reuse"):
            self.tokens_revoked.labels(reason)


@functools.cache
def auth_metrics() -> AuthMetrics:
    """One set per process: Prometheus refuses a second registration, and tests build apps repeatedly."""
    return AuthMetrics()


@dataclass
class AuthContext:
    settings: Settings
    key: SigningKey
    engine: Engine
    sessions: sessionmaker[Session]
    redis: Redis
    metrics: AuthMetrics
    throttle: Throttle


def create_app(settings: Settings) -> Flask:
    from .routes import bp

    key = load_signing_key(settings.jwt_private_key, settings.jwt_previous_public_keys)
    engine = engine_for(settings)
    redis = redis_client(settings)
    app = Flask("reportflow_auth")
    app.extensions["reportflow"] = AuthContext(settings, key, engine, make_session_factory(engine), redis,
                                               auth_metrics(), Throttle(settings.redis_url, redis))
    init_web(app, "auth", {"postgres": lambda: ping(engine), "redis": redis.ping}, settings.trusted_proxy_hops)
    init_jwt(app, redis, settings.jwt_issuer, private_key_pem=key.private_pem, public_key=key.public_key,
             key_for=key.public_key_for)
    app.register_blueprint(bp)
    return app
