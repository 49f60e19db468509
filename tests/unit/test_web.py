"""reportflow_common.web: JSON bodies, request ids, health and readiness, as every service serves them."""
from __future__ import annotations

import json
import re

import pytest
from flask import Flask, jsonify

from reportflow_common.contracts import MAX_BODY_BYTES
from reportflow_common.problems import PROBLEM_JSON
from reportflow_common.web import init_web, json_body

SERVICE = "unit_test_svc"  # HTTP metrics are registered once per service name per process: reuse this one


class Dependency:
    def __init__(self):
        self.up = True

    def check(self) -> None:
        if not self.up:
            raise ConnectionError("dependency down")


@pytest.fixture(scope="module")
def dependency():
    return Dependency()


@pytest.fixture(scope="module")
def app(dependency):
    app = Flask("unit_web")
    init_web(app, SERVICE, {"fake_db": dependency.check})

    @app.post("/echo")
    def echo():
        return jsonify(json_body())

    return app


@pytest.fixture
def client(app, dependency):
    dependency.up = True
    return app.test_client()


def _problem(resp) -> dict:
    assert resp.mimetype == PROBLEM_JSON
    return json.loads(resp.get_data(as_text=True))


def test_json_object_is_returned(client):
    resp = client.post("/echo", json={"type": "demo", "params": {"rows": 3}})
    assert resp.status_code == 200 and resp.get_json() == {"type": "demo", "params": {"rows": 3}}


def test_json_with_charset_is_accepted(client):
    resp = client.post("/echo", data='{"a": 1}', headers={"Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 200 and resp.get_json() == {"a": 1}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    resp = client.post("/echo", data='{"a": 1}', headers=headers)
    assert resp.status_code == 415 and _problem(resp)["code"] == "unsupported_media_type"


@pytest.mark.parametrize("data", ['{"a": ', "not json", "{'a': 1}", ""])
def test_malformed_json_is_400(client, data):
    resp = client.post("/echo", data=data, content_type="application/json")
    body = _problem(resp)
    assert resp.status_code == 400 and body["code"] == "invalid_request"
    assert [e["field"] for e in body["errors"]] == ["body"]


@pytest.mark.parametrize("data", ["[1, 2]", '"text"', "42", "true"])
def test_json_that_is_not_an_object_is_400(client, data):
    resp = client.post("/echo", data=data, content_type="application/json")
    body = _problem(resp)
    assert resp.status_code == 400 and body["code"] == "invalid_request"
    assert [e["field"] for e in body["errors"]] == ["body"]


def test_body_over_64_kib_is_413(client):
    big = json.dumps({"pad": "x" * MAX_BODY_BYTES})
    resp = client.post("/echo", data=big, content_type="application/json")
    assert resp.status_code == 413 and _problem(resp)["code"] == "payload_too_large"


def test_body_of_exactly_64_kib_is_accepted(client):
    padding = MAX_BODY_BYTES - len(json.dumps({"pad": ""}))
    body = json.dumps({"pad": "x" * padding})
    assert len(body) == MAX_BODY_BYTES
    assert client.post("/echo", data=body, content_type="application/json").status_code == 200


def test_request_id_is_echoed(client):
    resp = client.get("/healthz", headers={"X-Request-ID": "client-req.42:a_b"})
    assert resp.headers["X-Request-ID"] == "client-req.42:a_b"


def test_request_id_is_generated_when_absent_and_differs_per_request(client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


@pytest.mark.parametrize("bad", ["has spaces", "x" * 129, "<script>", "a\tb"])
def test_unsafe_request_id_is_replaced(client, bad):
    rid = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
    assert rid != bad and re.fullmatch(r"[0-9a-f]{32}", rid)


def test_request_id_is_on_error_responses_too(client):
    assert client.get("/missing", headers={"X-Request-ID": "r-404"}).headers["X-Request-ID"] == "r-404"
    resp = client.post("/echo", data="x", content_type="text/plain", headers={"X-Request-ID": "r-415"})
    assert resp.headers["X-Request-ID"] == "r-415"


def test_healthz(client, dependency):
    dependency.up = False  # liveness does not depend on dependencies
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_readyz_ok_when_dependencies_answer(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200 and resp.get_json()["status"] == "ok"


def test_readyz_503_names_the_failing_dependency(client, dependency):
    dependency.up = False
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["failed"] == ["fake_db"]
    assert resp.headers["Retry-After"]


def test_a_second_app_with_the_same_service_name_can_be_built():
    other = Flask("unit_web_again")
    init_web(other, SERVICE, {})  # must not fail on duplicate metric registration
    assert other.test_client().get("/readyz").status_code == 200


def test_metrics_count_requests_by_route_template(client, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    client.post("/echo", json={})
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    text = resp.get_data(as_text=True)
    assert re.search(r'reportflow_unit_test_svc_http_requests_total\{[^}]*route="/echo"[^}]*status="200"', text)


@pytest.mark.parametrize(("body", "fields"), [
    ({"email": "a\x00b@example.com"}, ["email"]),
    ({"type": "demo", "params": {"name": "x\x1b[2J", "ok": "café ☃"}}, ["params.name"]),
    ({"items": ["fine", "bell\x07", {"deep": ["\x85"]}]}, ["items[1]", "items[2].deep[0]"]),
    ({"k\x00": 1}, ["body"]),
    ({"lone": "\ud800"}, ["lone"]),
    ({"tab": "a\tb", "newline": "a\nb", "del": "\x7f"}, ["del", "newline", "tab"]),
])
def test_control_characters_in_any_string_are_422_naming_the_field(client, body, fields):
    resp = client.post("/echo", data=json.dumps(body), content_type="application/json")
    problem = _problem(resp)
    assert resp.status_code == 422 and problem["code"] == "invalid_request"
    assert [e["field"] for e in problem["errors"]] == fields


def test_deep_json_is_walked_without_recursion():
    from reportflow_common.web import control_character_errors
    deep = "\x00"
    for _ in range(50_000):
        deep = [deep]
    assert [e["field"] for e in control_character_errors({"d": deep})] == ["d" + "[0]" * 50_000]
