"""reportflow_common.problems: every error leaves an app as application/problem+json, never as a stack trace."""
from __future__ import annotations

import json

import pytest
from flask import Flask, abort

from reportflow_common import contracts as c
from reportflow_common.problems import (
    PROBLEM_JSON,
    Problem,
    install_error_handlers,
    invalid,
    not_found,
    problem_response,
    unauthorized,
    unavailable,
)

SECRET = "db password is hunter2"


@pytest.fixture(scope="module")
def client():
    app = Flask("unit_problems")
    install_error_handlers(app)

    @app.get("/only-get")
    def only_get():
        return "ok"

    @app.get("/boom")
    def boom():
        raise RuntimeError(SECRET)

    @app.get("/problem")
    def problem():
        raise Problem(409, c.CONFLICT, "Already there.", headers={"X-Extra": "1"})

    @app.get("/abort-400")
    def abort_400():
        abort(400)

    return app.test_client()


def _body(resp) -> dict:
    assert resp.mimetype == PROBLEM_JSON == "application/problem+json"
    return json.loads(resp.get_data(as_text=True))


def test_problem_response_body_shape():
    with Flask("shape").app_context():
        resp = problem_response(Problem(409, c.CONFLICT, "It exists."))
    assert resp.status_code == 409
    assert _body(resp) == {"type": "about:blank", "title": "Conflict", "status": 409, "detail": "It exists.",
                           "code": "conflict"}


def test_problem_response_lists_field_errors_when_given():
    errors = [{"field": "params.rows", "message": "must be an integer"}]
    with Flask("shape").app_context():
        resp = problem_response(invalid(errors))
    body = _body(resp)
    assert resp.status_code == 422 and body["status"] == 422
    assert body["code"] == "invalid_request" and body["errors"] == errors
    assert set(body) == {"type", "title", "status", "detail", "code", "errors"}


def test_helpers_carry_the_contract_headers():
    with Flask("shape").app_context():
        resp = problem_response(unauthorized())
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert _body(resp)["code"] == "unauthorized"
        resp = problem_response(unavailable("Queue down.", retry_after=7))
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "7"
        assert _body(resp)["code"] == "unavailable"
        assert _body(problem_response(not_found()))["code"] == "not_found"


def test_raised_problem_is_rendered_with_its_headers(client):
    resp = client.get("/problem")
    assert resp.status_code == 409 and resp.headers["X-Extra"] == "1"
    assert _body(resp)["code"] == "conflict"


def test_unknown_path_is_a_404_problem(client):
    resp = client.get("/nowhere")
    body = _body(resp)
    assert resp.status_code == 404 and body["status"] == 404 and body["code"] == "not_found"


def test_wrong_method_is_a_405_problem_with_allow(client):
    resp = client.post("/only-get")
    assert resp.status_code == 405
    assert _body(resp)["code"] == "method_not_allowed"
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) >= {"GET"}


def test_werkzeug_400_is_invalid_request(client):
    resp = client.get("/abort-400")
    assert resp.status_code == 400 and _body(resp)["code"] == "invalid_request"


def test_unexpected_exception_is_a_bare_500(client):
    resp = client.get("/boom")
    text = resp.get_data(as_text=True)
    body = _body(resp)
    assert resp.status_code == 500 and body["status"] == 500 and body["code"] == "internal"
    assert SECRET not in text and "Traceback" not in text and "RuntimeError" not in text
    assert "<html" not in text.lower()
