"""Prometheus metrics that add up across processes (gunicorn workers, Celery prefork children).

`prepare_multiprocess_dir` must run in the console script before prometheus_client is imported, since
the library picks its value store at import time from PROMETHEUS_MULTIPROC_DIR.
"""
from __future__ import annotations

import os
import shutil
import tempfile


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


def render_latest() -> tuple[bytes, str]:
    """The text exposition of every process's metrics (or this process's when not multi-process)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


def remove_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
