"""Benchmark fair scheduling: a small report behind ten large reports of another user, under each job order.

Why: issue 16. With first-in first-out across users, one user's ten large reports took both pool processes
and a second user's 1k-row report waited behind all ten. This starts the real system as processes (the same
console scripts and servers as the e2e tests, the default pool of two processes) once per mode, in the same
run: one user creates ten large reports; once they fill the pool, another user creates one small report. It
prints the small report's create -> `report.succeeded` time and the large reports' throughput (their rows over
the time from the first create to the last `report.succeeded`), the time the pool spent building them (the sum of
their started_at -> finished_at: it grows with the machine's load, not with the order) and the pool's idle
slot-seconds (2 x makespan - building: what the scheduling itself costs). Figures only: nothing is asserted.

Modes: `fifo` (JOB_ORDER=fifo, no lane: the order before issue 16), `fair-no-lane` (LANE_MAX_CELLS=0) and
`fair` (the default: fair order and the reserved lane). They run in rounds, the order reversed every other round
(fifo, fair-no-lane, fair, then fair, fair-no-lane, fifo): a shared machine's speed drifts over minutes, and
each mode's throughput is compared with fifo's of the same round, so over two rounds a steady drift cancels.

    .venv/bin/python bench/bench_fairness.py                          # ten 1M-row reports, 2 rounds (minutes)
    .venv/bin/python bench/bench_fairness.py --large-rows 100000      # a quick run
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
from datetime import datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.clients import Api, SocketClient  # noqa: E402
from support.infra import Postgres, RedisServer, S3Server  # noqa: E402
from support.stack import Infra, generate_private_key_pem, start_stack  # noqa: E402
from support.waiting import wait_until  # noqa: E402

MODES = {"fifo": {"JOB_ORDER": "fifo", "LANE_MAX_CELLS": "0"},
         "fair-no-lane": {"JOB_ORDER": "fair", "LANE_MAX_CELLS": "0"},
         "fair": {"JOB_ORDER": "fair"}}
COLUMNS = 8
POOL = 2  # pool processes: the default WORKER_CONCURRENCY


def job_seconds(report: dict) -> float:
    """started_at -> finished_at of a report: the time a pool process spent on it."""
    started, finished = (datetime.fromisoformat(report[k]) for k in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def lane_ready(worker) -> bool:
    """The lane's pool process has made its clients (its "process ready" log line): the steady state of a
    worker that has been up for a while, which is what a small report meets in production."""
    for line in worker.output().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "process ready" and record.get("lane"):
            return True
    return False


def run_mode(infra: Infra, env: dict, large_count: int, large_rows: int, small_rows: int) -> dict:
    stack = start_stack(infra, **env)
    try:
        if env.get("LANE_MAX_CELLS") != "0":
            wait_until(lambda: lane_ready(stack.worker), 120, "the lane to be ready")
        api = Api(stack.auth_url, stack.reports_url)
        heavy, light = api.new_user(), api.new_user()
        heavy_sock = SocketClient(stack.notifiers[0].url, heavy.token).connect()
        light_sock = SocketClient(stack.notifiers[1].url, light.token).connect()
        try:
            first_created = time.perf_counter()
            large = [heavy.create({"rows": large_rows, "columns": COLUMNS, "seed": i})["id"]
                     for i in range(large_count)]
            wait_until(lambda: [heavy.get(r)["status"] for r in large].count("running") == 2, 120,
                       "the large reports to fill the pool")
            lane = stack.worker.lane_processes()  # up by now; their CPU from here on: the small job, then idle
            lane_cpu = cpu_seconds(lane)
            started = time.perf_counter()
            small = light.create({"rows": small_rows, "columns": COLUMNS, "seed": 1})
            position = small["queue_position"]
            light_sock.wait_event("report.succeeded", small["id"], 3600)
            small_seconds = time.perf_counter() - started
            for report_id in large:
                heavy_sock.wait_event("report.succeeded", report_id, 3600)
            makespan = time.perf_counter() - first_created
            lane_cpu = cpu_seconds(lane) - lane_cpu
            building = sum(job_seconds(heavy.get(report_id)) for report_id in large)
        finally:
            heavy_sock.disconnect()
            light_sock.disconnect()
        return {"small_seconds": small_seconds, "position": position, "makespan": makespan,
                "idle_slot_seconds": POOL * makespan - building, "building": building,
                "rows_per_second": large_count * large_rows / makespan, "lane_cpu": lane_cpu if lane else None}
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-rows", type=int, default=1_000_000)
    parser.add_argument("--large-count", type=int, default=10)
    parser.add_argument("--small-rows", type=int, default=1000)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--rounds", type=int, default=2, help="each runs every mode; the order reverses each round")
    args = parser.parse_args()
    modes = args.modes.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="rf-bench-fair-"))
    postgres = Postgres(workdir).start()
    postgres.migrate()
    redis, s3 = RedisServer(workdir).start(), S3Server(workdir).start()
    infra = Infra(postgres, redis, s3, generate_private_key_pem(), workdir)
    try:
        print(f"CPUs: {os.cpu_count()}  load average: {os.getloadavg()[0]:.1f}  Python: {platform.python_version()}  "
              f"pool: 2 processes  {args.large_count} large reports of {args.large_rows:,} rows x {COLUMNS} "
              f"(one user), then one of {args.small_rows:,} rows (another user)  storage: moto S3 on loopback  "
              f"{args.rounds} rounds, the order reversed every other one")
        print(f"{'round':>5} {'mode':<14} {'small: create->notified s':>26} {'its queue_position':>19} "
              f"{'large: makespan s':>18} {'large rows/s':>13} {'building s':>11} {'idle slot-s':>12} "
              f"{'lane CPU s':>11}")
        rounds: list[dict[str, dict]] = []
        for n in range(args.rounds):
            results = {}
            for mode in modes if n % 2 == 0 else modes[::-1]:
                r = results[mode] = run_mode(infra, MODES[mode], args.large_count, args.large_rows,
                                             args.small_rows)
                lane = f"{r['lane_cpu']:.2f}" if r["lane_cpu"] is not None else "-"
                print(f"{n + 1:>5} {mode:<14} {r['small_seconds']:>26.2f} {str(r['position']):>19} "
                      f"{r['makespan']:>18.1f} {r['rows_per_second']:>13,.0f} {r['building']:>11.1f} "
                      f"{r['idle_slot_seconds']:>12.1f} {lane:>11}", flush=True)
            rounds.append(results)
        if "fifo" in modes:
            for mode in (m for m in modes if m != "fifo"):
                ratios = [r[mode]["rows_per_second"] / r["fifo"]["rows_per_second"] for r in rounds]
                small = [r[mode]["small_seconds"] for r in rounds]
                fifo_small = [r["fifo"]["small_seconds"] for r in rounds]
                print(f"{mode}: the small report {statistics.median(small):.2f} s vs fifo "
                      f"{statistics.median(fifo_small):.2f} s (medians); large throughput "
                      f"{statistics.mean(ratios):.1%} of fifo's in the same round (mean of "
                      f"{', '.join(f'{x:.1%}' for x in ratios)})")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        for server in (s3, redis, postgres):
            server.stop()


if __name__ == "__main__":
    main()
