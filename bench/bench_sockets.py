"""Benchmark one notifier process's capacity against a bare python-socketio server on the same setup.

Why: issue 14's targets for one notifier process: 10,000 WebSocket clients at <= 75 KB per socket, and with
5,000 users connected, events published at 500/s to users picked at random delivered with p99 < 250 ms from
publication to the socket. The peer is python-socketio alone (Server + RedisManager, a room per user, no
token check, no event log, no replay) served the same way (gunicorn, reportflow's gevent worker class, one
process, the same WORKER_CONNECTIONS), driven by the same clients in the same run.

What runs: a private redis-server; a JWKS served from this process (the notifier fetches auth's keys from it;
tokens are signed here with a fresh Ed25519 key, so no auth service or database is needed); the notifier's
console script, then the peer; clients in separate processes (tests/support/socket_swarm.py: asyncio, raw
WebSocket frames, two processes), so that the server is what is measured. Per server:
1. connect 10,000 sockets (5,000 users x 2): the server process's RSS delta / sockets, its CPU per connect;
   then close every 10th socket at once (`--drop-every`) and time until the server is quiet again (a mass
   disconnect), and count the sockets still open then (those the server dropped while it was busy are not);
2. on a fresh server, one socket for each of the 5,000 users; publish events at the rate (8 publishing
   threads) to random users for the duration, the notifier's through reportflow's own publishing function
   (EventLog.publish), the peer's through python-socketio's RedisManager emitter, and time each from its
   `time` field (set at publication) to its arrival in the client process.
Figures only: nothing is asserted.

    .venv/bin/python bench/bench_sockets.py [--sockets 10000] [--rate 500] [--seconds 20] [--swarms 2]
        [--drop-every 10]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.infra import RedisServer  # noqa: E402
from support.processes import BIN, ServerProcess  # noqa: E402
from support.socket_swarm import SwarmProcess  # noqa: E402
from support.stack import generate_private_key_pem  # noqa: E402
from support.waiting import free_port, wait_until  # noqa: E402

PEER_CHANNEL = "bench-peer"
EVENT = "report.progress"
KB = 1024
PUBLISHERS = 8
ROWS = [("sockets connected", "connected", "{:,}"), ("connects failed", "failed", "{:,}"),
        ("connect time s", "connect_s", "{:.1f}"), ("server CPU ms per connect", "cpu_ms_per_connect", "{:.2f}"),
        ("RSS before MiB", "rss_before", "mib"), ("RSS after MiB", "rss_after", "mib"),
        ("KB per socket", "kb_per_socket", "{:.1f}"), ("disconnects processed in s", "drain_s", "{:.1f}"),
        ("server CPU ms per disconnect", "cpu_ms_per_disconnect", "{:.2f}"),
        ("sockets kept, open after it", "kept", "{:,}"), ("of those, still open", "kept_open", "{:,}"),
        ("sockets open (1 per user)", "open", "{:,}"),
        ("publish rate /s", "publish_rate", "{:.0f}"), ("events published", "published", "{:,}"),
        ("events received", "received", "{:,}"), ("latency p50 ms", "p50_ms", "{:.1f}"),
        ("latency p99 ms", "p99_ms", "{:.1f}"), ("latency max ms", "max_ms", "{:.1f}"),
        ("server CPU % while publishing", "server_cpu_pct", "{:.0f}"),
        ("client processes' CPU s (all)", "swarm_cpu_s", "{:.1f}"),
        ("sockets open at the end", "still_open", "{:,}")]
KEYS = [key for _label, key, _fmt in ROWS]


def serve_peer(port: int, redis_url: str) -> None:
    """The peer server (this file run with --serve-peer): python-socketio alone under reportflow's gunicorn."""
    from reportflow_common.serve import run_gunicorn
    from reportflow_common.settings import NOTIFIER, load_settings

    settings = load_settings(NOTIFIER, {"REDIS_URL": redis_url, "JWKS_URL": "http://unused", "HOST": "127.0.0.1",
                                        "PORT": str(port), "LOG_LEVEL": "WARNING"})

    def load():
        import socketio
        server = socketio.Server(async_mode="gevent", ping_interval=20, ping_timeout=20,
                                 client_manager=socketio.RedisManager(redis_url, channel=PEER_CHANNEL))

        @server.on("connect")
        def connect(sid, _environ, auth=None):
            server.enter_room(sid, f"user:{auth['user']}")

        return socketio.WSGIApp(server)

    run_gunicorn(load, settings, worker_class="gevent", workers=1)


