"""Benchmark the whole path a user waits on: POST /v1/reports -> `report.succeeded` on the socket.

Why: the builder benchmark measures one function; this starts the real system as processes (the same
console scripts and servers as the e2e tests: PostgreSQL, a private Redis, moto's S3 server, auth, reports,
two notifiers, a worker) and times create-to-notified for a small baseline report and a large one, while
sampling the worker pool processes' resident memory. Figures only: nothing is asserted.

    .venv/bin/python bench/bench_end_to_end.py [--rows 1000,100000] [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.clients import Api, SocketClient  # noqa: E402
from support.infra import Postgres, RedisServer, S3Server  # noqa: E402
from support.stack import Infra, generate_private_key_pem, start_stack  # noqa: E402

MIB = 1024 * 1024


class PeakMemory(threading.Thread):
    """Samples the RSS of a process's children (the Celery pool) every 50 ms; keeps the peak."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.parent, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()

    def run(self):
        while not self.stop.wait(0.05):
            for child in self.parent.children():
                try:
                    self.peak = max(self.peak, child.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass


def time_report(api: Api, notifier_url: str, worker_pid: int, rows: int) -> tuple[float, float, int]:
    user = api.new_user()
    sock = SocketClient(notifier_url, user.token).connect()
    memory = PeakMemory(worker_pid)
    memory.start()
    try:
        started = time.perf_counter()
        report = user.create({"rows": rows, "columns": 8, "seed": 1})
        _name, done = sock.wait_for(lambda n, p: n == "report.succeeded" and p["report_id"] == report["id"], 600)
        elapsed = time.perf_counter() - started
    finally:
        memory.stop.set()
        sock.disconnect()
    return elapsed, memory.peak / MIB, done["size_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000,100000", help="comma-separated row counts (first = baseline)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    sizes = [int(x) for x in args.rows.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="rf-bench-"))
    postgres = Postgres(workdir).start()
    postgres.migrate()
    redis, s3 = RedisServer(workdir).start(), S3Server(workdir).start()
    stack = start_stack(Infra(postgres, redis, s3, generate_private_key_pem(), workdir))
    try:
        api = Api(stack.auth_url, stack.reports_url)
        print(f"CPUs: {os.cpu_count()}  Python: {platform.python_version()}  worker concurrency: 2  columns: 8  "
              f"storage: moto S3 on loopback  platform: {platform.platform()}")
        print(f"{'rows':>9} {'run':>4} {'create->notified s':>19} {'rows/s':>9} {'pool peak RSS MiB':>18} {'MiB':>7}")
        results = {}
        for rows in sizes:
            for run in range(1, args.repeat + 1):
                seconds, peak, size = time_report(api, stack.notifiers[0].url, stack.worker.proc.pid, rows)
                results.setdefault(rows, []).append((seconds, peak))
                print(f"{rows:>9,} {run:>4} {seconds:>19.2f} {rows / seconds:>9,.0f} {peak:>18.1f} {size / MIB:>7.2f}")
        base, big = sizes[0], sizes[-1]
        best = {r: min(s for s, _ in v) for r, v in results.items()}
        peaks = {r: max(p for _, p in v) for r, v in results.items()}
        print(f"{big:,} rows vs {base:,}-row baseline: {best[big]:.2f} s vs {best[base]:.2f} s to be notified; "
              f"worker pool peak RSS {peaks[big]:.1f} MiB vs {peaks[base]:.1f} MiB")
    finally:
        stack.stop()
        for server in (s3, redis, postgres):
            server.stop()


if __name__ == "__main__":
    main()
