"""The system for the fault suite: every service as a process (as the e2e suite starts them), on servers of
its own that the scenarios break: PostgreSQL and Redis on free ports, moto's S3 behind a gate, and the
reports service's broker connection behind another. Recovery clocks are shortened by settings (lease 5 s,
reconciler every second, ring again after 3 s), so each fault costs seconds, not minutes."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

import boto3
import psycopg2
import pytest

from support.infra import S3Server
from support.processes import BIN, ServerProcess
from support.stack import Infra, generate_private_key_pem, service

from .servers import OwnPostgres, OwnRedis, TcpGate

FAULT_ENV = {"JOB_LEASE_SECONDS": "5", "RECONCILE_INTERVAL_SECONDS": "1", "REQUEUE_AFTER_SECONDS": "3",
             "TRANSIENT_RETRY_SECONDS": "120", "MAX_JOB_ATTEMPTS": "8", "WORKER_CONCURRENCY": "2"}
WORKER_GRACE_SECONDS = 10
RESULTS: list[dict] = []


@dataclass
class S3View:
    """What the services are given as their S3: the gate in front of moto."""
    url: str
    bucket: str


@dataclass
class FaultStack:
    infra: Infra
    postgres: OwnPostgres
    redis: OwnRedis
    s3: S3Server
    s3_gate: TcpGate
    broker_gate: TcpGate
    auth: ServerProcess = None
    reports: ServerProcess = None
    notifiers: list[ServerProcess] = field(default_factory=list)
    worker: ServerProcess = None

    @property
    def auth_url(self) -> str:
        return self.auth.url

    @property
    def reports_url(self) -> str:
        return self.reports.url

    def notifier_urls(self) -> list[str]:
        return [n.url for n in self.notifiers]

    def worker_process(self, name: str = "worker", **env) -> ServerProcess:
        return service(self.infra, name, "reportflow-worker",
                       **{**FAULT_ENV, "GRACEFUL_TIMEOUT_SECONDS": str(WORKER_GRACE_SECONDS), **env})

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with psycopg2.connect(self.postgres.url, connect_timeout=3) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            rows = cur.fetchall()
        conn.close()
        return rows

    def bucket_keys(self, prefix: str) -> dict[str, int]:
        client = boto3.client("s3", endpoint_url=self.s3.url, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        listing = client.list_objects_v2(Bucket=self.s3.bucket, Prefix=prefix)
        return {o["Key"]: o["Size"] for o in listing.get("Contents", [])}

    def processes(self) -> list[ServerProcess]:
        return [p for p in (self.auth, self.reports, *self.notifiers, self.worker) if p is not None]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faults")
    postgres = OwnPostgres()
    redis = s3 = s3_gate = broker_gate = built = None
    try:
        postgres.init()
        subprocess.run([str(BIN / "reportflow-migrate")], env={**os.environ, "DATABASE_URL": postgres.url},
                       check=True, capture_output=True, timeout=120)
        redis = OwnRedis(workdir).start()
        s3 = S3Server(workdir).start()
        s3_gate = TcpGate(s3.port).start()
        broker_gate = TcpGate(redis.port).start()
        infra = Infra(postgres, redis, S3View(s3_gate.url, s3.bucket), generate_private_key_pem(), workdir)
        built = FaultStack(infra, postgres, redis, s3, s3_gate, broker_gate)
        built.auth = service(infra, "auth", "reportflow-auth", JWT_PRIVATE_KEY=infra.private_key_pem).start()
        jwks = built.auth.url + "/.well-known/jwks.json"
        built.reports = service(infra, "reports", "reportflow-reports", JWKS_URL=jwks,
                                BROKER_URL=f"redis://127.0.0.1:{broker_gate.port}/0").start()
        built.notifiers = [service(infra, "notifier", "reportflow-notifier", JWKS_URL=jwks).start() for _ in range(2)]
        built.worker = built.worker_process().start(timeout=60)
        yield built
    finally:
        if built is not None:
            for process in reversed(built.processes()):
                process.stop()
        for thing in (broker_gate, s3_gate, s3, redis):
            if thing is not None:
                thing.close() if isinstance(thing, TcpGate) else thing.stop()
        postgres.destroy()


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    columns = ("scenario", "submitted", "succeeded", "failed", "extra attempts", "taken back", "rung again",
               "republished", "catch-ups", "resets", "reconnects", "503s", "events missed/repeated",
               "recovered after")
    rows = [columns] + [tuple(str(r[c]) for c in columns) for r in RESULTS]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    terminalreporter.section("fault scenarios")
    for i, row in enumerate(rows):
        terminalreporter.write_line("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            terminalreporter.write_line("  ".join("-" * w for w in widths))
