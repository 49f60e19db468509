"""create_app(settings): the notifier's Flask app with Flask-SocketIO bound to it.

The connect handler is the only place a socket gets its user, from the verified token's subject; it hears
that user's events and nothing else. The one client event is `auth.refresh` (a fresh token of the same
user). Live events and revocations come from the project's Redis channels, read by one subscriber per
process (`subscriber.py`), and are emitted to this process's own sockets only.
"""
from __future__ import annotations

import functools
import gc
import logging
import time
from datetime import UTC, datetime
from typing import NamedTuple

from flask import Flask, request
from flask_socketio import ConnectionRefusedError, SocketIO, disconnect
from prometheus_client import Counter, Gauge, Histogram
from redis import RedisError

from reportflow_common.contracts import (
    EVENT_AUTH_REFRESH,
    EVENT_RESET,
    EVENT_SESSION_ENDED,
    EVENT_SUCCEEDED,
    EVENTS_CHANNEL,
    FORBIDDEN,
    REPORT_EVENTS,
    REVOCATIONS_CHANNEL,
    REVOKED,
    SESSION_END_REASONS,
    SOCKETIO_NAMESPACE,
    TOKEN_EXPIRED,
)
from reportflow_common.events import EventLog
from reportflow_common.problems import Problem, problem_body, unavailable
from reportflow_common.redis_pool import redis_client
from reportflow_common.settings import Settings
from reportflow_common.tokens import JwksKeys, init_jwt, is_revoked, read_revocation, verify_access_token
from reportflow_common.web import init_web

from .delivery import DeliveryGate, LiveDelivery, StalledSockets
from .page import page_blueprint
from .polling_guard import guard_polling, upgrades_first
from .sessions import OpenSockets
from .socket_rooms import IndexedRoomsManager
from .subscriber import ChannelSubscriber

log = logging.getLogger(__name__)
CATCH_UP_SWEEP_SECONDS = 2.0  # how often connected sockets are compared with their users' event logs
# users whose positions one sweep reads in one Redis round trip: 5,000 at once held the process (and every
# delivery) for up to seconds on a loaded machine (bench/bench_sockets.py)
SWEEP_BATCH = 250
CATCH_UP_ROUNDS = 3  # replays in a row for one socket before a remaining gap is let through
CATCH_UP_PATIENCE_SECONDS = 300.0  # how long a catch-up waits for Redis before letting buffered events through
EXPIRY_CHECK_SECONDS = 0.25  # how often sockets are compared with their tokens' expiry
# The cyclic garbage collector in a notifier process: with 5,000 sockets it tracks ~1.4 million objects, and each
# full collection walked all of them while every delivery waited (0.4-1.8 s on this 2-core machine, one or two
# per 20 s of events at 500/s: the p99 of bench/bench_sockets.py). A young generation of 50,000 (CPython's
# default is 700) lets the short-lived objects of deliveries, pings and connects die before they are promoted,
# so the old generation grows only with real sockets and full collections become rare; each young collection
# stays a few ms. Cyclic garbage is still collected: young, then old, as CPython does.
GC_THRESHOLDS = (50_000, 10, 10)


class EventSeries(NamedTuple):
    """One event's labelled series, looked up once (`labels()` per event was ~8 % of a notifier's delivery CPU)."""
    delivered: Counter
    received: Counter
    latency: Histogram


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
                                "Events read from the events channel (each notifier process reads every one once it "
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
        self.sessions_ended = Counter("reportflow_notifier_sessions_ended_total",
                                      "Sockets disconnected because their login ended, by reason.", ["reason"])
        self.token_refreshes = Counter("reportflow_notifier_token_refreshes_total",
                                       "auth.refresh events from clients, by outcome.", ["outcome"])
        for reason in SESSION_END_REASONS:
            self.sessions_ended.labels(reason)
        for outcome in ("ok", "refused"):
            self.token_refreshes.labels(outcome)
        for reason in ("unauthorized", "unavailable"):  # every series exists from the start, for rate()
            self.refused.labels(reason)
        self._by_event = {event: self._labelled(event) for event in REPORT_EVENTS}

    def _labelled(self, event: str) -> EventSeries:
        return EventSeries(self.delivered.labels(event), self.received.labels(event), self.latency.labels(event))

    def _series(self, event: str) -> EventSeries:
        """`event`'s series; the contract's events from the cache."""
        return self._by_event.get(event) or self._labelled(event)

    def count_delivered(self, event: str) -> None:
        self._series(event).delivered.inc()

    def count_received(self, event: str) -> None:
        self._series(event).received.inc()

    def observe_live(self, event: str, payload: dict) -> None:
        """A live event was sent on a socket (replays are not timed: the client was away, not waiting)."""
        series = self._series(event)
        series.delivered.inc()
        now = datetime.now(UTC)
        sent = _parse_time(payload.get("time"))
        if sent is not None:
            series.latency.observe(max(0.0, (now - sent).total_seconds()))
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


def create_worker_app(settings: Settings) -> Flask:
    """The app of the notifier's gunicorn worker (`main`): `create_app`, then the garbage collector set for a
    long-lived process holding many objects (`GC_THRESHOLDS`). What start-up built lives as long as the process,
    so it is frozen out of every later collection (`gc.freeze`)."""
    app = create_app(settings)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return app


