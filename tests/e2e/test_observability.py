"""Observability end to end: a real Prometheus scrapes every service process while jobs succeed, fail and
are cancelled; then every query of the Grafana dashboard returns data, the alert rules evaluate cleanly, and
the counters say exactly what the test did."""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests
import socketio
import yaml

from support.clients import Api, SocketClient
from support.processes import ServerProcess
from support.stack import start_worker
from support.waiting import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/reportflow.json"
RULES = ROOT / "deploy/prometheus/rules/reportflow.rules.yml"
WINDOW = "2m"  # stands in for Grafana's $__rate_interval: the whole scenario fits in it
SMALL = {"rows": 2000, "columns": 4, "seed": 1}


class Prometheus:
    def __init__(self, url: str):
        self.url = url

    def _get(self, path: str, **params) -> list[dict]:
        body = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert body["status"] == "success", body
        return body["data"]["result"] if "result" in body["data"] else body["data"]

    def query(self, expr: str) -> list[dict]:
        return self._get("query", query=expr)

    def value(self, expr: str) -> float:
        """One number: the query's only sample, 0 when it has none."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr} is not one series: {result}"
        return float(result[0]["value"][1]) if result else 0.0

    def range_values(self, expr: str, seconds: int) -> list[float]:
        end = time.time()
        series = self._get("query_range", query=expr, start=end - seconds, end=end, step="2")
        return [float(v) for s in series for _t, v in s["values"]]


def start_prometheus(infra, jobs: dict[str, list[str]]) -> ServerProcess:
    binary = shutil.which("prometheus")
    if not binary:
        pytest.skip("prometheus is not installed (apt-get install -y prometheus)")
    port = free_port()
    home = infra.workdir / f"prometheus-{port}"
    home.mkdir()
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(RULES)],
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                                 for job, targets in jobs.items()]}
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    return ServerProcess(f"prometheus-{port}", [binary, f"--config.file={home / 'prometheus.yml'}",
                                                f"--storage.tsdb.path={home / 'data'}",
                                                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                         {"PATH": "/usr/bin:/bin"}, infra.workdir, url=f"http://127.0.0.1:{port}"
                         ).start(ready_path="/-/ready", timeout=30)


def hostport(process: ServerProcess) -> str:
    return process.url.removeprefix("http://")


# What the scenario changes, read as totals over every process and pod (before/after deltas).
COUNTERS = {
    "created": 'sum(reportflow_reports_created_total{type="demo"})',
    "create_accepted": 'sum(reportflow_reports_http_requests_total{method="POST",route="/v1/reports",status="202"})',
    "cancel_requested": 'sum(reportflow_reports_delete_requests_total{outcome="cancel_requested"})',
    "started": 'sum(reportflow_worker_jobs_started_total{type="demo"})',
    "succeeded": 'sum(reportflow_worker_jobs_total{type="demo",outcome="succeeded"})',
    "failed": 'sum(reportflow_worker_jobs_total{type="demo",outcome="failed"})',
    "cancelled": 'sum(reportflow_worker_jobs_total{type="demo",outcome="cancelled"})',
    "redelivered": 'sum(reportflow_worker_jobs_retried_total{reason="redelivered"})',
    "gave_up": "sum(reportflow_worker_jobs_gave_up_total)",
    "taken_back": 'sum(reportflow_worker_reconciler_requeued_total{reason="lease_expired"})',
    "transient": 'sum(reportflow_worker_jobs_retried_total{reason="transient"})',
    "queue_waits": "sum(reportflow_worker_queue_wait_seconds_count)",
    "uploads": "sum(reportflow_worker_upload_duration_seconds_count)",
    "uploaded_bytes": "sum(reportflow_worker_uploaded_bytes_total)",
    "rows_written": 'sum(reportflow_worker_rows_written_total{type="demo"})',
    "received_succeeded": 'sum(reportflow_notifier_events_received_total{event="report.succeeded"})',
    "delivered_succeeded": 'sum(reportflow_notifier_events_delivered_total{event="report.succeeded"})',
    "delivered_failed": 'sum(reportflow_notifier_events_delivered_total{event="report.failed"})',
    "delivered_cancelled": 'sum(reportflow_notifier_events_delivered_total{event="report.cancelled"})',
    "latency_succeeded": 'sum(reportflow_notifier_delivery_latency_seconds_count{event="report.succeeded"})',
    "create_to_notify": "sum(reportflow_notifier_create_to_notify_seconds_count)",
    "refused": 'sum(reportflow_notifier_connections_refused_total{reason="unauthorized"})',
    "login_success": 'sum(reportflow_auth_logins_total{outcome="success"})',
    "login_failure": 'sum(reportflow_auth_logins_total{outcome="failure"})',
    "tokens_issued": "sum(reportflow_auth_tokens_issued_total)",
    "tokens_refreshed": "sum(reportflow_auth_tokens_refreshed_total)",
    "revoked_logout": 'sum(reportflow_auth_tokens_revoked_total{reason="logout"})',
}


def _running_with_progress(user, report_id):
    return lambda: (r := user.get(report_id))["status"] == "running" and r["progress"] > 0


def _event(name: str, report_id: str):
    return lambda n, p: n == name and p["report_id"] == report_id


def run_scenario(api, stack, worker: ServerProcess, prom: Prometheus) -> dict:
    """One failed job (its process dies, its lease runs out, and MAX_JOB_ATTEMPTS=1 makes the reconciler fail
    it), one cancelled while running, three that succeed after waiting in the queue, and some auth traffic.
    Returns what the test expects to have moved."""
    user, bystander = api.new_user(), api.new_user()
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    # a notifier reads the queue once it has had a socket: the other one hears every event too, sends none
    other = SocketClient(stack.notifiers[1].url, bystander.token).connect()
    try:
        doomed = user.create({"rows": 300_000, "columns": 8, "seed": 2})
        wait_until(_running_with_progress(user, doomed["id"]), 60, "the doomed job to run")
        for child in worker.pool_processes():  # as an OOM kill would: no exit hook runs
            child.send_signal(signal.SIGKILL)
        _n, failed = sock.wait_for(_event("report.failed", doomed["id"]), 60, "report.failed")
        assert "Gave up" in failed["error"]

        big = user.create({"rows": 1_000_000, "columns": 20, "seed": 3})
        wait_until(_running_with_progress(user, big["id"]), 60, "the job to cancel to run")
        assert user.request("DELETE", f"/v1/reports/{big['id']}").status_code == 204
        sock.wait_for(_event("report.cancelled", big["id"]), 60, "report.cancelled")

        worker.signal_group(signal.SIGSTOP)  # jobs pile up in the broker queue
        try:
            small = [user.create({**SMALL, "seed": i}) for i in range(3)]
            # small jobs ring the lane's queue, which the pool and the lane both read: one may sit in each
            # stopped consumer's pending read, the third waits in the list
            wait_until(lambda: prom.value('max(reportflow_reports_queue_depth_messages{queue="reports.lane"})') >= 1,
                       20, "the queue depth to show the waiting jobs")
        finally:
            worker.signal_group(signal.SIGCONT)
        done = [sock.wait_for(_event("report.succeeded", r["id"]), 60, "report.succeeded")[1] for r in small]
        for report, event in zip(small, done, strict=True):  # the field that lets the notifier time the wait
            assert datetime.fromisoformat(event["created_at"]) == datetime.fromisoformat(
                user.get(report["id"])["created_at"])
    finally:
        sock.disconnect()
        other.disconnect()
    assert other.events == []
    refused = SocketClient(stack.notifiers[1].url, "not-a-token")
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect()

    auth = stack.auth_url
    assert requests.post(f"{auth}/v1/auth/login", json={"email": user.email, "password": "wrong password"},
                         timeout=10).status_code == 401
    second = api.login(user.email, user.password)
    refreshed = requests.post(f"{auth}/v1/auth/refresh", timeout=10,
                              headers={"Authorization": f"Bearer {second['refresh_token']}"})
    assert refreshed.status_code == 200
    assert requests.post(f"{auth}/v1/auth/logout", timeout=10,
                         headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}).status_code == 204

    return {"created": 5, "create_accepted": 5, "cancel_requested": 1,
            "started": 5,  # the doomed job's only attempt: no second one starts
            "succeeded": 3, "failed": 1, "cancelled": 1, "redelivered": 0, "transient": 0,
            "gave_up": 1, "taken_back": 0,
            "queue_waits": 5, "uploads": 3, "uploaded_bytes": sum(e["size_bytes"] for e in done),
            "rows_written": 3 * SMALL["rows"],
            "received_succeeded": 3 * len(stack.notifiers),  # every notifier reads every event
            "delivered_succeeded": 3, "delivered_failed": 1, "delivered_cancelled": 1,
            "latency_succeeded": 3, "create_to_notify": 3, "refused": 1,
            "login_success": 3, "login_failure": 1, "tokens_issued": 4, "tokens_refreshed": 1, "revoked_logout": 1}


@pytest.fixture(scope="module")
def observed(stack):
    """Runs the scenario once with Prometheus watching; yields (prometheus, before, expected)."""
    stack.worker.stop()  # this module's own worker: a job whose process dies fails on its first redelivery
    worker = start_worker(stack.infra, MAX_JOB_ATTEMPTS="1")
    process = None
    try:
        process = start_prometheus(stack.infra, {
            "auth": [hostport(stack.auth)], "reports": [hostport(stack.reports)],
            "notifier": [hostport(n) for n in stack.notifiers], "worker": [hostport(worker)]})
        prom = Prometheus(process.url)
        wait_until(lambda: prom.value("count(up == 1)") == 2 + len(stack.notifiers) + 1, 20,
                   "the first scrape of every service")
        before = {name: prom.value(expr) for name, expr in COUNTERS.items()}
        expected = run_scenario(Api(stack.auth_url, stack.reports_url), stack, worker, prom)
        yield prom, before, expected
    finally:
        if process:
            process.stop()
        worker.stop()
        stack.worker = start_worker(stack.infra)


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(f"{p['title']} [{t['refId']}]", t["expr"].replace("$__rate_interval", WINDOW))
            for p in [q for row in panels for q in [row, *row.get("panels", [])]] for t in p.get("targets", [])]


def test_counters_say_what_happened(observed):
    prom, before, expected = observed

    moved = {}

    def settled() -> bool:
        moved.update({name: round(prom.value(COUNTERS[name]) - before[name], 6) for name in expected})
        return moved == expected

    with contextlib.suppress(AssertionError):  # the comparison below says which differ
        wait_until(settled, 20, "the last scrape")
    assert moved == expected
    # the pool process killed mid-job ran no exit hook, yet its running job no longer counts
    assert prom.value("sum(reportflow_worker_jobs_in_progress)") == 0


def test_every_dashboard_query_returns_data(observed):
    prom, _before, _expected = observed
    queries = dashboard_queries()
    assert len(queries) > 20
    empty = [name for name, expr in queries
             if not any(math.isfinite(v) for v in prom.range_values(expr, 90))]
    assert not empty, f"panels without data: {empty}"


def test_alert_rules_evaluate_cleanly_against_real_metrics(observed):
    prom, _before, _expected = observed

    def rules() -> list[dict]:
        return [r for g in prom._get("rules")["groups"] for r in g["rules"]]

    wait_until(lambda: all(r["health"] != "unknown" for r in rules()), 20, "every rule to be evaluated")
    assert len(rules()) == 8
    assert [(r["name"], r["lastError"]) for r in rules() if r["health"] != "ok"] == []
