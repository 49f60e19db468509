"""The OpenAPI document (reportflow_common/api/openapi.yaml) against the apps it describes.

It must be valid OpenAPI 3.1, name exactly the routes the auth and reports apps serve (no more, no less,
same methods, each operation tagged with the app that serves it), and be served unchanged by reports.
"""
from __future__ import annotations

import re

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from reportflow_common.api import SPEC_PATH

from .contract_checks import test_client

METHODS = {"get", "put", "post", "delete", "patch"}
TAGS = {"auth", "reports", "operations"}
PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
def spec() -> dict:
    with open(SPEC_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): op for path, item in spec["paths"].items()
            for method, op in item.items() if method in METHODS}


def routes(app) -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every rule of a Flask app, `<conv:name>` written `{name}`."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        found |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return found


def test_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1.")
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_operations_have_ids_and_one_tag(spec):
    ops = operations(spec)
    ids = [op["operationId"] for op in ops.values()]
    assert len(ids) == len(set(ids)), ids
    for key, op in ops.items():
        assert len(op.get("tags", [])) == 1 and op["tags"][0] in TAGS, key


def test_errors_are_problems(spec):
    """Every 4xx/5xx response of the document is application/problem+json with the Problem schema."""
    def resolve(obj):
        while "$ref" in obj:
            node = spec
            for part in obj["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    for key, op in operations(spec).items():
        for status, response in op["responses"].items():
            if status[0] in "45":
                content = resolve(response)["content"]
                assert list(content) == [PROBLEM_JSON], (key, status)
                assert content[PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}, (key, status)


def test_every_route_is_documented_and_every_operation_served(spec, make_auth_app, make_reports_app):
    auth, reports = routes(make_auth_app()), routes(make_reports_app())
    documented = set(operations(spec))
    assert (auth | reports) - documented == set(), "routes missing from openapi.yaml"
    assert documented - (auth | reports) == set(), "operations no app serves"
    served_by = {"auth": auth, "reports": reports, "operations": reports}
    for key, op in operations(spec).items():  # the tag says which service answers (the e2e test relies on it)
        assert key in served_by[op["tags"][0]], (key, op["tags"])


def test_reports_serves_the_document_as_json(spec, reports_app):
    resp = test_client(reports_app).get("/v1/openapi.json")
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    assert resp.get_json() == spec