class Jwks(ThreadingHTTPServer):
    """auth's /.well-known/jwks.json for the notifier, and the tokens it verifies."""

    def __init__(self):
        from reportflow_auth.keys import load_signing_key
        self.key = load_signing_key(generate_private_key_pem())
        body = json.dumps(self.key.jwks()).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/.well-known/jwks.json"

    def token(self, user_id: str) -> str:
        now = int(time.time())
        claims = {"sub": user_id, "iss": "reportflow", "iat": now, "nbf": now, "exp": now + 3600, "type": "access",
                  "jti": uuid.uuid4().hex, "sid": uuid.uuid4().hex, "fresh": False}
        return jwt.encode(claims, self.key.private_pem, algorithm="EdDSA", headers={"kid": self.key.kid})


def worker_process(server: ServerProcess) -> psutil.Process:
    """gunicorn's one worker (the process holding the sockets), not its master."""
    return wait_until(lambda: (kids := psutil.Process(server.proc.pid).children(recursive=True)) and kids[-1], 30,
                      "the gunicorn worker")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def quiet(process: psutil.Process, window: float = 1.0) -> bool:
    """True once the process used under 10 % of a core over `window` seconds (its backlog is done)."""
    before = cpu_seconds(process)
    time.sleep(window)
    return cpu_seconds(process) - before < 0.1 * window


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def publisher(kind: str, redis_url: str):
    """publish(user_id) for one server: reportflow's EventLog, or python-socketio's emitter for the peer."""
    if kind == "reportflow":
        from reportflow_common.events import EventLog
        from reportflow_common.redis_pool import redis_client
        from reportflow_common.settings import REPORTS, load_settings
        settings = load_settings(REPORTS, {"REDIS_URL": redis_url, "DATABASE_URL": "unused", "JWKS_URL": "unused"})
        events = EventLog(redis_client(settings))
        return lambda user: events.publish(user, EVENT, {"report_id": user, "progress": 50})
    import socketio
    emitter = socketio.RedisManager(redis_url, write_only=True, channel=PEER_CHANNEL)
    return lambda user: emitter.emit(EVENT, {"report_id": user, "progress": 50,
                                             "time": datetime.now(UTC).isoformat()}, room=f"user:{user}")


