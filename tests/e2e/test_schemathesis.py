"""schemathesis against the running auth and reports services, from the one OpenAPI document.

Every generated request (valid and invalid) must get no 5xx and an answer the document allows: status,
content type, headers and body schema; invalid input must be refused, valid input accepted, and operations
with a security scheme must refuse a missing or bad token. Auth and reports are separate processes, so
each tag is run against its own service.

Left out: the `operations` tag (health, readiness, metrics and the document itself: not routed by the
ingress, and checked by the operations and integration tests), and GET /v1/files/{key}, which exists only
with STORAGE_BACKEND=local and answers 404 in this S3 stack.
"""
from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from reportflow_common.api import SPEC_PATH
from support.clients import Api

CONFIG = SchemathesisConfig.from_dict({
    "generation": {
        # derandomized: the same requests on every run, so a failure reproduces; bounded per operation
        "max-examples": 40, "deterministic": True, "database": "none",
        # the services ignore unknown query parameters and headers, as HTTP servers do: not invalid input
        "allow-extra-parameters": False,
        # the test sends a real token; `ignored_auth` still probes each secured operation without one
        # and with a bad one
        "with-security-parameters": False,
    },
    # all but use_after_free: DELETE of a queued or running job cancels it, and the report stays readable
    # (status cancelled), as the contract says; only a finished report is removed (then 404)
    "checks": {"enabled": True, "use_after_free": {"enabled": False}},
    # only the document's own links: inferred ones start from responses whose status depends on timing
    # (a report read before or after its job finished), which Hypothesis cannot replay
    "phases": {"stateful": {"inference": {"algorithms": []}}},
    "operations": [{
        # a cursor is opaque: a well-formed string the API never issued is refused (400), as documented
        "include-operation-id": "listReports",
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401"]}},
    }],
})
schema = schemathesis.openapi.from_path(SPEC_PATH, config=CONFIG)
# by exclusion: with an [[operations]] entry in the config, schemathesis 4.32 ORs `include()` with "every operation"
auth_api = schema.exclude(tag=["reports", "operations"])
reports_api = schema.exclude(tag=["auth", "operations"]).exclude(operation_id="localFile")


REQUEST_ID = {"X-Request-ID": "schemathesis-e2e"}


def request_id_echoed(ctx, response, case):
    """The contract: every HTTP response carries X-Request-ID, the client's own when it sent one."""
    assert response.headers.get("x-request-id") == [REQUEST_ID["X-Request-ID"]], "X-Request-ID not echoed"


@pytest.fixture(scope="module")
def user(stack):
    return Api(stack.auth_url, stack.reports_url).new_user()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}", **REQUEST_ID}


@auth_api.parametrize()
def test_auth_api(case, stack, user):
    op = case.operation.definition.raw.get("operationId")
    if op in ("refresh", "logout"):  # each spends its token (rotation, revocation): a fresh login per request
        tokens = user.api.login(user.email, user.password)
        headers = bearer(tokens["refresh_token" if op == "refresh" else "access_token"])
    elif op == "me":
        headers = bearer(user.token)
    else:
        headers = REQUEST_ID
    case.call_and_validate(base_url=stack.auth_url, headers=headers, additional_checks=[request_id_echoed])


@reports_api.parametrize()
def test_reports_api(case, stack, user):
    response = case.call_and_validate(base_url=stack.reports_url, headers=bearer(user.token),
                                      additional_checks=[request_id_echoed])
    if case.method == "POST" and response.status_code in (200, 202):  # case.method: also other methods are sent
        # cancel at once: the worker stays free for the other end-to-end tests, and the active-job limit
        # is never reached
        user.request("DELETE", f"/v1/reports/{response.json()['id']}")


def test_reports_workflows(stack):
    """Create reports, then follow the document's links from them: read, download, delete (and read again)."""
    api = Api(stack.auth_url, stack.reports_url)

    class Workflow(reports_api.as_state_machine()):
        def setup(self):  # a new user per scenario: what a step gets back depends on that scenario alone
            self.user, self.created = api.new_user(), []

        def get_call_kwargs(self, case):
            return {"base_url": stack.reports_url, "headers": bearer(self.user.token)}

        def after_call(self, response, case):
            super().after_call(response, case)
            if case.method == "POST" and response.status_code in (200, 202):
                self.created.append(response.json()["id"])

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, headers=kwargs["headers"], transport_kwargs=kwargs,
                                   additional_checks=[request_id_echoed], recorder=self.recorder)

        def teardown(self):
            for report_id in self.created:  # cancel what is still queued or running (see test_reports_api)
                self.user.request("DELETE", f"/v1/reports/{report_id}")

    Workflow.run(settings=hypothesis.settings(max_examples=15, stateful_step_count=6, derandomize=True,
                                              database=None, deadline=None))


def test_download_of_a_finished_report(stack, user):
    """Where the links end for a client, which the generated workflows reach only when a job wins the race:
    the 302 of a succeeded report, checked like every generated response."""
    report = user.create({"rows": 5, "columns": 2})
    user.wait_status(report["id"], ("succeeded",))
    case = reports_api["/v1/reports/{report_id}/download"]["GET"].Case(path_parameters={"report_id": report["id"]})
    response = case.call_and_validate(base_url=stack.reports_url, headers=bearer(user.token),
                                      additional_checks=[request_id_echoed])
    assert response.status_code == 302


def test_integral_numbers_with_a_fraction_are_integers(user):
    body = {"type": "demo", "params": {"rows": 20.0, "columns": 2.0, "seed": 73.0}}
    r = user.request("POST", "/v1/reports", json=body)
    if r.status_code in (200, 202):
        user.request("DELETE", f"/v1/reports/{r.json()['id']}")
    assert r.status_code == 202, r.text
