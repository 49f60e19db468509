"""The capacity settings are applied: a notifier process holds more than 1,000 sockets, and a burst of
report requests into one gevent process waits for pooled connections instead of failing with 503.

Both run against the services as processes (the notifier's console script; `make up`'s one gevent web
process of auth, reports and notifier), on the session's PostgreSQL, Redis and S3 server.
"""
from __future__ import annotations

import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from support.clients import Api
from support.processes import ServerProcess
from support.socket_swarm import SwarmProcess
from support.stack import service
from support.waiting import free_port

SOCKETS = 1_100  # gunicorn's gevent worker stopped at 1,000 before WORKER_CONNECTIONS
BURST, USERS = 200, 20


@pytest.fixture(scope="module")
def web(infra):
    """`make up`'s web process (auth, reports and notifier in one gevent process) with a small Redis pool,
    so that the burst below certainly wants more connections than it holds."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ServerProcess(f"web-{port}", [sys.executable, "-m", "reportflow_devstack.web"], infra.base_env(
        PORT=str(port), JWT_PRIVATE_KEY=infra.private_key_pem, JWKS_URL=url + "/.well-known/jwks.json",
        PROMETHEUS_MULTIPROC_DIR=str(infra.workdir / f"metrics-web-{port}"), REDIS_MAX_CONNECTIONS="8",
        DATABASE_POOL_SIZE="4", MAX_ACTIVE_REPORTS_PER_USER="1000"), infra.workdir, url=url).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture()
def notifier(infra, web):
    """The notifier's console script, started with the soft open-file limit at 1,024 (as on many hosts):
    holding more sockets than that needs the limit it raises itself."""
    process = service(infra, "notifier", "reportflow-notifier", JWKS_URL=web.url + "/.well-known/jwks.json")
    process.argv = ["sh", "-c", 'ulimit -Sn 1024 && exec "$0" "$@"', *process.argv]
    process.start()
    try:
        yield process
    finally:
        process.stop()


def connected_gauge(url: str) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("reportflow_notifier_connected_clients"))


def test_a_notifier_holds_more_than_a_thousand_sockets(notifier, web):
    user = Api(web.url, web.url).new_user()
    swarm = SwarmProcess(notifier.url, [{"token": user.token}] * SOCKETS)
    try:
        opened = swarm.result()
        assert (opened["connected"], opened["failed"]) == (SOCKETS, 0), opened["errors"]
        assert connected_gauge(notifier.url) == SOCKETS, "the notifier counts every one of them as connected"
    finally:
        swarm.stop()


def test_a_burst_of_reports_waits_for_connections_instead_of_failing(web):
    api = Api(web.url, web.url)
    users = [api.new_user() for _ in range(USERS)]
    start = threading.Barrier(BURST)

    def create(index: int) -> requests.Response:
        user = users[index % USERS]
        start.wait(60)
        return requests.post(web.url + "/v1/reports", headers={**user.headers, "Idempotency-Key": uuid.uuid4().hex},
                             json={"type": "demo", "params": {"rows": 10}}, timeout=120)

    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(create, range(BURST)))
    refused = [(r.status_code, r.text[:300]) for r in answers if r.status_code != 202]
    assert not refused, f"{len(refused)} of {BURST} refused (no 503 for want of a connection), e.g. {refused[0]}"
