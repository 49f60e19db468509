"""Benchmark the notifier's long-polling guard against bare Flask-SocketIO (the peer), both under gunicorn's
gevent worker with the same engine.io settings (ping 20 s + 20 s, max_http_buffer_size 16 KiB).

Why: reportflow_notifier.polling_guard reads and checks every long-polling POST before engine.io sees it.
This prints what that costs a well-behaved client (an Engine.IO session opened, a packet posted, the session
closed: three HTTP requests, timed sequentially) and what it buys: rejected POSTs (a NOOP packet, a body over
the limit) sent from several threads, answered or not within the client's timeout, and whether /healthz
still answers afterwards. The peer lacks the notifier's other middleware too (request ids, metrics, the
HTTP guard), so the overhead printed is an upper bound for the polling guard.

    .venv/bin/python bench/bench_polling_guard.py [--sessions 500] [--abuse 200] [--threads 8]

Figures only: nothing here asserts a timing. Each server is one gunicorn process on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.infra import RedisServer  # noqa: E402
from support.processes import BIN, ServerProcess  # noqa: E402
from support.waiting import free_port  # noqa: E402

PEER_APP = '''
from flask import Flask
from flask_socketio import SocketIO
app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent", ping_interval=20, ping_timeout=20, max_http_buffer_size=16 * 1024)
@app.get("/healthz")
def healthz():
    return {"status": "ok"}
'''


def start_notifier(workdir: Path, redis_url: str) -> ServerProcess:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
           "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "WARNING",
           "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"metrics-{port}")}
    return ServerProcess(f"notifier-{port}", [str(BIN / "reportflow-notifier")], env, workdir,
                         url=f"http://127.0.0.1:{port}").start()


def start_peer(workdir: Path) -> ServerProcess:
    (workdir / "peer_app.py").write_text(PEER_APP)
    port = free_port()
    argv = [str(BIN / "gunicorn"), "-k", "gevent", "-w", "1", "--no-control-socket", "--log-level", "warning",
            "-b", f"127.0.0.1:{port}", "--chdir", str(workdir), "peer_app:app"]
    return ServerProcess(f"peer-{port}", argv, dict(os.environ), workdir, url=f"http://127.0.0.1:{port}") \
        .start(ready_path="/healthz")


def polling(url: str, sid: str | None = None) -> str:
    return f"{url}/socket.io/?EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")


def session_round_trip(http: requests.Session, url: str) -> float:
    """Open an Engine.IO session, post a PONG, post a CLOSE: seconds for the three requests."""
    started = time.perf_counter()
    sid = json.loads(http.get(polling(url), timeout=10).text[1:])["sid"]
    assert http.post(polling(url, sid), data="3", timeout=10).status_code == 200
    assert http.post(polling(url, sid), data="1", timeout=10).status_code == 200
    return time.perf_counter() - started


def abuse(url: str, count: int, threads: int, timeout: float) -> tuple[int, float]:
    """`count` rejected POSTs on fresh sessions from `threads` threads: (answered within `timeout`, seconds)."""
    def one(i: int) -> bool:
        with requests.Session() as http:
            sid = json.loads(http.get(polling(url), timeout=10).text[1:])["sid"]
            try:
                http.post(polling(url, sid), data="6" if i % 2 else "4" + "x" * 20_000, timeout=timeout)
                return True
            except requests.Timeout:
                return False
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        answered = sum(pool.map(one, range(count)))
    return answered, time.perf_counter() - started


def health(url: str) -> str:
    started = time.perf_counter()
    try:
        status = requests.get(url + "/healthz", timeout=5).status_code
        return f"{status} in {(time.perf_counter() - started) * 1000:.1f} ms"
    except requests.RequestException as exc:
        return f"no answer ({type(exc).__name__} after {time.perf_counter() - started:.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--abuse", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=2.0, help="client timeout of each rejected POST")
    args = parser.parse_args()
    from importlib.metadata import version
    print(f"# {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("# " + ", ".join(f"{p} {version(p)}" for p in ("python-engineio", "python-socketio", "Flask-SocketIO",
                                                        "simple-websocket", "gunicorn", "gevent")))
    with tempfile.TemporaryDirectory(prefix="bench-polling-") as tmp:
        workdir = Path(tmp)
        redis = RedisServer(workdir).start()
        servers = {}
        try:
            servers["notifier (guarded)"] = start_notifier(workdir, redis.url)
            servers["bare Flask-SocketIO (peer)"] = start_peer(workdir)
            print(f"\n## well-behaved sessions: {args.sessions} sequential (GET open, POST pong, POST close)")
            for name, server in servers.items():
                with requests.Session() as http:
                    for _ in range(20):  # warm-up
                        session_round_trip(http, server.url)
                    times = sorted(session_round_trip(http, server.url) for _ in range(args.sessions))
                p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
                print(f"{name:28} p50 {p50 * 1000:6.2f} ms   p99 {p99 * 1000:6.2f} ms   "
                      f"{len(times) / sum(times):6.0f} sessions/s")
            print(f"\n## rejected POSTs: {args.abuse} from {args.threads} threads, client timeout {args.timeout} s")
            for name, server in servers.items():
                answered, seconds = abuse(server.url, args.abuse, args.threads, args.timeout)
                print(f"{name:28} answered {answered}/{args.abuse} in {seconds:.1f} s; /healthz after: "
                      f"{health(server.url)}")
        finally:
            for server in servers.values():
                server.stop(10)
            redis.stop()


if __name__ == "__main__":
    main()
