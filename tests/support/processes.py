"""A server process of the test: its own session (so its children go with it), its log kept for failures."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import requests

from .waiting import GiveUp, wait_until

BIN = Path(sys.executable).parent


class ServerProcess:
    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path, url: str | None = None):
        self.name, self.argv, self.env, self.url = name, argv, env, url
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, ready_path: str | None = "/readyz", timeout: float = 40.0) -> ServerProcess:
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        if self.url and ready_path:
            try:
                wait_until(lambda: self._ready(ready_path), timeout, f"{self.name} at {self.url}{ready_path}")
            except BaseException as exc:
                self.stop()
                raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.tail()}") from exc
        return self

    def _ready(self, path: str) -> bool:
        if self.proc.poll() is not None:
            raise GiveUp(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
        return requests.get(self.url + path, timeout=2).status_code == 200

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pool_processes(self) -> list[psutil.Process]:
        """A worker's prefork pool: its children, without its reserved lane (a child too, with its own pool)."""
        return [p for p in psutil.Process(self.proc.pid).children() if "reportflow_worker.lane" not in p.cmdline()]

    def lane_processes(self) -> list[psutil.Process]:
        """A worker's reserved lane and its one pool process."""
        lanes = [p for p in psutil.Process(self.proc.pid).children() if "reportflow_worker.lane" in p.cmdline()]
        return lanes + [child for lane in lanes for child in lane.children()]

    def signal_group(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the process group (graceful), SIGKILL it if it outlives `timeout`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        try:  # stray children of the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode

    def output(self) -> str:
        """What this run of the process has written (the log file may hold earlier runs too)."""
        with open(self.log_path, "rb") as f:
            f.seek(getattr(self, "log_offset", 0))
            return f.read().decode(errors="replace")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""
