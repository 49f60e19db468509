"""The reserved lane: one more Celery worker, with one process, that takes only small jobs (at most
LANE_MAX_CELLS cells) from a queue of its own (`reports.lane`, which a small job rings instead of `reports`:
one message per job). The pool consumes that queue too, so a small job's message goes to whichever is free
first; with every pool process busy the pool holds no further message (prefetch 1, late acks) and the lane
takes it. So a small report starts at once even when every pool process is busy with long jobs; while there
is none, the lane waits on the broker and costs no CPU, and large jobs keep the whole pool. Where a claim
leaves a queued job without a message it can be claimed with, the wake-up is passed on
(`reportflow_worker.jobs.run_next_job`).

`reportflow-worker` runs it as a child process (`Lane`), so every way of running the worker (make up, compose,
the chart, the tests) has it: started again if it dies, asked to stop (SIGTERM) when the worker shuts down, and
ended by the kernel if the worker's main process is killed.
"""
from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import threading

from reportflow_common import contracts as c

log = logging.getLogger(__name__)
RESTART_DELAY_SECONDS = 1.0
PR_SET_PDEATHSIG = 1


def celery_worker_args(log_level: str, queue: str, concurrency: int, hostname: str) -> list[str]:
    """The `celery worker` command line of the pool and of the lane (`queue`: comma-separated names)."""
    return ["--quiet", "worker", f"--loglevel={log_level}", "--pool=prefork", f"--concurrency={concurrency}",
            f"--queues={queue}", f"--hostname={hostname}", "--without-gossip", "--without-mingle",
            "--without-heartbeat"]


class Lane:
    """The lane as a child process of the worker's main process."""

    def __init__(self):
        self._stopping = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._keep_running, name="lane", daemon=True)

    def start(self) -> Lane:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Warm shutdown: the lane finishes (or hands back) its job like the pool does."""
        self._stopping.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _keep_running(self) -> None:
        while not self._stopping.is_set():
            self._proc = subprocess.Popen([sys.executable, "-m", "reportflow_worker.lane"])
            code = self._proc.wait()
            if not self._stopping.is_set():
                log.error("the lane stopped; starting it again", extra={"exit_code": code})
                self._stopping.wait(RESTART_DELAY_SECONDS)


def _end_with_parent() -> None:
    """SIGTERM this process when the worker's main process dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main() -> None:
    _end_with_parent()
    from reportflow_common.logs import configure_logging
    from reportflow_common.settings import WORKER, load_settings

    from .celery_app import create_celery

    settings = load_settings(WORKER)
    configure_logging(WORKER, settings.log_level)
    create_celery(settings, lane=True).worker_main(
        celery_worker_args(settings.log_level, c.LANE_QUEUE, 1, "lane@%h"))


if __name__ == "__main__":
    main()