def start_swarms(server: ServerProcess, auths: list[dict], count: int) -> list[SwarmProcess]:
    share = -(-len(auths) // count)
    return [SwarmProcess(server.url, auths[i:i + share]) for i in range(0, len(auths), share)]


def hold_sockets(server: ServerProcess, auths: list[dict], args) -> dict:
    """Phase 1: connect every socket; memory and CPU per socket; then a mass disconnect of every n-th."""
    worker = worker_process(server)
    time.sleep(1)
    rss_before, cpu_before = worker.memory_info().rss, cpu_seconds(worker)
    swarms = start_swarms(server, auths, args.swarms)
    try:
        opened = [s.result() for s in swarms]
        connected = sum(o["connected"] for o in opened)
        time.sleep(2)
        rss_after, cpu_connect = worker.memory_info().rss, cpu_seconds(worker) - cpu_before
        dropped, cpu_before = time.perf_counter(), cpu_seconds(worker)
        still = sum(s.ask(f"drop {args.drop_every}")["open"] for s in swarms)
        wait_until(lambda: quiet(worker), 900, "the server to process the disconnects", interval=0)
        drain_s, cpu_disconnects = time.perf_counter() - dropped, cpu_seconds(worker) - cpu_before
        kept_open = sum(s.ask("report")["open"] for s in swarms)
        return {"connected": connected, "failed": sum(o["failed"] for o in opened),
                "kept": still, "kept_open": kept_open,
                "errors": [e for o in opened for e in o["errors"]][:3],
                "connect_s": max(o["seconds"] for o in opened), "rss_before": rss_before, "rss_after": rss_after,
                "kb_per_socket": (rss_after - rss_before) / KB / max(connected, 1),
                "cpu_ms_per_connect": 1000 * cpu_connect / max(connected, 1),
                "drain_s": drain_s, "cpu_ms_per_disconnect": 1000 * cpu_disconnects / max(connected - still, 1)}
    finally:
        for s in swarms:
            s.stop()


def deliver(kind: str, server: ServerProcess, auths: list[dict], users: list[str], args, redis_url: str) -> dict:
    """Phase 2, on a fresh server: one socket per user; events at the rate to random users; their latency."""
    worker = worker_process(server)
    swarms = start_swarms(server, auths, args.swarms)
    try:
        result = {"open": sum(s.result()["connected"] for s in swarms)}
        wait_until(lambda: quiet(worker), 300, "the server to settle after the connects", interval=0)
        for s in swarms:
            s.ask("record")
        publish, total = publisher(kind, redis_url), int(args.rate * args.seconds)
        picks = random.Random(14).choices(users, k=total)
        cpu_before, started = cpu_seconds(worker), time.perf_counter()

        def publish_share(first: int) -> None:  # several publishers, like several workers, each on the schedule
            for index in range(first, total, PUBLISHERS):
                delay = started + index / args.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                publish(picks[index])

        threads = [threading.Thread(target=publish_share, args=(i,)) for i in range(PUBLISHERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result["publish_rate"] = total / (time.perf_counter() - started)
        wait_until_received(swarms, total)
        result["server_cpu_pct"] = 100 * (cpu_seconds(worker) - cpu_before) / (time.perf_counter() - started)
        reports = [s.ask("report") for s in swarms]
        latencies = [x for r in reports for x in r["latencies"]]
        result.update(published=total, received=len(latencies), p50_ms=1000 * percentile(latencies, 0.5),
                      p99_ms=1000 * percentile(latencies, 0.99), max_ms=1000 * max(latencies, default=float("nan")),
                      swarm_cpu_s=sum(r["cpu_seconds"] for r in reports), still_open=sum(r["open"] for r in reports))
        if result["still_open"] < result["open"]:
            print(f"{kind} closed sockets; the end of its log:\n{server.tail(30)}")
        return result
    finally:
        for s in swarms:
            s.stop()


def wait_until_received(swarms: list[SwarmProcess], total: int, patience: float = 15.0) -> None:
    """Until every event arrived, or `patience` seconds passed with none arriving (then the count tells)."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < patience:
        received = sum(s.ask("report")["received"] for s in swarms)
        if received >= total:
            return
        if received != last:
            last, since = received, time.monotonic()
        time.sleep(0.5)


@contextlib.contextmanager
def running(server: ServerProcess):
    try:
        yield server
    finally:
        server.stop()


def start_notifier(workdir: Path, redis_url: str, jwks: Jwks) -> ServerProcess:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "REPORTFLOW_"))}
    env.update(REDIS_URL=redis_url, JWKS_URL=jwks.url, HOST="127.0.0.1", PORT=str(port), LOG_LEVEL="WARNING",
               SOCKETIO_TRANSPORTS="websocket", PROMETHEUS_MULTIPROC_DIR=str(workdir / f"metrics-{port}"))
    return ServerProcess(f"notifier-{port}", [str(BIN / "reportflow-notifier")], env, workdir,
                         url=f"http://127.0.0.1:{port}").start()


def start_peer(workdir: Path, redis_url: str) -> ServerProcess:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "REPORTFLOW_"))}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / f"metrics-{port}")
    return ServerProcess(f"peer-{port}", [sys.executable, __file__, "--serve-peer", str(port), redis_url], env,
                         workdir, url=f"http://127.0.0.1:{port}").start("/socket.io/?EIO=4&transport=polling")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=10_000, help="sockets held (two per user)")
    parser.add_argument("--rate", type=float, default=500, help="events published per second")
    parser.add_argument("--seconds", type=float, default=20, help="how long events are published")
    parser.add_argument("--swarms", type=int, default=2, help="client processes")
    parser.add_argument("--drop-every", type=int, default=10, help="the mass disconnect closes every n-th socket")
    parser.add_argument("--servers", default="reportflow,python-socketio", help="which to measure (profiling)")
    parser.add_argument("--phases", default="hold,deliver", help="which phases to run (profiling)")
    parser.add_argument("--serve-peer", nargs=2, metavar=("PORT", "REDIS_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_peer:
        return serve_peer(int(args.serve_peer[0]), args.serve_peer[1])

    from reportflow_common.serve import raise_open_file_limit
    limit = raise_open_file_limit()
    with tempfile.TemporaryDirectory(prefix="bench-sockets-") as tmp:
        workdir = Path(tmp)
        redis = RedisServer(workdir).start()
        jwks = Jwks()
        try:
            users = [str(uuid.uuid4()) for _ in range(args.sockets // 2)]
            tokens = {user: jwks.token(user) for user in users}
            results = {}
            for kind in args.servers.split(","):
                ours = kind == "reportflow"
                auths = {u: {"token": tokens[u]} if ours else {"user": u} for u in users}
                start = functools.partial(start_notifier, workdir, redis.url, jwks) if ours else \
                    functools.partial(start_peer, workdir, redis.url)
                results[kind] = {**dict.fromkeys(KEYS, float("nan")), "errors": []}
                if "hold" in args.phases:
                    with running(start()) as server:
                        results[kind].update(hold_sockets(server, [auths[u] for u in users for _ in (0, 1)], args))
                if "deliver" in args.phases:
                    with running(start()) as server:
                        results[kind].update(deliver(kind, server, list(auths.values()), users, args, redis.url))
            report(results, args, limit)
        finally:
            jwks.shutdown()
            redis.stop()


def report(results: dict, args, limit: int) -> None:
    from importlib.metadata import version
    names = list(results)
    print(f"CPUs: {os.cpu_count()}  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}  "
          f"Python {platform.python_version()}  open files: {limit}  "
          + "  ".join(f"{name} {version(name)}" for name in ("gunicorn", "gevent", "python-socketio",
                                                              "python-engineio")))
    print(f"{args.sockets:,} sockets ({args.sockets // 2:,} users x 2) from {args.swarms} client processes, "
          f"every {args.drop_every} closed at once; then "
          f"{args.sockets // 2:,} users x 1, {args.rate:.0f} events/s to random users for {args.seconds:.0f} s")
    header = "".join(f" {name:>16}" for name in names) + (f" {'ratio':>7}" if len(names) == 2 else "")
    print(f"{'':32}{header}")
    for label, key, fmt in ROWS:
        values = [results[name][key] for name in names]
        cell = (lambda v: f"{v / KB / KB:.1f}") if fmt == "mib" else fmt.format
        ratio = f" {values[0] / values[1]:>7.2f}" if len(values) == 2 and isinstance(values[0], float) and values[1] \
            else ""
        print(f"{label:32}" + "".join(f" {cell(v):>16}" for v in values) + ratio)
    for name in names:
        if results[name]["errors"]:
            print(f"{name}: first connect errors: {results[name]['errors']}")
    if "reportflow" not in results:
        return
    ours = results["reportflow"]
    print(f"targets: <= 75 KB per socket: {ours['kb_per_socket']:.1f} KB "
          f"({'met' if ours['kb_per_socket'] <= 75 and ours['connected'] == args.sockets else 'NOT met'}); "
          f"p99 < 250 ms: {ours['p99_ms']:.1f} ms "
          f"({'met' if ours['p99_ms'] < 250 and ours['received'] == ours['published'] else 'NOT met'})")


if __name__ == "__main__":
    main()
