"""What an operator relies on: clear start-up errors, JSON logs with request ids, graceful SIGTERM."""
from __future__ import annotations

import json
import signal
import subprocess
import uuid

import pytest
import requests

from support.clients import SocketClient
from support.processes import BIN
from support.stack import start_auth, start_notifier, start_reports, start_worker
from support.waiting import wait_until


@pytest.mark.parametrize(("script", "missing"), [
    ("reportflow-auth", "JWT_PRIVATE_KEY"),
    ("reportflow-reports", "JWKS_URL"),
    ("reportflow-notifier", "JWKS_URL"),
    ("reportflow-worker", "DATABASE_URL"),
    ("reportflow-migrate", "DATABASE_URL"),
])
def test_missing_configuration_stops_start_up_with_a_clear_message(infra, script, missing):
    env = infra.base_env()
    env.pop(missing, None)
    result = subprocess.run([str(BIN / script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"{missing} is required" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_bad_signing_key_stops_auth(infra):
    env = infra.base_env(JWT_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----")
    result = subprocess.run([str(BIN / "reportflow-auth")], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "JWT_PRIVATE_KEY" in result.stderr + result.stdout


def test_logs_are_json_lines_with_the_request_id(stack):
    request_id = f"test-{uuid.uuid4().hex}"
    r = requests.post(f"{stack.auth_url}/v1/auth/login", json={"email": "nobody@example.com", "password": "x" * 10},
                      headers={"X-Request-ID": request_id}, timeout=10)
    assert r.status_code == 401 and r.headers["X-Request-ID"] == request_id

    def logged():
        for line in stack.auth.log_path.read_text().splitlines():
            if request_id in line:
                return json.loads(line)
        return None
    record = wait_until(logged, 10, "the request's log line")
    assert record["request_id"] == request_id and record["service"] == "auth" and record["status"] == 401
    assert record["route"] == "/v1/auth/login"


def test_web_services_stop_gracefully_on_sigterm(infra, stack):
    jwks = stack.auth_url + "/.well-known/jwks.json"
    for process in (start_auth(infra), start_reports(infra, jwks), start_notifier(infra, jwks)):
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(15) == 0, process.tail()


def test_worker_finishes_its_job_on_sigterm(api, stack, infra):
    user = api.new_user()
    stack.worker.stop()  # the job must go to the worker that will be told to stop
    worker = start_worker(infra, WORKER_CONCURRENCY="1", GRACEFUL_TIMEOUT_SECONDS="60")
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    try:
        rep = user.create({"rows": 60_000, "columns": 8, "seed": 2})
        wait_until(lambda: user.get(rep["id"])["status"] == "running", 60, "the job to start")
        worker.proc.send_signal(signal.SIGTERM)  # warm shutdown: finish the job, take no new one
        assert worker.proc.wait(120) == 0, worker.tail()
        assert user.get(rep["id"])["status"] == "succeeded"
        sock.wait_event("report.succeeded", rep["id"], 30)
    finally:
        sock.disconnect()
        worker.stop()
        stack.worker = start_worker(infra)


def test_a_job_past_its_time_limit_fails_and_says_so(api, stack, infra):
    """JOB_TIME_LIMIT_SECONDS (Celery's soft time limit) stops a runaway job: it fails with its reason, and
    the pool process lives on."""
    user = api.new_user()
    stack.worker.stop()
    worker = start_worker(infra, WORKER_CONCURRENCY="1", JOB_TIME_LIMIT_SECONDS="2")
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    try:
        rep = user.create({"rows": 1_000_000, "columns": 8, "seed": 7})
        failed = sock.wait_event("report.failed", rep["id"], 90)
        assert failed["error"] == "The report took longer than the 2 s time limit and was stopped."
        final = user.get(rep["id"])
        assert final["status"] == "failed" and final["error"] == failed["error"] and "download_url" not in final
        small = user.create({"rows": 10, "columns": 2, "seed": 1})
        assert user.wait_status(small["id"], ("succeeded", "failed"), 60)["status"] == "succeeded"
    finally:
        sock.disconnect()
        worker.stop()
        stack.worker = start_worker(infra)
