"""Benchmark the reports API: POST /v1/reports and GET /v1/reports/{id} against /healthz on the same server.

Why: /healthz is the same gunicorn process, Flask app and middleware doing no work of its own, so the ratio
of an endpoint's req/s to it is what the endpoint's own work costs, whatever the machine's load. This starts
PostgreSQL, a private Redis, moto's S3 server, auth and the reports service in its production layout
(`reportflow-reports`: gunicorn gthread, 2 processes x 4 threads) and drives each endpoint with wrk (16
connections, 2 threads, a user's bearer token), the three in turn, round after round, the order rotating,
and reads the CPU time the reports processes, this database's PostgreSQL backends and Redis spent per request.
No worker runs: a stand-in deletes the user's new queued reports every 0.2 s, as workers and retention would
keep them few, so every POST meets the same small table and active count instead of a growing backlog.

    .venv/bin/python bench/bench_api.py [--seconds 10] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_throughput import CpuMeter  # noqa: E402

from reportflow_common.db import make_engine  # noqa: E402
from support.clients import Api  # noqa: E402
from support.stack import Infra, running_infra, start_auth, start_reports  # noqa: E402

SERVER_ENV = {"LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": "2", "MAX_ACTIVE_REPORTS_PER_USER": "10000"}
WRK_SCRIPT = """wrk.method = "{method}"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{body}'
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, script: Path, seconds: int, connections: int) -> tuple[float, float, int]:
    """(req/s, p99 ms, non-2xx responses) of one wrk run."""
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, float(value) * UNITS[unit], int(errors.group(1)) if errors else 0


class Drain(threading.Thread):
    """Deletes the user's queued reports but `keep` every 0.2 s (the stand-in for workers and retention)."""

    def __init__(self, database_url: str, user_id: str, keep: str):
        super().__init__(daemon=True)
        self.engine, self.user_id, self.keep, self.stop = make_engine(database_url), user_id, keep, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            with self.engine.begin() as conn:
                conn.execute(text("DELETE FROM reports WHERE user_id = :u AND status = 'queued' AND id <> :k"),
                             {"u": self.user_id, "k": self.keep})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench_api: wrk is not installed (apt-get install -y wrk); skipped")
        return
    with running_infra(Path(tempfile.mkdtemp(prefix="rf-bench-api-"))) as infra:
        run(infra, args)


def run(infra: Infra, args: argparse.Namespace) -> None:
    postgres, redis, workdir = infra.postgres, infra.redis, infra.workdir
    servers, drain = [], None
    try:
        servers.append(start_auth(infra, **SERVER_ENV))
        reports = start_reports(infra, servers[0].url + "/.well-known/jwks.json", **SERVER_ENV)
        servers.append(reports)
        user = Api(servers[0].url, reports.url).new_user()
        report = user.create({"rows": 10})
        drain = Drain(postgres.url, user.me()["id"], report["id"])
        drain.start()
        body = json.dumps({"type": "demo", "params": {"rows": 1000}})
        targets = {"/healthz": ("GET", "/healthz", ""),
                   "GET /v1/reports/{id}": ("GET", f"/v1/reports/{report['id']}", ""),
                   "POST /v1/reports": ("POST", "/v1/reports", body)}
        scripts = {}
        for name, (method, _path, payload) in targets.items():
            scripts[name] = workdir / f"{len(scripts)}.lua"
            scripts[name].write_text(WRK_SCRIPT.format(method=method, token=user.token, body=payload))
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
        print(f"CPUs: {os.cpu_count()}  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}  "
              f"Python {platform.python_version()}  {version}")
        print(f"reports service: gunicorn gthread, 2 processes x 4 threads (production layout); wrk -t2 "
              f"-c{args.connections} -d{args.seconds}s per run, {args.rounds} rounds, order rotating; same token")
        meter = CpuMeter({"reports": reports, "redis": redis.process}, postgres)
        cpu: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in targets}
        ratios: dict[str, list[float]] = {name: [] for name in targets}
        names = list(targets)
        for n in range(args.rounds):
            order = names[n % 3:] + names[:n % 3]
            runs = {}
            for name in order:
                before = meter.read()
                runs[name] = wrk(reports.url + targets[name][1], scripts[name], args.seconds, args.connections)
                used = CpuMeter.per_part(before, meter.read())
                requests_done = runs[name][0] * args.seconds
                cpu[name].append({part: used.get(part, 0.0) / requests_done * 1e3
                                  for part in ("reports", "postgres", "redis")})
            for name, run in runs.items():
                results[name].append(run)
                ratios[name].append(run[0] / runs["/healthz"][0])
            print(f"round {n + 1}: " + ", ".join(f"{name} {runs[name][0]:,.0f} req/s" for name in names))
        print(f"{'endpoint':<22} {'req/s':>8} {'p99 ms':>8} {'non-2xx':>8} {'x /healthz':>11}"
              f"   CPU-ms per request: {'reports':>7} {'postgres':>8} {'redis':>6}")
        summary = {}
        for name in names:
            rate = statistics.median(r[0] for r in results[name])
            p99 = statistics.median(r[1] for r in results[name])
            ratio = statistics.median(ratios[name])
            summary[name] = (ratio, p99)
            per = {part: statistics.median(run[part] for run in cpu[name]) for part in ("reports", "postgres", "redis")}
            print(f"{name:<22} {rate:>8,.0f} {p99:>8.1f} {sum(r[2] for r in results[name]):>8} {ratio:>10.0%}"
                  f"   {'':>19} {per['reports']:>7.2f} {per['postgres']:>8.2f} {per['redis']:>6.2f}")
        for name, target in (("POST /v1/reports", 0.25), ("GET /v1/reports/{id}", 0.50)):
            ratio, p99 = summary[name]
            print(f"issue 14 target {name}: >= {target:.0%} of /healthz: {'met' if ratio >= target else 'NOT met'} "
                  f"({ratio:.0%}); p99 < 100 ms: {'met' if p99 < 100 else 'NOT met'} ({p99:.1f} ms)")
    finally:
        if drain is not None:
            drain.stop.set()
            drain.join()
        for server in reversed(servers):
            server.stop()


if __name__ == "__main__":
    main()
