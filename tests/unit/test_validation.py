"""reportflow_reports.validation: what POST /v1/reports and GET /v1/reports accept, and how they refuse."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from reportflow_common import contracts as c
from reportflow_common.problems import Problem
from reportflow_reports.validation import (
    decode_cursor,
    encode_cursor,
    request_fingerprint,
    validate_idempotency_key,
    validate_list_query,
    validate_new_report,
)


def _refused(call, *args) -> Problem:
    with pytest.raises(Problem) as excinfo:
        call(*args)
    return excinfo.value


def _fields(problem: Problem) -> list[str]:
    return [e["field"] for e in problem.errors]


def _raw_cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


# validate_new_report

@pytest.mark.parametrize("body", [{"type": "demo"}, {"type": "demo", "params": {}}, {"type": "demo", "params": None}])
def test_demo_without_params_gets_the_documented_defaults(body):
    assert validate_new_report(body) == ("demo", {"rows": 1000, "columns": 8, "seed": 0, "format": "xlsx"})


def test_demo_params_given_override_only_their_defaults():
    assert validate_new_report({"type": "demo", "params": {"rows": 5, "seed": -7}}) == (
        "demo", {"rows": 5, "columns": 8, "seed": -7, "format": "xlsx"})


@pytest.mark.parametrize(("name", "value"), [("rows", 1), ("rows", 1_000_000), ("columns", 1), ("columns", 50)])
def test_demo_range_bounds_are_accepted(name, value):
    _type, params = validate_new_report({"type": "demo", "params": {name: value}})
    assert params[name] == value


@pytest.mark.parametrize(("name", "value"), [("rows", 0), ("rows", 1_000_001), ("rows", -1),
                                             ("columns", 0), ("columns", 51)])
def test_demo_values_outside_the_ranges_are_refused(name, value):
    problem = _refused(validate_new_report, {"type": "demo", "params": {name: value}})
    assert problem.status == 422 and problem.code == c.INVALID_REQUEST
    assert _fields(problem) == [f"params.{name}"]


@pytest.mark.parametrize("name", ["rows", "columns", "seed"])
@pytest.mark.parametrize("value", [True, False, 10.5, "10", None, [10], float("inf")])
def test_demo_numbers_must_be_real_integers_not_bools_fractions_or_strings(name, value):
    problem = _refused(validate_new_report, {"type": "demo", "params": {name: value}})
    assert _fields(problem) == [f"params.{name}"]
    assert "integer" in problem.errors[0]["message"]


@pytest.mark.parametrize("name", ["rows", "columns", "seed"])
def test_an_integral_number_written_with_a_fraction_is_that_integer(name):
    """JSON (and JSON Schema) count 10.0 as the integer 10; it is stored as 10, so both are one request."""
    _type, params = validate_new_report({"type": "demo", "params": {name: 10.0}})
    assert params[name] == 10 and isinstance(params[name], int)
    assert params == validate_new_report({"type": "demo", "params": {name: 10}})[1]


def test_demo_seed_must_fit_in_64_bits():
    assert validate_new_report({"type": "demo", "params": {"seed": 2 ** 63 - 1}})[1]["seed"] == 2 ** 63 - 1
    assert _fields(_refused(validate_new_report, {"type": "demo", "params": {"seed": 2 ** 63}})) == ["params.seed"]


@pytest.mark.parametrize("fmt", c.REPORT_FORMATS)
def test_demo_format_is_xlsx_or_csv(fmt):
    assert validate_new_report({"type": "demo", "params": {"format": fmt}})[1]["format"] == fmt


@pytest.mark.parametrize("fmt", ["CSV", "xls", "", None, 1, True, ["csv"], {"csv": 1}])
def test_demo_other_formats_are_refused_naming_the_choices(fmt):
    problem = _refused(validate_new_report, {"type": "demo", "params": {"rows": 10, "format": fmt}})
    assert problem.status == 422 and _fields(problem) == ["params.format"]
    assert "xlsx" in problem.errors[0]["message"] and "csv" in problem.errors[0]["message"]


def test_an_explicit_default_format_is_the_same_request():
    """Defaults are applied before the idempotency fingerprint, so naming the default changes nothing."""
    assert request_fingerprint(*validate_new_report({"type": "demo", "params": {"rows": 5}})) == \
        request_fingerprint(*validate_new_report({"type": "demo", "params": {"rows": 5, "format": "xlsx"}}))


def test_demo_unknown_parameter_is_named():
    problem = _refused(validate_new_report, {"type": "demo", "params": {"rows": 10, "colour": "red"}})
    assert _fields(problem) == ["params.colour"]


def test_unknown_top_level_field_is_named():
    problem = _refused(validate_new_report, {"type": "demo", "priority": "high"})
    assert _fields(problem) == ["priority"]


@pytest.mark.parametrize("body", [{"type": "pie-chart"}, {}, {"type": None}, {"type": ["demo"]}])
def test_unknown_or_missing_type_is_refused_naming_type(body):
    problem = _refused(validate_new_report, body)
    assert problem.status == 422
    assert _fields(problem) == ["type"]
    for report_type in c.REPORT_TYPES:  # the message tells the client what would be accepted
        assert report_type in problem.errors[0]["message"]


def test_activity_takes_no_params():
    assert validate_new_report({"type": "activity"}) == ("activity", {})
    assert validate_new_report({"type": "activity", "params": {}}) == ("activity", {})
    problem = _refused(validate_new_report, {"type": "activity", "params": {"rows": 10, "since": "x"}})
    assert sorted(_fields(problem)) == ["params.rows", "params.since"]


@pytest.mark.parametrize("params", [[], "rows=10", 5])
def test_params_must_be_an_object(params):
    problem = _refused(validate_new_report, {"type": "demo", "params": params})
    assert _fields(problem) == ["params"]


def test_every_problem_is_listed_at_once():
    problem = _refused(validate_new_report, {
        "type": "demo", "extra": 1, "params": {"rows": 0, "columns": True, "seed": "x", "bogus": 1}})
    assert problem.status == 422 and problem.code == c.INVALID_REQUEST
    assert sorted(_fields(problem)) == sorted(["extra", "params.bogus", "params.rows", "params.columns",
                                               "params.seed"])
    assert all(e["message"] for e in problem.errors)


def test_bad_type_and_bad_params_shape_are_reported_together():
    problem = _refused(validate_new_report, {"type": "nope", "params": [1], "x": 1})
    assert sorted(_fields(problem)) == ["params", "type", "x"]


# cursors

def test_cursor_round_trips():
    created = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    rid = uuid.uuid4()
    cursor = encode_cursor(created, rid)
    assert decode_cursor(cursor) == (created, rid)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")  # URL-safe


@pytest.mark.parametrize("cursor", [
    "garbage!!", "x", "%%%", "é", _raw_cursor(5), _raw_cursor("ab"), _raw_cursor(["not a date", str(uuid.uuid4())]),
    _raw_cursor(["2025-01-01T00:00:00+00:00", "not-a-uuid"]), _raw_cursor(["2025-01-01T00:00:00+00:00"]),
    _raw_cursor([1, 2]), base64.urlsafe_b64encode(b"\xff\xfe").decode(),
])
def test_garbage_cursor_is_a_400_naming_cursor(cursor):
    problem = _refused(decode_cursor, cursor)
    assert problem.status == 400 and problem.code == c.INVALID_REQUEST
    assert _fields(problem) == ["cursor"]


@pytest.mark.parametrize("cursor", [
    _raw_cursor(["2025-01-01T00:00:00+00:00", 5]),
    base64.urlsafe_b64encode(b"[" * 1100).rstrip(b"=").decode(),  # ~1.5 kB: fits in a request line
], ids=["non-string-id", "deeply-nested"])
def test_malicious_cursor_is_a_400_not_a_crash(cursor):
    problem = _refused(decode_cursor, cursor)
    assert problem.status == 400 and _fields(problem) == ["cursor"]


# validate_list_query

def test_list_query_defaults():
    assert validate_list_query({}) == (None, c.PAGE_LIMIT_DEFAULT, None)
    assert validate_list_query({"status": "", "limit": "", "cursor": ""}) == (None, c.PAGE_LIMIT_DEFAULT, None)


@pytest.mark.parametrize("limit", ["1", "100", "37"])
def test_list_limit_within_bounds(limit):
    assert validate_list_query({"limit": limit})[1] == int(limit)


@pytest.mark.parametrize("limit", ["0", "101", "-5", "ten", "2.5"])
def test_list_limit_out_of_bounds_or_not_a_number(limit):
    problem = _refused(validate_list_query, {"limit": limit})
    assert problem.status == 400 and _fields(problem) == ["limit"]


@pytest.mark.parametrize("status", c.STATUSES)
def test_list_status_filter_accepts_every_status(status):
    assert validate_list_query({"status": status})[0] == status


def test_list_bad_status_and_bad_limit_are_reported_together():
    problem = _refused(validate_list_query, {"status": "done", "limit": "1000"})
    assert problem.status == 400
    assert sorted(_fields(problem)) == ["limit", "status"]


def test_list_query_decodes_its_cursor():
    created, rid = datetime(2025, 1, 2, tzinfo=UTC), uuid.uuid4()
    assert validate_list_query({"cursor": encode_cursor(created, rid)})[2] == (created, rid)
    assert _fields(_refused(validate_list_query, {"cursor": "nonsense"})) == ["cursor"]


# Idempotency-Key

@pytest.mark.parametrize("key", ["a", "order-42", "x" * 255, "!~{}[]", "550e8400-e29b-41d4-a716-446655440000"])
def test_idempotency_key_accepted(key):
    assert validate_idempotency_key(key) == key


def test_idempotency_key_absent_is_none():
    assert validate_idempotency_key(None) is None


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\there", "ключ", "new\nline"])
def test_idempotency_key_refused(key):
    problem = _refused(validate_idempotency_key, key)
    assert problem.status == 400 and problem.code == c.INVALID_REQUEST
    assert _fields(problem) == ["Idempotency-Key"]


# request_fingerprint

def test_fingerprint_ignores_key_order_but_not_values_or_type():
    a = request_fingerprint("demo", {"rows": 10, "columns": 3, "seed": 1})
    b = request_fingerprint("demo", {"seed": 1, "columns": 3, "rows": 10})
    assert a == b
    assert a != request_fingerprint("demo", {"rows": 11, "columns": 3, "seed": 1})
    assert a != request_fingerprint("activity", {"rows": 10, "columns": 3, "seed": 1})


def test_fingerprint_of_defaults_equals_fingerprint_of_explicit_values():
    # a retry that spells the defaults out is the same request as one that leaves them implicit
    implicit = request_fingerprint(*validate_new_report({"type": "demo"}))
    explicit = request_fingerprint(*validate_new_report({"type": "demo", "params": {"seed": 0, "rows": 1000,
                                                                                    "columns": 8}}))
    assert implicit == explicit
