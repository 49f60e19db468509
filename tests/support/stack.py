"""The whole system as processes: auth, reports, worker and two notifiers, started by their console scripts."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .infra import Postgres, RedisServer, S3Server
from .processes import BIN, ServerProcess
from .waiting import free_port


def generate_private_key_pem() -> str:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@dataclass
class Infra:
    postgres: Postgres
    redis: RedisServer
    s3: S3Server
    private_key_pem: str
    workdir: Path

    def base_env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "REPORTFLOW_"))}
        env.update({
            "DATABASE_URL": self.postgres.url, "REDIS_URL": self.redis.url, "STORAGE_BACKEND": "s3",
            "S3_ENDPOINT_URL": self.s3.url, "S3_BUCKET": self.s3.bucket, "S3_ACCESS_KEY_ID": "test",
            "S3_SECRET_ACCESS_KEY": "test", "HOST": "127.0.0.1", "LOG_LEVEL": "INFO", "WEB_CONCURRENCY": "2",
            "GRACEFUL_TIMEOUT_SECONDS": "5", "PROGRESS_INTERVAL_SECONDS": "0.2",
            "MAX_ACTIVE_REPORTS_PER_USER": "50", "LOGIN_ATTEMPTS_PER_MINUTE": "1000",
            "LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE": "1000",
            # the worker's recovery clocks, shortened so that tests of lost workers and messages take seconds
            "JOB_LEASE_SECONDS": "6", "RECONCILE_INTERVAL_SECONDS": "1", "REQUEUE_AFTER_SECONDS": "3",
            "TRANSIENT_RETRY_SECONDS": "60",
        })
        env.update(extra)
        return env


@contextmanager
def running_infra(workdir: Path) -> Iterator[Infra]:
    """PostgreSQL (a new, migrated database), a private Redis and moto's S3 server, stopped on the way out."""
    postgres = Postgres(workdir).start()
    redis = s3 = None
    try:
        postgres.migrate()
        redis = RedisServer(workdir).start()
        s3 = S3Server(workdir).start()
        yield Infra(postgres, redis, s3, generate_private_key_pem(), workdir)
    finally:
        for server in (s3, redis, postgres):
            if server is not None:
                server.stop()


@dataclass
class Stack:
    infra: Infra
    auth: ServerProcess
    reports: ServerProcess
    notifiers: list[ServerProcess]
    worker: ServerProcess
    extra: list[ServerProcess] = field(default_factory=list)

    @property
    def auth_url(self) -> str:
        return self.auth.url

    @property
    def reports_url(self) -> str:
        return self.reports.url

    def all(self) -> list[ServerProcess]:
        return [self.auth, self.reports, *self.notifiers, self.worker, *self.extra]

    def stop(self) -> None:
        for p in reversed(self.all()):
            p.stop()


def service(infra: Infra, name: str, script: str, **env) -> ServerProcess:
    port = free_port()
    metrics_dir = infra.workdir / f"metrics-{name}-{port}"
    return ServerProcess(f"{name}-{port}", [str(BIN / script)],
                         infra.base_env(PORT=str(port), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **env),
                         infra.workdir, url=f"http://127.0.0.1:{port}")


def start_auth(infra: Infra, **env) -> ServerProcess:
    return service(infra, "auth", "reportflow-auth", JWT_PRIVATE_KEY=infra.private_key_pem, **env).start()


def start_reports(infra: Infra, jwks_url: str, **env) -> ServerProcess:
    return service(infra, "reports", "reportflow-reports", JWKS_URL=jwks_url, **env).start()


def start_notifier(infra: Infra, jwks_url: str, **env) -> ServerProcess:
    return service(infra, "notifier", "reportflow-notifier", JWKS_URL=jwks_url, **env).start()


def start_worker(infra: Infra, **env) -> ServerProcess:
    env.setdefault("WORKER_CONCURRENCY", "2")
    return service(infra, "worker", "reportflow-worker", **env).start(timeout=60)


def start_stack(infra: Infra, **env) -> Stack:
    """Start every service (reports and worker with `env` too); if one fails to come up, stop those already
    started before failing."""
    started: list[ServerProcess] = []

    def up(process: ServerProcess) -> ServerProcess:
        started.append(process)
        return process

    try:
        auth = up(start_auth(infra))
        jwks = auth.url + "/.well-known/jwks.json"
        reports = up(start_reports(infra, jwks, **env))
        notifiers = [up(start_notifier(infra, jwks)) for _ in range(2)]
        worker = up(start_worker(infra, **env))
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise
    return Stack(infra, auth, reports, notifiers, worker)
