"""What the reports service shares with every service: health, readiness, metrics, routing errors, request ids."""
from __future__ import annotations

import re
import uuid

import pytest

from .contract_checks import assert_problem, closed_port_url, test_client


@pytest.fixture()
def user(accounts):
    return accounts.new()


def test_healthz(reports):
    r = reports.get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}


def test_readyz_when_every_dependency_answers(reports):
    assert reports.get("/readyz").status_code == 200


@pytest.mark.parametrize("dependency, env", [
    ("redis", lambda: {"REDIS_URL": closed_port_url("redis") + "/0"}),
    ("storage", lambda: {"S3_ENDPOINT_URL": closed_port_url("http")}),
    ("postgres", lambda: {"DATABASE_URL": closed_port_url("postgresql") + "/reportflow"}),
])
def test_readyz_is_503_when_a_dependency_is_unreachable(make_reports_app, dependency, env):
    app = make_reports_app(**env())
    client = test_client(app)
    assert client.get("/healthz").status_code == 200  # alive, just not ready
    body = assert_problem(client.get("/readyz"), 503, "unavailable")
    assert dependency in body["detail"]


def test_api_calls_while_redis_is_unreachable_are_503_not_500(make_reports_app, user):
    """Token checks need the deny-list in Redis; a client should be told to retry, not see a server fault."""
    client = test_client(make_reports_app(REDIS_URL=closed_port_url("redis") + "/0"))
    assert_problem(client.get("/v1/reports", headers=user.headers), 503, "unavailable")
    assert_problem(client.post("/v1/reports", json={"type": "demo"}, headers=user.headers), 503, "unavailable")


def test_api_calls_while_postgres_is_unreachable_are_503_not_500(make_reports_app, user):
    client = test_client(make_reports_app(DATABASE_URL=closed_port_url("postgresql") + "/reportflow"))
    assert_problem(client.get("/v1/reports", headers=user.headers), 503, "unavailable")


def test_metrics_in_prometheus_text_with_bounded_labels(reports, user):
    report_id = reports.post("/v1/reports", json={"type": "demo"}, headers=user.headers).get_json()["id"]
    assert reports.get(f"/v1/reports/{report_id}", headers=user.headers).status_code == 200
    reports.get(f"/nowhere/{uuid.uuid4()}")
    r = reports.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert "# TYPE reportflow_reports_http_requests_total counter" in text
    assert re.search(r'^reportflow_reports_http_requests_total\{method="GET",route="/v1/reports/<report_id>",'
                     r'status="200"\} [1-9]', text, re.M)
    assert re.search(r'^reportflow_reports_created_total\{type="demo"\} [1-9]', text, re.M)
    assert 'route="unmatched"' in text
    assert report_id not in text and user.id not in text  # ids never become label values


def test_unknown_path_is_a_404_problem(reports, user):
    assert_problem(reports.get("/v1/nothing-here"), 404, "not_found")
    assert_problem(reports.get("/v1/reports/x/y/z", headers=user.headers), 404, "not_found")


@pytest.mark.parametrize("method, path", [("PUT", "/v1/reports"), ("PATCH", "/v1/reports"),
                                          ("DELETE", "/v1/reports"), ("POST", "/v1/reports/abc"),
                                          ("POST", "/healthz")])
def test_a_wrong_method_is_a_405_problem(reports, user, method, path):
    r = reports.open(path, method=method, headers=user.headers, json={})
    assert_problem(r, 405, "method_not_allowed")
    assert r.headers["Allow"]


def test_a_client_request_id_is_echoed_on_success_and_error(reports, user):
    for path, headers, status in (("/healthz", {}, 200), ("/v1/reports", user.headers, 200),
                                  ("/v1/reports", {}, 401), ("/v1/nowhere", {}, 404)):
        r = reports.get(path, headers={**headers, "X-Request-ID": "trace-me.123"})
        assert r.status_code == status and r.headers["X-Request-ID"] == "trace-me.123"
    r = reports.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert r.headers["X-Request-ID"] and r.headers["X-Request-ID"] != "x" * 500
