"""reportflow_common.metrics across processes: what gunicorn workers and Celery prefork children write to one
PROMETHEUS_MULTIPROC_DIR adds up in one scrape, and a dead process's live gauges stop counting."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reportflow_common import metrics

# The services' own metric objects, imported in a fresh process so the multi-process value store is used.
CHILD = """
import sys
from reportflow_worker.metrics import worker_metrics
from reportflow_notifier.app import notifier_metrics
n, w = int(sys.argv[1]), worker_metrics()
w.jobs.labels("demo", "succeeded").inc(n)
w.in_progress.inc()
w.uploaded_bytes.inc(1000 * n)
w.queue_wait.labels("demo", "small").observe(n)
notifier_metrics().connected.inc(n)
print("ready", flush=True)
sys.stdin.read()  # stay alive until the test closes stdin
"""


class Child:
    def __init__(self, directory, n: int):
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(n)], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.pid = self.proc.pid

    def exit(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(30) == 0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


def scrape() -> dict[tuple[str, tuple], float]:
    body, content_type = metrics.render_latest()
    assert content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def live_gauge_files(directory, pid: int) -> list[str]:
    return [n for n in os.listdir(directory) if n.startswith("gauge_live") and n.endswith(f"_{pid}.db")]


@pytest.fixture
def multiproc_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(metrics, "_scrape_collectors", {})
    return tmp_path


JOBS_OK = ("reportflow_worker_jobs_total", (("outcome", "succeeded"), ("type", "demo")))
RUNNING = ("reportflow_worker_jobs_in_progress", ())
CONNECTED = ("reportflow_notifier_connected_clients", ())


def test_two_processes_add_up_in_one_scrape(multiproc_dir):
    a, b = Child(multiproc_dir, 1), Child(multiproc_dir, 2)
    try:
        values = scrape()
        assert values[JOBS_OK] == 3
        assert values[RUNNING] == 2
        assert values[CONNECTED] == 3
        assert values[("reportflow_worker_uploaded_bytes_total", ())] == 3000
        assert values[("reportflow_worker_queue_wait_seconds_count", (("class", "small"), ("type", "demo")))] == 2
        assert values[("reportflow_worker_queue_wait_seconds_sum", (("class", "small"), ("type", "demo")))] == 3
        # series that no process touched exist from the start (at 0), so rate() sees their first increment
        assert values[("reportflow_worker_jobs_total", (("outcome", "failed"), ("type", "activity")))] == 0
    finally:
        a.exit()
        b.exit()


def test_a_dead_process_stops_counting_in_live_gauges_but_its_counts_stay(multiproc_dir):
    a, b = Child(multiproc_dir, 1), Child(multiproc_dir, 2)
    try:
        a.exit()
        metrics.mark_process_dead(a.pid)  # what gunicorn's child_exit and Celery's process shutdown call
        values = scrape()
        assert values[RUNNING] == 1
        assert values[CONNECTED] == 2
        assert values[JOBS_OK] == 3, "a finished process's jobs still count"
    finally:
        b.exit()


def test_a_killed_process_is_reaped_at_scrape_time(multiproc_dir):
    """SIGKILL (an OOM kill) runs no exit hook: the scrape itself notices the process is gone."""
    a, b = Child(multiproc_dir, 1), Child(multiproc_dir, 2)
    try:
        a.kill()
        assert live_gauge_files(multiproc_dir, a.pid)
        values = scrape()
        assert values[RUNNING] == 1
        assert values[CONNECTED] == 2
        assert values[JOBS_OK] == 3
        assert not live_gauge_files(multiproc_dir, a.pid)
    finally:
        b.exit()
    assert metrics.reap_dead_processes(str(multiproc_dir)) == [b.pid]


def test_prepare_multiprocess_dir_empties_the_folder(tmp_path, monkeypatch):
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert metrics.prepare_multiprocess_dir() == str(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]
