"""Session-wide real servers: PostgreSQL (fresh database), a private Redis, and an S3 server.

Under CI=true a skipped test fails: a test skips when a tool or server it needs is missing, and a CI machine
without one must not go green having checked less. A developer's partial run keeps its skips. The one skip
allowed in CI is a deliberate one, whose reason starts with `switched off:` (e.g. REPORTFLOW_CONTAINER_TESTS=0).
"""
from __future__ import annotations

import os

import pytest

from support.stack import running_infra


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def infra(workdir):
    with running_infra(workdir) as servers:
        yield servers


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright, one per test module that asks for it."""
    from support.browser import chromium  # Playwright is imported only by the browser tests
    with chromium() as b:
        yield b


DELIBERATE_SKIP = "switched off:"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (_in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if reason.startswith("Skipped: "):
        reason = reason[len("Skipped: "):]
    if not reason.startswith(DELIBERATE_SKIP):
        report.outcome = "failed"
        report.longrepr = f"CI=true: this test would have been skipped, which CI does not accept: {reason}"
