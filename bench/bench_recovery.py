"""Benchmark recovery from a vanished worker with the production recovery settings.

Why: a worker pod that vanishes mid-job (SIGKILL of every process: an OOM kill of the container, a lost node)
renews nothing any more; a reconciler takes its job back once the lease runs out and another worker runs it.
This measures how long that takes with the defaults (JOB_LEASE_SECONDS=30, RECONCILE_INTERVAL_SECONDS=5),
through the real system started as processes (PostgreSQL, a private Redis, moto's S3 server, auth, reports,
two workers with one pool process each): for each run, a job starts on worker A; worker B is started; A's
whole process group is SIGKILLed; the figures are the time from the kill until B has claimed the job again
and until it has succeeded. Figures only: nothing is asserted.

    .venv/bin/python bench/bench_recovery.py [--rows 1000000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.clients import Api  # noqa: E402
from support.infra import Postgres, RedisServer, S3Server  # noqa: E402
from support.stack import Infra, generate_private_key_pem, start_auth, start_reports, start_worker  # noqa: E402
from support.waiting import wait_until  # noqa: E402

# The defaults of settings.py, restated over the short clocks the test stack uses.
PRODUCTION = {"JOB_LEASE_SECONDS": "30", "RECONCILE_INTERVAL_SECONDS": "5", "REQUEUE_AFTER_SECONDS": "30",
              "TRANSIENT_RETRY_SECONDS": "300", "PROGRESS_INTERVAL_SECONDS": "0.5", "GRACEFUL_TIMEOUT_SECONDS": "60",
              "WORKER_CONCURRENCY": "1"}


def job_row(infra: Infra, report_id: str) -> tuple:
    with psycopg2.connect(infra.postgres.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, attempts, progress FROM reports WHERE id = %s", (report_id,))
        row = cur.fetchone()
    conn.close()
    return row


def one_run(infra: Infra, api: Api, rows: int) -> tuple[float, float]:
    user = api.new_user()
    doomed = start_worker(infra, **PRODUCTION)
    survivor = None
    try:
        report = user.create({"rows": rows, "columns": 8, "seed": 1})
        wait_until(lambda: (r := job_row(infra, report["id"]))[0] == "running" and r[2] > 0.05, 120, "the job to run")
        survivor = start_worker(infra, **PRODUCTION)
        doomed.signal_group(signal.SIGKILL)
        killed = time.monotonic()
        doomed.proc.wait(10)
        wait_until(lambda: job_row(infra, report["id"])[1] == 2, 120, "the job to be claimed again", interval=0.1)
        reclaimed = time.monotonic() - killed
        wait_until(lambda: job_row(infra, report["id"])[0] == "succeeded", 600, "the job to succeed", interval=0.1)
        return reclaimed, time.monotonic() - killed
    finally:
        doomed.stop()
        if survivor is not None:
            survivor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)  # still running when the second worker is up
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rf-bench-"))
    postgres = Postgres(workdir).start()
    postgres.migrate()
    redis, s3 = RedisServer(workdir).start(), S3Server(workdir).start()
    infra = Infra(postgres, redis, s3, generate_private_key_pem(), workdir)
    auth = start_auth(infra)
    reports = start_reports(infra, auth.url + "/.well-known/jwks.json")
    try:
        api = Api(auth.url, reports.url)
        print(f"CPUs: {os.cpu_count()}  Python: {platform.python_version()}  platform: {platform.platform()}")
        print("settings: " + " ".join(f"{k}={v}" for k, v in PRODUCTION.items()) + f"  job: {args.rows} rows x 8")
        print(f"{'run':>4} {'kill -> claimed again s':>24} {'kill -> succeeded s':>20}")
        figures = []
        for run in range(1, args.repeat + 1):
            reclaimed, succeeded = one_run(infra, api, args.rows)
            figures.append((reclaimed, succeeded))
            print(f"{run:>4} {reclaimed:>24.1f} {succeeded:>20.1f}", flush=True)
        print(f"median: claimed again after {statistics.median(f[0] for f in figures):.1f} s, "
              f"succeeded {statistics.median(f[1] for f in figures):.1f} s after the kill "
              f"(lease {PRODUCTION['JOB_LEASE_SECONDS']} s + reconciler interval up to "
              f"{PRODUCTION['RECONCILE_INTERVAL_SECONDS']} s, then the job's own time)")
    finally:
        reports.stop()
        auth.stop()
        s3.stop()
        redis.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
