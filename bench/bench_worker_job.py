"""Benchmark the worker's CPU per job, in one process, without Celery: A/B of two trees in the same run.

Why: `bench_throughput.py` measures the whole system with 50 users at once; on a shared 2-core machine its
per-job CPU of the worker swings by a third between runs of the same code, more than a change of a few percent.
This runs what a worker process does for each job (`run_next_job`: claim, build, upload, record the end,
publish the event) one job after another in a child process per tree (its clients made as a pool process
makes them), against real PostgreSQL, Redis and moto's S3 server, and reads the CPU the child and this
database's PostgreSQL backends used per job. The children take turns, a batch of --jobs each, round after
round (the order alternating), so a change of the machine's load falls on both; the ratio of each round's
pair is taken, then their median.

    .venv/bin/python bench/bench_worker_job.py                              # this tree only
    .venv/bin/python bench/bench_worker_job.py --tree old=/tmp/old/services --tree new=services --rounds 5

A tree is a `services` folder; its worker and common packages are imported through PYTHONPATH (the installed
ones otherwise). Each job is a `demo` report of --rows x 8 (1,000 by default, as in bench_throughput).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "tests"))

CLOCKS = {"JOB_LEASE_SECONDS": "30", "PROGRESS_INTERVAL_SECONDS": "0.5", "LOG_LEVEL": "WARNING"}


def child(jobs: int, warmup: int) -> None:
    """In the child: make the worker's per-process context as a pool process does, run jobs, print CPU."""
    import psutil
    import psycopg2

    from reportflow_common.settings import WORKER, load_settings
    from reportflow_worker.celery_app import create_celery
    from reportflow_worker.jobs import run_next_job

    settings = load_settings(WORKER)
    app = create_celery(settings)
    ctx = app.reportflow_resources.get()
    for _ in range(warmup):
        assert run_next_job(ctx) == "succeeded"

    def backends() -> dict[int, float]:
        with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()")
            pids = [pid for (pid,) in cur.fetchall()]
        used = {}
        for pid in pids:
            try:
                times = psutil.Process(pid).cpu_times()
                used[pid] = times.user + times.system
            except psutil.Error:
                pass
        return used

    print("ready", flush=True)
    for _line in sys.stdin:  # one batch of `jobs` jobs per line from the parent, which alternates the children
        pg_before = backends()
        started_cpu, started = time.process_time(), time.perf_counter()
        for _ in range(jobs):
            assert run_next_job(ctx) == "succeeded"
        cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
        pg_after = backends()
        pg = sum(v - pg_before.get(pid, 0.0) for pid, v in pg_after.items())
        print(json.dumps({"worker_ms": cpu / jobs * 1e3, "postgres_ms": pg / jobs * 1e3,
                          "wall_ms": wall / jobs * 1e3}), flush=True)


def queue_jobs(url: str, user_id: uuid.UUID, count: int, rows: int, first_seed: int) -> None:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for i in range(count):
            cur.execute("INSERT INTO reports (id, user_id, type, params, status, progress, attempts, "
                        "cancel_requested, created_at, rung_at) VALUES (%s, %s, 'demo', %s, 'queued', 0, 0, false, "
                        "now(), now())",
                        (str(uuid.uuid4()), str(user_id),
                         json.dumps({"rows": rows, "columns": 8, "seed": first_seed + i})))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[], help="name=path of a services folder")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=30, help="jobs per batch; the trees' batches alternate")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.jobs, args.warmup)
        return
    import psutil
    import psycopg2

    from support.stack import running_infra

    trees = dict(t.split("=", 1) for t in args.tree) or {"this tree": ""}
    results: dict[str, list[dict]] = {name: [] for name in trees}
    with running_infra(Path(tempfile.mkdtemp(prefix="rf-bench-worker-job-"))) as infra:
        user_id = uuid.uuid4()
        with psycopg2.connect(infra.postgres.url) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO users (id, email, password_hash, created_at) VALUES (%s, %s, 'x', now())",
                        (str(user_id), f"bench-{user_id.hex[:12]}@example.com"))
        seed = 0
        print(f"CPUs: {os.cpu_count()}  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
              f"{args.jobs} jobs of {args.rows:,} x 8 per child after {args.warmup} warm-up jobs")
        print(f"{'round':>5} {'tree':>12} {'worker CPU-ms/job':>18} {'PostgreSQL':>11} {'moto':>6} {'redis':>6} "
              f"{'wall ms/job':>12}")
        children = {}
        for name, path in trees.items():  # started one after another: each claims only its warm-up jobs
            queue_jobs(infra.postgres.url, user_id, args.warmup, args.rows, seed)
            seed += args.warmup
            env = infra.base_env(**CLOCKS)
            if path:
                root = Path(path).resolve()
                env["PYTHONPATH"] = os.pathsep.join(str(root / p) for p in ("worker", "common"))
            children[name] = subprocess.Popen(
                [sys.executable, __file__, "--child", "--jobs", str(args.jobs), "--warmup", str(args.warmup)],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if children[name].stdout.readline().strip() != "ready":
                raise SystemExit(f"{name}: the child did not start")
        servers = {"moto": psutil.Process(infra.s3.process.proc.pid),
                   "redis": psutil.Process(infra.redis.process.proc.pid)}
        try:
            for n in range(1, args.rounds + 1):
                order = list(children.items()) if n % 2 else list(reversed(children.items()))
                for name, proc in order:
                    queue_jobs(infra.postgres.url, user_id, args.jobs, args.rows, seed)
                    seed += args.jobs
                    before = {k: sum(p.cpu_times()[:2]) for k, p in servers.items()}
                    proc.stdin.write("run\n")
                    proc.stdin.flush()
                    result = json.loads(proc.stdout.readline())
                    for k, p in servers.items():
                        result[k + "_ms"] = (sum(p.cpu_times()[:2]) - before[k]) / args.jobs * 1e3
                    results[name].append(result)
                    print(f"{n:>5} {name:>12} {result['worker_ms']:>18.2f} {result['postgres_ms']:>11.2f} "
                          f"{result['moto_ms']:>6.2f} {result['redis_ms']:>6.2f} {result['wall_ms']:>12.2f}")
        finally:
            for proc in children.values():
                proc.stdin.close()
                proc.wait(timeout=60)
    print("medians:")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"  {name:>12}: worker {med['worker_ms']:.2f}, PostgreSQL {med['postgres_ms']:.2f}, moto "
              f"{med['moto_ms']:.2f}, redis {med['redis_ms']:.2f} CPU-ms per job; wall {med['wall_ms']:.2f} ms")
    names = list(results)
    if len(names) == 2:  # each round's pair ran back to back: their ratio cancels most of the load's drift
        a, b = names
        for key in ("worker_ms", "postgres_ms"):
            ratios = [rb[key] / ra[key] for ra, rb in zip(results[a], results[b], strict=True) if ra[key]]
            print(f"  {b} / {a}, {key[:-3]} CPU per job: median of {len(ratios)} rounds' ratios "
                  f"{statistics.median(ratios):.3f} (lower quartile {statistics.quantiles(ratios, n=4)[0]:.3f}, "
                  f"upper {statistics.quantiles(ratios, n=4)[2]:.3f})")


if __name__ == "__main__":
    main()