def create_app(settings: Settings) -> Flask:
    redis = redis_client(settings)
    events = EventLog(redis, history_max=settings.event_history_max,
                      history_ttl=settings.event_history_ttl_seconds)
    metrics = notifier_metrics()
    gate, logins = DeliveryGate(), OpenSockets()
    background: list = []  # the process's long-running tasks, started with its first socket

    app = Flask("reportflow_notifier", static_folder=None)
    socketio = SocketIO(app, async_mode="gevent", client_manager=IndexedRoomsManager(),  # O(1) disconnects
                        cors_allowed_origins=settings.allowed_origins or None, transports=settings.transports,
                        ping_interval=20, ping_timeout=20, max_http_buffer_size=16 * 1024)
    guard = guard_polling(app, socketio)  # every /socket.io request answered in bounded time (see polling_guard)
    init_web(app, "notifier", {"redis": redis.ping}, settings.trusted_proxy_hops,  # wraps Socket.IO's middleware too
             edge=lambda chain: upgrades_first(chain, guard))  # but WebSockets skip its frames (see there)
    init_jwt(app, redis, settings.jwt_issuer, key_for=JwksKeys(settings.jwks_url).key_for)
    app.extensions["reportflow"] = socketio

    app.register_blueprint(page_blueprint(settings))  # the web page: /, /static/*, /favicon.ico

    def _emit(sid: str, event: str, payload: dict) -> None:
        socketio.emit(event, payload, to=sid, namespace=SOCKETIO_NAMESPACE, ignore_queue=True)

    live = LiveDelivery(gate, _emit)
    live.on_received = lambda event, _payload: metrics.count_received(event)
    live.on_delivered = lambda event, payload: metrics.resets.inc() if event == EVENT_RESET \
        else metrics.observe_live(event, payload)
    live.on_gap = lambda sid: socketio.start_background_task(_catch_up, sid)

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
        # before anything yields: a revocation published after the deny-list check just made finds this socket
        logins.add(sid, claims)
        requested, epoch = _last_seq(auth), _epoch(auth)
        try:
            plan = events.replay_plan(user_id, epoch, requested)
        except RedisError:
            logins.forget(sid)
            metrics.refused.labels("unavailable").inc()
            raise ConnectionRefusedError("unavailable", {"code": "unavailable"}) from None
        gate.open(sid, plan.start, plan.epoch, user_id)  # live events wait in the gate until the replay is done
        metrics.connected.inc()
        socketio.start_background_task(_replay, sid, user_id, plan)
        if not background:
            background.extend(socketio.start_background_task(task) for task in (
                subscriber.run_forever, _sweep_forever, _expire_forever))
        log.info("socket connected", extra={"user_id": user_id, "last_seq": requested, "epoch": epoch,
                                            "reset": plan.reset is not None})

    @socketio.on(EVENT_AUTH_REFRESH)
    def refresh_token(data=None):
        """A fresh access token for this socket, verified as on connect and of the same user; the ack says
        whether it was taken (the socket's user, and so what it hears, never changes)."""
        token = data.get("token") if isinstance(data, dict) else None
        try:
            claims = verify_access_token(redis, token)
            if not logins.renew(request.sid, claims):
                raise Problem(403, FORBIDDEN, "The token belongs to another user than this connection's.")
        except (Problem, RedisError) as exc:
            metrics.token_refreshes.labels("refused").inc()
            problem = exc if isinstance(exc, Problem) else unavailable("The token cannot be checked right now.")
            return {"ok": False, "problem": problem_body(problem)}
        metrics.token_refreshes.labels("ok").inc()
        return {"ok": True, "expires_at": claims["exp"]}

    def _end_session(sid: str, reason: str) -> None:
        """Tell the socket why (`session.ended`), then disconnect it; at most once per socket."""
        if logins.forget(sid) is None:
            return
        gate.close(sid)  # nothing more is sent to it, whatever arrives before the disconnect below
        _emit(sid, EVENT_SESSION_ENDED, {"reason": reason})
        metrics.sessions_ended.labels(reason).inc()
        with app.app_context():
            disconnect(sid=sid, namespace=SOCKETIO_NAMESPACE)
        log.info("socket's session ended", extra={"reason": reason})

    def _revoked(raw) -> None:
        revocation = read_revocation(raw)
        if revocation is None:
            return
        login, jti, reason = revocation
        for sid in logins.revoked(login, jti):
            _end_session(sid, reason if reason in SESSION_END_REASONS else REVOKED)

    def _subscribed() -> None:
        """Revocations published while this process was not subscribed were missed: the deny-list has them."""
        for sid, login in logins.all():
            if is_revoked(redis, login.claims()):
                _end_session(sid, REVOKED)

    subscriber = ChannelSubscriber(settings.redis_url, {EVENTS_CHANNEL: live, REVOCATIONS_CHANNEL: _revoked},
                                   _subscribed, socketio.sleep)

    def _expire_forever():
        while True:
            socketio.sleep(EXPIRY_CHECK_SECONDS)
            for sid in logins.expired(time.time()):
                _end_session(sid, TOKEN_EXPIRED)

    def _send(sid: str, items: list, missed: list) -> None:
        """Send a replay's outcome; events read from the log (`missed`) count as replayed."""
        logged = missed[-1][1]["seq"] if missed else 0
        for event, payload in items:
            _emit(sid, event, payload)
            if event == EVENT_RESET:
                metrics.resets.inc()
                continue
            metrics.count_delivered(event)
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
    def disconnected(*_args):
        logins.forget(request.sid)
        gate.close(request.sid)
        metrics.connected.dec()

    return app
