"""The reports API in-process against real PostgreSQL, Redis (also the Celery broker) and the S3 server.

No worker runs here: created reports stay queued, and the wake-up messages stay in the broker, where the tests
read them to check what was rung for.
"""
from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta

import pytest

from reportflow_common import contracts as c
from reportflow_common.events import EventLog

from .contract_checks import assert_problem, closed_port_url, test_client

REPORT_FIELDS = {"id", "type", "params", "status", "progress", "created_at", "started_at", "finished_at", "rows",
                 "size_bytes", "error", "expires_at", "queue_position"}


@pytest.fixture()
def alice(accounts):
    return accounts.new()


@pytest.fixture()
def bob(accounts):
    return accounts.new()


def create(reports, user, body=None, key: str | None = None):
    headers = {**user.headers, **({"Idempotency-Key": key} if key is not None else {})}
    return reports.post("/v1/reports", json={"type": "demo", "params": {"rows": 10}} if body is None else body,
                        headers=headers)


def created(reports, user, body=None, key: str | None = None) -> dict:
    r = create(reports, user, body, key)
    assert r.status_code == 202, r.get_data(as_text=True)
    return r.get_json()


def enqueued_report_ids(broker, queues: tuple[str, ...] = (c.REPORTS_QUEUE, c.LANE_QUEUE)) -> list[str]:
    """Report ids of the doorbells waiting in Celery queues (kombu's Redis lists), oldest last."""
    ids = []
    for queue in queues:
        for raw in broker.lrange(queue, 0, -1):
            message = json.loads(raw)
            assert message["headers"]["task"] == c.BUILD_REPORT_TASK
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            ids.append(args[0])
    return ids


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.utcoffset() == timedelta(0), text
    return value


# Creating

def test_create_answers_202_with_location_and_the_queued_report(reports, alice, broker):
    r = create(reports, alice, {"type": "demo", "params": {"rows": 10, "columns": 3, "seed": 7}})
    assert r.status_code == 202 and r.mimetype == "application/json"
    report = r.get_json()
    assert set(report) == REPORT_FIELDS  # download_url only once succeeded
    assert r.headers["Location"] == f"/v1/reports/{report['id']}"
    assert uuid.UUID(report["id"])
    assert report["type"] == "demo" and report["params"] == {"rows": 10, "columns": 3, "seed": 7, "format": "xlsx"}
    assert report["status"] == "queued" and report["progress"] == 0
    assert abs(_utc(report["created_at"]) - datetime.now(_utc(report["created_at"]).tzinfo)) < timedelta(minutes=5)
    assert all(report[k] is None for k in ("started_at", "finished_at", "rows", "size_bytes", "error", "expires_at"))
    assert enqueued_report_ids(broker, (c.LANE_QUEUE,)).count(report["id"]) == 1  # small: one message, the lane's
    assert enqueued_report_ids(broker, (c.REPORTS_QUEUE,)).count(report["id"]) == 0  # (the pool consumes both)
    assert report["queue_position"] >= 1
    assert reports.get(r.headers["Location"], headers=alice.headers).get_json() == report


def test_a_queued_report_tells_its_place_in_the_fair_order(reports, alice, bob, broker):
    heavy = [created(reports, alice, {"type": "demo", "params": {"rows": 1_000_000, "columns": 8}}) for _ in range(3)]
    light = created(reports, bob)
    assert all(enqueued_report_ids(broker, (c.LANE_QUEUE,)).count(r["id"]) == 0 for r in heavy)  # too large
    assert all(enqueued_report_ids(broker, (c.REPORTS_QUEUE,)).count(r["id"]) == 1 for r in heavy)  # the pool's
    place = {r["id"]: reports.get(f"/v1/reports/{r['id']}", headers=u.headers).get_json()["queue_position"]
             for u, r in [(alice, heavy[0]), (alice, heavy[1]), (alice, heavy[2]), (bob, light)]}
    # bob's first report goes right after alice's first, before her other two (older though they are)
    assert place[light["id"]] == place[heavy[0]["id"]] + 1 < place[heavy[1]["id"]] < place[heavy[2]["id"]]
    listed = reports.get("/v1/reports", headers=alice.headers).get_json()["items"]
    assert {r["id"]: r["queue_position"] for r in listed} == {r["id"]: place[r["id"]] for r in heavy}
    assert reports.delete(f"/v1/reports/{heavy[0]['id']}", headers=alice.headers).status_code == 204
    cancelled = reports.get(f"/v1/reports/{heavy[0]['id']}", headers=alice.headers).get_json()
    assert cancelled["status"] == "cancelled" and cancelled["queue_position"] is None
    # alice's next one takes the cancelled one's turn (and place): still before bob's, being older
    assert reports.get(f"/v1/reports/{heavy[1]['id']}", headers=alice.headers).get_json()["queue_position"] \
        == place[heavy[0]["id"]]


