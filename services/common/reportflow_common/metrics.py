"""Prometheus metrics that add up across processes (gunicorn workers, Celery prefork children).

`prepare_multiprocess_dir` must run in the console script before prometheus_client is imported, since
the library picks its value store at import time from PROMETHEUS_MULTIPROC_DIR.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile

_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")

# Collectors asked at scrape time (values read from elsewhere, e.g. queue depth from the broker): they
# are not in the multi-process files, so render_latest adds them to the registry it builds.
_scrape_collectors: dict[str, object] = {}


def prepare_multiprocess_dir() -> str:
    """Point PROMETHEUS_MULTIPROC_DIR at an empty folder (a private temporary one when unset)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="reportflow-metrics-")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def mark_process_dead(pid: int) -> None:
    """Called when a worker process exits so its live gauges stop counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def reap_dead_processes(path: str) -> list[int]:
    """mark_process_dead for every process with live-gauge files that is gone: a child killed outright
    (SIGKILL, OOM) never runs its exit hook, and its jobs_in_progress would otherwise count forever."""
    dead = set()
    for name in os.listdir(path):
        match = _LIVE_GAUGE_FILE.match(name)
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
            with contextlib.suppress(FileNotFoundError):  # another process may be reaping it too
                os.unlink(os.path.join(path, name))
    return sorted(dead)


def register_scrape_collector(name: str, collector) -> None:
    """Add (or replace, when an app is built again) a collector that render_latest always includes."""
    _scrape_collectors[name] = collector


class _Chain:
    def __init__(self, *sources):
        self.sources = sources

    def collect(self):
        for source in self.sources:
            yield from source.collect()


def render_latest() -> tuple[bytes, str]:
    """The text exposition of every process's metrics (or this process's when not multi-process)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        reap_dead_processes(path)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(_Chain(registry, *_scrape_collectors.values())), CONTENT_TYPE_LATEST
