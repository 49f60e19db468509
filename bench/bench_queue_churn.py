"""Benchmark the queue's reads as jobs go through a `reports` table that keeps a long history.

Why: the worker's claim and GET of a queued report (its place) rank the whole queue. Their cost must not grow
with the square of the queue's length (--queued), nor with the dead row versions every job leaves behind (queued,
running, each lease renewal), whose index entries stay until a VACUUM: PostgreSQL's autovacuum takes a table
once 20 % of it is dead, and `reports` keeps every report (expired ones too), so on a table of 500,000 reports
that is 100,000 dead rows, tens of thousands of jobs. No other benchmark or test sees either: their databases
are new and small, their queues short, and the machine's PostgreSQL runs with autovacuum off.

This starts a PostgreSQL of its own (autovacuum on, PostgreSQL's defaults but for a --naptime of 10 s instead of
60, which only makes it look sooner) with two databases at head, each with --history finished reports of 50
users and --queued jobs that wait throughout. Through one of them jobs go at --rate jobs/s (each job's row as
the services write it: inserted queued, claimed running with a lease, the lease renewed once, then succeeded);
the other, the peer, has none go through: what the same statements cost without dead rows. Every --every seconds
it times, in both, the worker's prepared claim (rolled back) and the prepared read of GET /v1/reports/{id} for a
queued report: execution time and buffers read (EXPLAIN ANALYZE, the best of three), with the dead rows and
autovacuum runs so far.

    .venv/bin/python bench/bench_queue_churn.py [--history 500000] [--queued 20] [--rate 200] [--seconds 120]
                                                [--every 10] [--naptime 10]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))

from servers import OwnPostgres  # noqa: E402

from reportflow_common.scheduling import FAIR  # noqa: E402
from reportflow_reports.records import _owned_with_position  # noqa: E402
from reportflow_worker.records import _claim  # noqa: E402
from support.processes import BIN  # noqa: E402

USERS = 50
BATCH = 100  # jobs per batch of the lifecycle


class Database:
    """One migrated database, its history loaded, with the two measured statements prepared."""

    def __init__(self, server: OwnPostgres, name: str, history: int, queued: int):
        admin = psycopg2.connect(server.admin_url)
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {name}")
        admin.close()
        self.name, self.url = name, server.admin_url.rsplit("/", 1)[0] + f"/{name}"
        subprocess.run([str(BIN / "reportflow-migrate")], env={**os.environ, "DATABASE_URL": self.url}, check=True,
                       capture_output=True, timeout=120)
        self.conn = psycopg2.connect(self.url)
        self.conn.autocommit = True
        self.cur = cur = self.conn.cursor()
        self.users = [str(uuid.uuid4()) for _ in range(USERS)]
        cur.executemany("INSERT INTO users (id, email, password_hash, created_at) VALUES (%s, %s, 'x', now())",
                        [(u, f"{u}@bench") for u in self.users])
        cur.execute("""INSERT INTO reports (id, user_id, type, params, status, progress, created_at, started_at,
                       finished_at, expires_at, rows, size_bytes, storage_key, attempts, cancel_requested)
                       SELECT gen_random_uuid(), (%s::uuid[])[1 + g %% 50], 'demo', '{"rows": 1000}', 'expired', 1,
                       now() - interval '30 days', now() - interval '30 days', now() - interval '30 days',
                       now() - interval '23 days', 1000, 60000, NULL, 1, false
                       FROM generate_series(1, %s) g""", (self.users, history))
        cur.execute("VACUUM ANALYZE reports")
        self.waiting = self._queue(queued)  # jobs that stay queued throughout: what the claim ranks, GET reads
        self.claim, self.read = _claim(FAIR, False), _owned_with_position(FAIR)
        cur.execute(self.claim.prepare)
        cur.execute(self.read.prepare)

    def _queue(self, n: int) -> list[tuple[str, str]]:
        self.cur.execute("""INSERT INTO reports (id, user_id, type, params, status, progress, created_at, attempts,
                            cancel_requested) SELECT gen_random_uuid(), (%s::uuid[])[1 + g %% 50], 'demo',
                            '{"rows": 1000}', 'queued', 0, clock_timestamp(), 0, false
                            FROM generate_series(1, %s) g RETURNING id::text, user_id::text""", (self.users, n))
        return self.cur.fetchall()

    def run_jobs(self, n: int) -> None:
        """`n` jobs through their life, each statement as the services' own (one row version each)."""
        ids = [i for i, _ in self._queue(n)]
        for sql in ("UPDATE reports SET status = 'running', attempt_token = gen_random_uuid(), attempts = 1, "
                    "lease_expires_at = now() + interval '30 s', started_at = now() WHERE id = ANY(%s::uuid[])",
                    "UPDATE reports SET lease_expires_at = now() + interval '30 s' WHERE id = ANY(%s::uuid[])",
                    "UPDATE reports SET status = 'succeeded', progress = 1, rows = 1000, size_bytes = 60000, "
                    "storage_key = 'k', finished_at = now(), expires_at = now() + interval '7 days', "
                    "attempt_token = NULL, lease_expires_at = NULL WHERE id = ANY(%s::uuid[])"):
            self.cur.execute(sql, (ids,))

    def _explain(self, sql: str, args: tuple) -> tuple[float, int]:
        self.cur.execute("BEGIN")
        self.cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", args)
        plan = self.cur.fetchone()[0][0]
        self.cur.execute("ROLLBACK")
        return plan["Execution Time"], plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]

    def measure(self) -> dict:
        """The better of three runs of each statement, and the table's dead rows and autovacuum runs."""
        report_id, user_id = self.waiting[-1]
        claims = [self._explain(f"EXECUTE {self.claim.name}(%s, '30 seconds')", (str(uuid.uuid4()),))
                  for _ in range(3)]
        reads = [self._explain(f"EXECUTE {self.read.name}(%s, %s)", (report_id, user_id)) for _ in range(3)]
        self.cur.execute("SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname = 'reports'")
        dead, vacuums = self.cur.fetchone()
        return {"claim": min(claims), "read": min(reads), "dead": dead, "vacuums": vacuums}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=500_000)
    parser.add_argument("--queued", type=int, default=20, help="jobs waiting in the queue throughout")
    parser.add_argument("--rate", type=int, default=200, help="jobs per second through the first database")
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--naptime", type=int, default=10)
    args = parser.parse_args()
    server = OwnPostgres().init()
    try:
        conn = psycopg2.connect(server.admin_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"ALTER SYSTEM SET autovacuum_naptime = {args.naptime}")
            cur.execute("SELECT pg_reload_conf()")
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        conn.close()
        print(f"CPUs: {os.cpu_count()}  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}  "
              f"Python {platform.python_version()}  PostgreSQL {version} (own server, autovacuum on, naptime "
              f"{args.naptime} s)")
        databases = {"jobs going through": Database(server, "churned", args.history, args.queued),
                     "peer, none": Database(server, "still", args.history, args.queued)}
        churned = databases["jobs going through"]
        print(f"{args.history:,} finished reports of {USERS} users and {args.queued:,} queued per database; jobs "
              f"through one at {args.rate}/s for {args.seconds} s", flush=True)
        print(f"{'t s':>5} {'jobs':>7} " + " ".join(
            f"| {name + ': claim ms':>28} {'buffers':>8} {'GET ms':>7} {'buffers':>8} {'dead rows':>9} {'vacuums':>7}"
            for name in databases), flush=True)
        started, jobs, next_report, worst = time.monotonic(), 0, 0.0, {name: (0.0, 0.0) for name in databases}
        while (elapsed := time.monotonic() - started) < args.seconds:
            if elapsed >= next_report:
                figures = {name: db.measure() for name, db in databases.items()}
                print(f"{elapsed:>5.0f} {jobs:>7,} " + " ".join(
                    f"| {f['claim'][0]:>28.2f} {f['claim'][1]:>8,} {f['read'][0]:>7.2f} {f['read'][1]:>8,} "
                    f"{f['dead']:>9,} {f['vacuums']:>7}" for f in figures.values()), flush=True)
                for name, f in figures.items():
                    worst[name] = (max(worst[name][0], f["claim"][0]), max(worst[name][1], f["read"][0]))
                next_report += args.every
            due = started + (jobs + BATCH) / args.rate
            churned.run_jobs(BATCH)
            jobs += BATCH
            time.sleep(max(0.0, due - time.monotonic()))  # pacing the load, not synchronisation
        for name, (claim, read) in worst.items():
            print(f"{name}: worst claim {claim:.2f} ms, worst GET read {read:.2f} ms over the run")
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