def test_demo_defaults_and_activity_reports(reports, alice):
    assert created(reports, alice, {"type": "demo"})["params"] == c.DEMO_DEFAULTS
    assert created(reports, alice, {"type": "demo", "params": None})["params"] == c.DEMO_DEFAULTS
    activity = created(reports, alice, {"type": "activity", "params": {}})
    assert activity["type"] == "activity" and activity["status"] == "queued"
    assert created(reports, alice, {"type": "demo", "params": {"rows": 1, "columns": 50}})["params"]["columns"] == 50
    assert created(reports, alice, {"type": "demo", "params": {"rows": 1_000_000}})["params"]["rows"] == 1_000_000


def test_malformed_json_is_400(reports, alice):
    r = reports.post("/v1/reports", data='{"type": "demo",', content_type="application/json", headers=alice.headers)
    assert_problem(r, 400, "invalid_request", "body")
    r = reports.post("/v1/reports", json=["demo"], headers=alice.headers)
    assert_problem(r, 400, "invalid_request", "body")


def test_deeply_nested_json_is_400_not_a_crash(reports, alice):
    depth = 30_000  # well-formed and under 64 KiB, but deeper than Python's recursion limit
    r = reports.post("/v1/reports", data="[" * depth + "]" * depth, content_type="application/json",
                     headers=alice.headers)
    assert_problem(r, 400, "invalid_request", "body")


def test_a_body_that_is_not_json_is_415(reports, alice):
    r = reports.post("/v1/reports", data='{"type": "demo"}', content_type="text/plain", headers=alice.headers)
    assert_problem(r, 415, "unsupported_media_type")
    assert_problem(reports.post("/v1/reports", headers=alice.headers), 415, "unsupported_media_type")


def test_a_body_over_64_kib_is_413(reports, alice, broker):
    before = len(enqueued_report_ids(broker))
    body = json.dumps({"type": "demo", "params": {"rows": 10}, "padding": "x" * (64 * 1024)})
    r = reports.post("/v1/reports", data=body, content_type="application/json", headers=alice.headers)
    assert_problem(r, 413, "payload_too_large")
    assert len(enqueued_report_ids(broker)) == before
    assert reports.get("/v1/reports", headers=alice.headers).get_json()["items"] == []


@pytest.mark.parametrize("params, field", [
    ({"rows": 0}, "params.rows"),
    ({"rows": 1_000_001}, "params.rows"),
    ({"rows": True}, "params.rows"),
    ({"rows": 10.5}, "params.rows"),
    ({"rows": "10"}, "params.rows"),
    ({"columns": 0}, "params.columns"),
    ({"columns": 51}, "params.columns"),
    ({"seed": "x"}, "params.seed"),
    ({"seed": 2 ** 64}, "params.seed"),
    ({"colour": "red"}, "params.colour"),
])
def test_bad_demo_params_are_422_naming_the_param(reports, alice, params, field):
    assert_problem(create(reports, alice, {"type": "demo", "params": params}), 422, "invalid_request", field)


@pytest.mark.parametrize("body, fields", [
    ({"type": "pie-chart"}, ["type"]),
    ({}, ["type"]),
    ({"type": ["demo"]}, ["type"]),
    ({"type": "demo", "params": [1]}, ["params"]),
    ({"type": "activity", "params": {"rows": 1}}, ["params.rows"]),
    ({"type": "demo", "priority": "high"}, ["priority"]),
    ({"type": "demo", "params": {"rows": 0, "columns": 51, "seed": "x"}}, ["params.rows", "params.columns",
                                                                          "params.seed"]),
    # control characters in any string are refused before anything else looks at the body
    ({"type": "demo\u0000"}, ["type"]),
    ({"type": "demo", "params": {"seed": "1\u0007"}}, ["params.seed"]),
    ({"type": "demo", "params": {"rows\u0000": 1}}, ["params"]),
    ({"type": "demo", "note": ["ok", "\u009b[31m"]}, ["note[1]"]),
    ({"type": "demo", "note": "\udfff"}, ["note"]),
])
def test_bad_bodies_are_422_naming_every_field(reports, alice, body, fields):
    assert_problem(create(reports, alice, body), 422, "invalid_request", *fields)


