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
from redis import RedisError

from reportflow_common.contracts import EVENT_RESET, EVENT_SUCCEEDED, REPORT_EVENTS, SOCKETIO_NAMESPACE, user_room
from reportflow_common.events import EventLog
from reportflow_common.problems import Problem
from reportflow_common.redis_pool import redis_client
from reportflow_common.settings import Settings
from reportflow_common.tokens import JwksKeys, init_jwt, verify_access_token
from reportflow_common.web import init_web

from .delivery import DeliveryGate, SequencedRedisManager, StalledSockets
from .page import page_blueprint
from .polling_guard import guard_polling

log = logging.getLogger(__name__)
CATCH_UP_SWEEP_SECONDS = 2.0  # how often connected sockets are compared with their users' event logs
# users whose positions one sweep reads in one Redis round trip: 5,000 at once held the process (and every
# delivery) for up to seconds on a loaded machine (bench/bench_sockets.py)
SWEEP_BATCH = 250
CATCH_UP_ROUNDS = 3  # replays in a row for one socket before a remaining gap is let through
CATCH_UP_PATIENCE_SECONDS = 300.0  # how long a catch-up waits for Redis before letting buffered events through


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
        self.resets = Counter("reportflow_notifier_event_resets_total",
                              "events.reset sent: a socket's point could not be replayed (event log lost, "
                              "expired or trimmed) or its user's numbering started again.")
        self.catch_ups = Counter("reportflow_notifier_catch_ups_total",
                                 "Replays from the event log for connected sockets that missed live events.")
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


def _epoch(auth) -> str | None:
    value = auth.get("epoch") if isinstance(auth, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


def create_app(settings: Settings) -> Flask:
    redis = redis_client(settings)
    events = EventLog(redis, settings.redis_url, history_max=settings.event_history_max,
                      history_ttl=settings.event_history_ttl_seconds)
    metrics = notifier_metrics()
    gate = DeliveryGate()
    manager = SequencedRedisManager(settings.redis_url, gate)
    manager.on_received = lambda event, _payload: metrics.received.labels(event).inc()
    manager.on_delivered = lambda event, payload: metrics.resets.inc() if event == EVENT_RESET \
        else metrics.observe_live(event, payload)
    manager.on_gap = lambda sid: socketio.start_background_task(_catch_up, sid)
    sweeping: list = []

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
        requested, epoch = _last_seq(auth), _epoch(auth)
        try:
            plan = events.replay_plan(user_id, epoch, requested)
        except RedisError:
            metrics.refused.labels("unavailable").inc()
            raise ConnectionRefusedError("unavailable", {"code": "unavailable"}) from None
        gate.open(sid, plan.start, plan.epoch, user_id)  # live events wait in the gate until the replay is done
        join_room(user_room(user_id))
        metrics.connected.inc()
        socketio.start_background_task(_replay, sid, user_id, plan)
        if not sweeping:
            sweeping.append(socketio.start_background_task(_sweep_forever))
        log.info("socket connected", extra={"user_id": user_id, "last_seq": requested, "epoch": epoch,
                                            "reset": plan.reset is not None})

    def _send(sid: str, items: list, missed: list) -> None:
        """Send a replay's outcome; events read from the log (`missed`) count as replayed."""
        logged = missed[-1][1]["seq"] if missed else 0
        for event, payload in items:
            socketio.emit(event, payload, to=sid, namespace=SOCKETIO_NAMESPACE, ignore_queue=True)
            if event == EVENT_RESET:
                metrics.resets.inc()
                continue
            metrics.delivered.labels(event).inc()
            if payload["seq"] <= logged:
                metrics.replayed.inc()

    def _replay(sid: str, user_id: str, plan):
        with metrics.replay_seconds.time():
            try:
                missed = events.since(user_id, plan.start)
            except RedisError:
                missed = []  # the catch-up below tries again
            admission = gate.replay(sid, missed, plan.reset)
            _send(sid, admission.deliver, missed)
        if admission.catch_up:
            _catch_up(sid)

    def _catch_up(sid: str):
        """A connected socket missed events (it is buffering now): replay from where it is, a reset first
        if that point is gone. While Redis cannot be read, wait for it (live events cannot come either)."""
        metrics.catch_ups.inc()
        rounds, waited = 0, 0.0
        while True:
            point = gate.point(sid)
            if point is None or point[0] is None:
                return
            user_id, epoch, last_seq = point
            try:
                plan = events.replay_plan(user_id, epoch, last_seq)
                missed = events.since(user_id, plan.start)
            except RedisError as exc:
                if waited >= CATCH_UP_PATIENCE_SECONDS:
                    log.warning("catch-up gave up", extra={"error": str(exc)})
                    _send(sid, gate.replay(sid, [], tolerate_gaps=True).deliver, [])
                    return
                socketio.sleep(CATCH_UP_SWEEP_SECONDS)
                waited += CATCH_UP_SWEEP_SECONDS
                continue
            rounds += 1
            admission = gate.replay(sid, missed, plan.reset, tolerate_gaps=rounds >= CATCH_UP_ROUNDS)
            _send(sid, admission.deliver, missed)
            if not admission.catch_up:
                return

    def _sweep_forever():
        """Finds sockets whose live events were lost with nothing after them to reveal the gap (e.g. the
        notifier's subscription to Redis was down) and catches them up."""
        stalled = StalledSockets()
        while True:
            socketio.sleep(CATCH_UP_SWEEP_SECONDS)
            try:
                cursors = gate.cursors()
                users, positions = list({user_id for _sid, user_id, _e, _s in cursors}), {}
                for first in range(0, len(users), SWEEP_BATCH):  # live deliveries go on between batches
                    positions.update(events.positions(users[first:first + SWEEP_BATCH]))
                    socketio.sleep(0)
                for sid in stalled.find(cursors, positions):
                    if gate.begin_catch_up(sid):
                        socketio.start_background_task(_catch_up, sid)
            except Exception as exc:  # Redis away: the next sweep looks again
                log.warning("catch-up sweep failed", extra={"error": str(exc)})

    @socketio.on("disconnect")
    def disconnect(*_args):
        gate.close(request.sid)
        metrics.connected.dec()

    return app
