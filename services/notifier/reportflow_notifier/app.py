"""create_app(settings): the notifier's Flask app with Flask-SocketIO bound to it.

The connect handler is the only place a socket gets a room, and the room comes from the verified
token's subject; clients have no message that joins or leaves rooms.
"""
from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime

from flask import Flask, request
from flask_socketio import ConnectionRefusedError, SocketIO, join_room
from prometheus_client import Counter, Gauge, Histogram
from redis import Redis

from reportflow_common.contracts import EVENT_SUCCEEDED, REPORT_EVENTS, SOCKETIO_NAMESPACE, user_room
from reportflow_common.events import EventLog
from reportflow_common.problems import Problem
from reportflow_common.settings import Settings
from reportflow_common.tokens import JwksKeys, init_jwt, verify_access_token
from reportflow_common.web import init_web

from .delivery import DeliveryGate, SequencedRedisManager
from .page import page_blueprint
from .polling_guard import guard_polling

log = logging.getLogger(__name__)


class NotifierMetrics:
    def __init__(self):
        self.connected = Gauge("reportflow_notifier_connected_clients", "Sockets connected now.",
                               multiprocess_mode="livesum")
        self.refused = Counter("reportflow_notifier_connections_refused_total", "Refused sockets, by reason.",
                               ["reason"])
        self.delivered = Counter("reportflow_notifier_events_delivered_total", "Events sent to sockets, by event.",
                                 ["event"])
        self.replayed = Counter("reportflow_notifier_events_replayed_total", "Events sent again on reconnect.")
        self.replay_seconds = Histogram("reportflow_notifier_replay_duration_seconds", "Time to replay on connect.")
        self.received = Counter("reportflow_notifier_events_received_total",
                                "Events read from the Socket.IO queue (each notifier process reads every one once it "
                                "has had a socket).",
                                ["event"])
        self.latency = Histogram("reportflow_notifier_delivery_latency_seconds",
                                 "From an event's publication (its `time`) to its live send on a socket.", ["event"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.create_to_notify = Histogram(
            "reportflow_notifier_create_to_notify_seconds",
            "From a report's creation to its report.succeeded sent live on a socket: the wait the person sees.",
            buckets=(0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))
        for reason in ("unauthorized", "unavailable"):  # every series exists from the start, for rate()
            self.refused.labels(reason)
        for event in REPORT_EVENTS:
            self.delivered.labels(event)
            self.received.labels(event)
            self.latency.labels(event)

    def observe_live(self, event: str, payload: dict) -> None:
        """A live event was sent on a socket (replays are not timed: the client was away, not waiting)."""
        self.delivered.labels(event).inc()
        now = datetime.now(UTC)
        sent = _parse_time(payload.get("time"))
        if sent is not None:
            self.latency.labels(event).observe(max(0.0, (now - sent).total_seconds()))
        created = _parse_time(payload.get("created_at")) if event == EVENT_SUCCEEDED else None
        if created is not None:
            self.create_to_notify.observe(max(0.0, (now - created).total_seconds()))


def _parse_time(value) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else None


@functools.cache
def notifier_metrics() -> NotifierMetrics:
    """One set per process: Prometheus refuses a second registration, and tests build apps repeatedly."""
    return NotifierMetrics()


def _last_seq(auth) -> int | None:
    value = auth.get("last_seq") if isinstance(auth, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def create_app(settings: Settings) -> Flask:
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    events = EventLog(redis, settings.redis_url, history_max=settings.event_history_max,
                      history_ttl=settings.event_history_ttl_seconds)
    metrics = notifier_metrics()
    gate = DeliveryGate()
    manager = SequencedRedisManager(settings.redis_url, gate)
    manager.on_received = lambda event, _payload: metrics.received.labels(event).inc()
    manager.on_delivered = metrics.observe_live

    app = Flask("reportflow_notifier", static_folder=None)
    socketio = SocketIO(app, client_manager=manager, async_mode="gevent",
                        cors_allowed_origins=settings.allowed_origins or None, transports=settings.transports,
                        ping_interval=20, ping_timeout=20, max_http_buffer_size=16 * 1024)
    guard_polling(app, socketio)  # every /socket.io request answered in bounded time (see polling_guard)
    init_web(app, "notifier", {"redis": redis.ping}, settings.trusted_proxy_hops)  # wraps Socket.IO's middleware too
    init_jwt(app, redis, settings.jwt_issuer, key_for=JwksKeys(settings.jwks_url).key_for)
    app.extensions["reportflow"] = socketio

    app.register_blueprint(page_blueprint(settings))  # the web page: /, /static/*, /favicon.ico

    @socketio.on("connect")
    def connect(auth=None):
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            claims = verify_access_token(redis, token)
        except Problem as problem:
            reason = "unavailable" if problem.status == 503 else "unauthorized"
            metrics.refused.labels(reason).inc()
            raise ConnectionRefusedError(reason, {"code": reason}) from None
        user_id, sid = claims["sub"], request.sid
        current = events.last_seq(user_id)
        requested = _last_seq(auth)
        baseline = current if requested is None else min(requested, current)
        gate.open(sid, baseline)  # live events wait in the gate until the replay below is done
        join_room(user_room(user_id))
        metrics.connected.inc()
        socketio.start_background_task(_replay, sid, user_id, baseline)
        log.info("socket connected", extra={"user_id": user_id, "last_seq": requested})

    def _replay(sid: str, user_id: str, baseline: int):
        with metrics.replay_seconds.time():
            missed = events.since(user_id, baseline)
            for event, payload in gate.replay(sid, missed):
                socketio.emit(event, payload, to=sid, namespace=SOCKETIO_NAMESPACE, ignore_queue=True)
                metrics.delivered.labels(event).inc()
                if payload["seq"] <= (missed[-1][1]["seq"] if missed else 0):
                    metrics.replayed.inc()

    @socketio.on("disconnect")
    def disconnect(*_args):
        gate.close(request.sid)
        metrics.connected.dec()

    return app