def test_nothing_is_stored_or_queued_for_a_refused_request(reports, alice, broker):
    before = len(enqueued_report_ids(broker))
    assert create(reports, alice, {"type": "demo", "params": {"rows": 0}}).status_code == 422
    assert reports.get("/v1/reports", headers=alice.headers).get_json() == {"items": [], "next_cursor": None}
    assert len(enqueued_report_ids(broker)) == before


def test_a_doorbell_names_its_queue_for_the_worker(reports_app, broker):
    """The worker tells a lane message from a pool message by its routing key (its pass-on, jobs.run_next_job).
    A doorbell declares nothing: it lands in its queue even in a broker that lost every declaration (a Redis
    restarted without its data)."""
    from reportflow_common.queue import ring_doorbell

    celery = reports_app.extensions["reportflow"].celery
    for queue in (c.REPORTS_QUEUE, c.LANE_QUEUE):
        broker.delete(queue, *broker.keys("_kombu.binding.*"))
        ring_doorbell(celery, "r1", queue)
        (raw,) = broker.lrange(queue, 0, -1)
        broker.delete(queue)
        assert json.loads(raw)["properties"]["delivery_info"]["routing_key"] == queue


# Reading

def test_get_one_report(reports, alice):
    report = created(reports, alice)
    r = reports.get(f"/v1/reports/{report['id']}", headers=alice.headers)
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.get_json() == report


@pytest.mark.parametrize("report_id", ["not-a-uuid", "123", str(uuid.uuid4()), "%20", "..%2F..%2Fetc"])
def test_an_unknown_or_malformed_id_is_404(reports, alice, report_id):
    for method, path in (("GET", ""), ("GET", "/download"), ("DELETE", "")):
        r = reports.open(f"/v1/reports/{report_id}{path}", method=method, headers=alice.headers)
        assert_problem(r, 404, "not_found")


def test_list_is_newest_first_and_pages_without_gaps_or_repeats(reports, alice):
    ids = [created(reports, alice, {"type": "demo", "params": {"rows": n + 1}})["id"] for n in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        r = reports.get("/v1/reports", query_string=query, headers=alice.headers)
        assert r.status_code == 200
        page = r.get_json()
        assert set(page) == {"items", "next_cursor"}
        assert all(set(item) == REPORT_FIELDS for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == 3 and pages < 5
    assert pages == 3 and len(page["items"]) == 1
    assert seen == list(reversed(ids))
    default = reports.get("/v1/reports", headers=alice.headers).get_json()
    assert [i["id"] for i in default["items"]] == seen and default["next_cursor"] is None


def test_list_filters_by_status(reports, alice):
    ids = [created(reports, alice)["id"] for _ in range(4)]
    for report_id in ids[:2]:
        assert reports.delete(f"/v1/reports/{report_id}", headers=alice.headers).status_code == 204

    def listed(status):
        r = reports.get("/v1/reports", query_string={"status": status}, headers=alice.headers)
        assert r.status_code == 200
        return [i["id"] for i in r.get_json()["items"]]
    assert listed("cancelled") == ids[1::-1]
    assert listed("queued") == ids[:1:-1]
    assert listed("succeeded") == []
    assert_problem(reports.get("/v1/reports?status=done", headers=alice.headers), 400, "invalid_request", "status")


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "2.5"])
def test_an_out_of_range_limit_is_400(reports, alice, limit):
    r = reports.get("/v1/reports", query_string={"limit": limit}, headers=alice.headers)
    assert_problem(r, 400, "invalid_request", "limit")


