"""Benchmark job throughput: 50 users each create one 1k-row report at once; jobs/s and create->notified.

Why: a user waits for `report.succeeded` on their socket, and with many users at once most of that wait is
the queue, i.e. the worker's fixed cost per job. This starts the real system as processes (PostgreSQL, a
private Redis, moto's S3 server, auth, reports, a notifier and a worker with the default two pool processes,
the production clocks: 30 s lease, 0.5 s progress interval), connects each user's socket, then creates
all the reports at once and times each one from its POST to its `report.succeeded` event.

The peer, measured in the same run on the same broker with the same pool: a bare Celery worker (two
prefork processes) running a task that does nothing but count itself: the rate no doorbell design could
beat on this machine. It also reads the CPU time every part spent over the rounds (each service's process
group, this database's PostgreSQL backends, Redis, moto, and this client with its 50 sockets): CPU-ms per
job, whose sum bounds jobs/s on this machine's cores however idle it is.

    .venv/bin/python bench/bench_throughput.py [--users 50] [--rows 1000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import celery
import psutil
import psycopg2
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.clients import Api, SocketClient  # noqa: E402
from support.infra import Postgres  # noqa: E402
from support.processes import BIN, ServerProcess  # noqa: E402
from support.stack import (  # noqa: E402
    Infra,
    running_infra,
    start_auth,
    start_notifier,
    start_reports,
    start_worker,
)
from support.waiting import wait_until  # noqa: E402

PRODUCTION_CLOCKS = {"JOB_LEASE_SECONDS": "30", "PROGRESS_INTERVAL_SECONDS": "0.5", "RECONCILE_INTERVAL_SECONDS": "15",
                     "REQUEUE_AFTER_SECONDS": "60", "LOG_LEVEL": "WARNING"}
NOOP_COUNTER = "bench:noop"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class CpuMeter:
    """CPU seconds (user + system) each part of the system has used: read before and after the rounds."""

    def __init__(self, parts: dict[str, ServerProcess], postgres: Postgres):
        self.parts, self.postgres = parts, postgres

    def _processes(self) -> dict[str, list[psutil.Process]]:
        found = {}
        for name, server in self.parts.items():
            root = psutil.Process(server.proc.pid)
            found[name] = [root, *root.children(recursive=True)]
        with psycopg2.connect(self.postgres.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()")
            found["postgres"] = [psutil.Process(pid) for (pid,) in cur.fetchall()]
        found["bench client"] = [psutil.Process()]
        return found

    def read(self) -> dict[tuple[str, int], float]:
        seconds = {}
        for name, processes in self._processes().items():
            for process in processes:
                try:
                    times = process.cpu_times()
                    seconds[(name, process.pid)] = times.user + times.system
                except psutil.Error:  # gone meanwhile
                    pass
        return seconds

    @staticmethod
    def per_part(before: dict, after: dict) -> dict[str, float]:
        """CPU seconds per part between two readings (a process started in between counts from zero)."""
        used: dict[str, float] = {}
        for (name, pid), value in after.items():
            used[name] = used.get(name, 0.0) + value - before.get((name, pid), 0.0)
        return used


def one_round(users: list, notifier_url: str, rows: int) -> tuple[float, list[float]]:
    """All users create at once; returns (jobs/s from the first POST to the last notification, latencies)."""
    sockets = [SocketClient(notifier_url, user.token).connect() for user in users]
    for user in users:  # the servers may have closed idle keep-alive connections since the last round
        user.api.http.close()
    latencies: list[float] = [0.0] * len(users)
    go = threading.Barrier(len(users) + 1)

    def run(i: int) -> None:
        go.wait()
        started = time.perf_counter()
        report = users[i].create({"rows": rows, "columns": 8, "seed": i})
        sockets[i].wait_event("report.succeeded", report["id"], timeout=300)
        latencies[i] = time.perf_counter() - started

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(users))]
    for t in threads:
        t.start()
    go.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for sock in sockets:
        sock.disconnect()
    return len(users) / elapsed, latencies


def noop_rate(infra: Infra, tasks: int) -> float:
    """Tasks/s of a bare Celery worker (2 prefork processes, the same broker) running a task that only counts."""
    env = infra.base_env(BENCH_BROKER_URL=infra.redis.url, PYTHONPATH=str(Path(__file__).parent))
    worker = ServerProcess("noop-celery", [str(BIN / "celery"), "-A", "bench_throughput", "worker", "-c", "2",
                                           "-P", "prefork", "-Q", "bench-noop", "--without-gossip",
                                           "--without-mingle", "-l", "WARNING"], env, infra.workdir).start(None)
    store = redis.Redis.from_url(infra.redis.url)
    try:
        app = noop_app(infra.redis.url)
        store.delete(NOOP_COUNTER)
        app.send_task("bench.noop", queue="bench-noop")  # the worker is up once it ran one
        wait_until(lambda: store.get(NOOP_COUNTER), 60, "the no-op worker")
        store.delete(NOOP_COUNTER)
        started = time.perf_counter()
        for _ in range(tasks):
            app.send_task("bench.noop", queue="bench-noop")
        wait_until(lambda: int(store.get(NOOP_COUNTER) or 0) >= tasks, 120, "the no-op tasks", interval=0.005)
        return tasks / (time.perf_counter() - started)
    finally:
        worker.stop()


def noop_app(broker_url: str) -> celery.Celery:
    app = celery.Celery("bench-noop", broker=broker_url, set_as_current=False)
    app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True,
                    worker_hijack_root_logger=False)
    counter = redis.Redis.from_url(broker_url)

    @app.task(name="bench.noop")
    def noop() -> None:
        counter.incr(NOOP_COUNTER)
    return app


if os.environ.get("BENCH_BROKER_URL"):  # imported by `celery -A bench_throughput worker` in noop_rate
    app = noop_app(os.environ["BENCH_BROKER_URL"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with running_infra(Path(tempfile.mkdtemp(prefix="rf-bench-throughput-"))) as infra:
        run(infra, args)


def run(infra: Infra, args: argparse.Namespace) -> None:
    postgres, redis_server, s3 = infra.postgres, infra.redis, infra.s3
    started: list[ServerProcess] = []
    try:
        auth = start_auth(infra, **PRODUCTION_CLOCKS)
        started.append(auth)
        jwks = auth.url + "/.well-known/jwks.json"
        reports = start_reports(infra, jwks, **PRODUCTION_CLOCKS)
        started.append(reports)
        notifier = start_notifier(infra, jwks, **PRODUCTION_CLOCKS)
        started.append(notifier)
        worker = start_worker(infra, **PRODUCTION_CLOCKS)
        started.append(worker)
        users = [Api(auth.url, reports.url).new_user() for _ in range(args.users)]
        print(f"CPUs: {os.cpu_count()}  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}  "
              f"Python {platform.python_version()}  Celery {celery.__version__}  {platform.platform()}")
        print(f"{args.users} users x 1 report of {args.rows:,} rows x 8 columns at once; worker: 2 pool processes; "
              "storage: moto S3 on loopback; one notifier, one reports and one auth process (2 workers each)")
        meter = CpuMeter({"worker": worker, "reports": reports, "notifier": notifier, "auth": auth,
                          "redis": redis_server.process, "moto (S3)": s3.process}, postgres)
        cpu_before = meter.read()
        rates, latencies = [], []
        print(f"{'round':>5} {'jobs/s':>8} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
        for n in range(1, args.rounds + 1):
            rate, lat = one_round(users, notifier.url, args.rows)
            rates.append(rate)
            latencies.extend(lat)
            print(f"{n:>5} {rate:>8.1f} {percentile(lat, 0.5):>7.2f} {percentile(lat, 0.99):>7.2f} {max(lat):>7.2f}")
        used = CpuMeter.per_part(cpu_before, meter.read())
        for process in reversed(started):
            process.stop()
        started.clear()
        peer = noop_rate(infra, 1000)
        rate = statistics.median(rates)
        p99 = percentile(latencies, 0.99)
        print(f"reportflow: {rate:.1f} jobs/s (median of {args.rounds} rounds), create->notified p50 "
              f"{percentile(latencies, 0.5):.2f} s, p99 {p99:.2f} s over {len(latencies)} jobs")
        jobs = len(latencies)
        print("CPU per job, ms: " + ", ".join(f"{name} {seconds / jobs * 1e3:.1f}" for name, seconds in
                                               sorted(used.items(), key=lambda item: -item[1])))
        total = sum(used.values()) / jobs
        print(f"  all parts {total * 1e3:.1f} CPU-ms per job: on {os.cpu_count()} idle cores at most "
              f"{os.cpu_count() / total:.0f} jobs/s; without the bench client "
              f"{os.cpu_count() / (total - used['bench client'] / jobs):.0f} jobs/s")
        print(f"peer, bare Celery no-op task, same broker, 2 prefork processes: {peer:.0f} tasks/s "
              f"(reportflow does {rate / peer:.1%} of it)")
        print(f"issue 14 targets: >= 50 jobs/s: {'met' if rate >= 50 else 'NOT met'} ({rate:.1f}); "
              f"p99 <= 1 s: {'met' if p99 <= 1 else 'NOT met'} ({p99:.2f} s)  "
              f"[load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}]")
    finally:
        for process in reversed(started):
            process.stop()


if __name__ == "__main__":
    main()