def _cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("cursor", [
    "not-a-cursor", "!!!!", _cursor([1]), _cursor("ab"), _cursor([None, None]), _cursor({"a": 1, "b": 2}),
    _cursor(["yesterday", str(uuid.uuid4())]), _cursor(["2024-01-01T00:00:00+00:00", "not-a-uuid"]),
    _cursor(["2024-01-01T00:00:00+00:00", 5]), _cursor([5, str(uuid.uuid4())]),
    base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(), base64.urlsafe_b64encode(b"[" * 1100).decode(),
])
def test_a_bad_cursor_is_400(reports, alice, cursor):
    r = reports.get("/v1/reports", query_string={"cursor": cursor}, headers=alice.headers)
    assert_problem(r, 400, "invalid_request", "cursor")


def test_the_list_holds_only_the_callers_reports(reports, alice, bob):
    mine = created(reports, alice)["id"]
    theirs = created(reports, bob)["id"]
    assert [i["id"] for i in reports.get("/v1/reports", headers=alice.headers).get_json()["items"]] == [mine]
    assert [i["id"] for i in reports.get("/v1/reports", headers=bob.headers).get_json()["items"]] == [theirs]


# Another user's reports

def test_another_users_report_is_404_and_left_untouched(reports, alice, bob):
    report = created(reports, alice)
    for method, path in (("GET", ""), ("GET", "/download"), ("DELETE", "")):
        r = reports.open(f"/v1/reports/{report['id']}{path}", method=method, headers=bob.headers)
        body = assert_problem(r, 404, "not_found")
        assert report["id"] not in json.dumps(body)
    missing = assert_problem(reports.get(f"/v1/reports/{uuid.uuid4()}", headers=bob.headers), 404, "not_found")
    foreign = assert_problem(reports.get(f"/v1/reports/{report['id']}", headers=bob.headers), 404, "not_found")
    assert missing == foreign  # nothing tells "someone else's" from "does not exist"
    assert reports.get(f"/v1/reports/{report['id']}", headers=alice.headers).get_json() == report


# Download and delete

def test_download_of_a_report_that_has_not_succeeded_is_409(reports, alice):
    report = created(reports, alice)
    assert_problem(reports.get(f"/v1/reports/{report['id']}/download", headers=alice.headers), 409, "conflict")
    assert reports.delete(f"/v1/reports/{report['id']}", headers=alice.headers).status_code == 204
    assert_problem(reports.get(f"/v1/reports/{report['id']}/download", headers=alice.headers), 409, "conflict")


def test_delete_of_a_queued_report_cancels_it(reports_app, reports, alice, redis):
    report = created(reports, alice)
    events = EventLog(redis)
    last_seq = events.last_seq(alice.id)
    r = reports.delete(f"/v1/reports/{report['id']}", headers=alice.headers)
    assert r.status_code == 204 and r.get_data() == b""
    now = reports.get(f"/v1/reports/{report['id']}", headers=alice.headers).get_json()
    assert now["status"] == "cancelled" and "download_url" not in now
    assert _utc(now["finished_at"]) >= _utc(now["created_at"])
    retention = reports_app.extensions["reportflow"].settings.report_retention  # kept that long, like any ended job
    assert _utc(now["expires_at"]) - _utc(now["finished_at"]) == retention
    # the notifier's clients hear of it: one report.cancelled event, numbered after the earlier ones
    (name, payload), = events.since(alice.id, last_seq)
    assert name == c.EVENT_CANCELLED and payload["report_id"] == report["id"] and payload["seq"] == last_seq + 1


def test_a_report_that_finishes_while_delete_runs_has_its_file_deleted_with_it(reports, alice, infra, monkeypatch):
    """DELETE reads the report (running: no file yet); the worker finishes it (file stored, row succeeded);
    DELETE then deletes the finished row: the file it removes is the deleted row's, not the one read before."""
    import psycopg2

    from reportflow_common.storage import report_key
    from reportflow_reports import records

    def sql(statement: str, *args):
        with psycopg2.connect(infra.postgres.url) as conn, conn.cursor() as cur:
            cur.execute(statement, args)
            found = cur.fetchall() if cur.description else None
        conn.close()
        return found

    report = created(reports, alice)
    sql("UPDATE reports SET status = 'running', started_at = now() WHERE id = %s", report["id"])
    key, s3, read = report_key(alice.id, report["id"], ".xlsx"), infra.s3.client(), records.get_owned

    def read_then_the_worker_finishes(*args, **kwargs):
        row = read(*args, **kwargs)
        assert row.status == c.RUNNING and row.storage_key is None
        s3.put_object(Bucket=infra.s3.bucket, Key=key, Body=b"report")
        sql("UPDATE reports SET status = 'succeeded', storage_key = %s, finished_at = now(), progress = 1 "
            "WHERE id = %s", key, report["id"])
        return row

    monkeypatch.setattr(records, "get_owned", read_then_the_worker_finishes)
    assert reports.delete(f"/v1/reports/{report['id']}", headers=alice.headers).status_code == 204
    assert sql("SELECT id FROM reports WHERE id = %s", report["id"]) == []
    assert s3.list_objects_v2(Bucket=infra.s3.bucket, Prefix=key)["KeyCount"] == 0  # not orphaned


# Idempotency-Key

def test_the_same_idempotency_key_and_body_return_the_same_report(reports, alice, broker):
    key = f"key-{uuid.uuid4()}"
    first = create(reports, alice, key=key)
    assert first.status_code == 202
    again = create(reports, alice, key=key)
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert enqueued_report_ids(broker).count(first.get_json()["id"]) == 1  # no second job
    assert len(reports.get("/v1/reports", headers=alice.headers).get_json()["items"]) == 1


def test_a_report_whose_message_cannot_be_sent_is_accepted_queued_and_its_key_answers_it_again(
        make_reports_app, alice, infra):
    """The broker is unreachable after the commit: the job is still the committed row (the worker's reconciler
    rings for it), so the client gets 202, and its retry with the same key gets the same queued report."""
    import psycopg2

    client = test_client(make_reports_app(BROKER_URL=closed_port_url("redis") + "/0"))
    key = f"key-{uuid.uuid4()}"
    first = create(client, alice, key=key)
    assert first.status_code == 202 and first.get_json()["status"] == "queued", first.get_data(as_text=True)
    again = create(client, alice, key=key)
    assert again.status_code == 200 and again.get_json() == first.get_json()
    with psycopg2.connect(infra.postgres.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, rung_at IS NOT NULL FROM reports WHERE id = %s", (first.get_json()["id"],))
        assert cur.fetchone() == ("queued", True)  # rung_at: the reconciler rings again once it is old
    conn.close()


def test_the_same_idempotency_key_with_another_body_is_409(reports, alice):
    key = f"key-{uuid.uuid4()}"
    first = create(reports, alice, {"type": "demo", "params": {"rows": 10}}, key=key)
    assert first.status_code == 202
    other = create(reports, alice, {"type": "demo", "params": {"rows": 11}}, key=key)
    assert_problem(other, 409, "conflict")
    assert [i["id"] for i in reports.get("/v1/reports", headers=alice.headers).get_json()["items"]] == \
        [first.get_json()["id"]]


def test_the_same_idempotency_key_from_another_user_is_a_new_report(reports, alice, bob):
    key = f"key-{uuid.uuid4()}"
    mine = create(reports, alice, key=key)
    theirs = create(reports, bob, key=key)
    assert mine.status_code == theirs.status_code == 202
    assert mine.get_json()["id"] != theirs.get_json()["id"]
    assert reports.get(f"/v1/reports/{theirs.get_json()['id']}", headers=bob.headers).status_code == 200


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "naïve", "tab\tkey", "nul\x00key", "del\x7fkey"])
def test_a_malformed_idempotency_key_is_400(reports, alice, key):
    headers = {**alice.headers, "Idempotency-Key": key}
    r = reports.post("/v1/reports", json={"type": "demo"}, headers=headers)
    assert_problem(r, 400, "invalid_request", "Idempotency-Key")


# Limits

def test_too_many_active_reports_is_429(make_reports_app, accounts):
    limited = test_client(make_reports_app(MAX_ACTIVE_REPORTS_PER_USER="2"))
    user = accounts.new()
    key = f"key-{uuid.uuid4()}"
    first = created(limited, user, key=key)
    created(limited, user)
    assert_problem(create(limited, user), 429, "rate_limited")
    # a retry of an accepted request is still answered, and ending one job frees a place
    assert create(limited, user, key=key).status_code == 200
    assert limited.delete(f"/v1/reports/{first['id']}", headers=user.headers).status_code == 204
    assert create(limited, user).status_code == 202
    assert len(limited.get("/v1/reports", headers=user.headers).get_json()["items"]) == 3
