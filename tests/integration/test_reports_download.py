"""Download links: presigned for the address clients use, short-lived, and for the owner only."""
from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import requests
from sqlalchemy import update

from reportflow_common.db import Report, make_engine, make_session_factory, transaction
from reportflow_common.storage import report_key

from .contract_checks import assert_problem, test_client


def _finish_as_the_worker_would(infra, user_id: str, report_id: str) -> str:
    """Put a file in storage and mark the row succeeded (the worker's part, which is not under test here)."""
    key = report_key(user_id, report_id)
    infra.s3.client().put_object(Bucket=infra.s3.bucket, Key=key, Body=b"PK\x03\x04 not really a workbook")
    engine = make_engine(infra.postgres.url)
    with transaction(make_session_factory(engine)) as s:
        s.execute(update(Report).where(Report.id == uuid.UUID(report_id)).values(
            status="succeeded", storage_key=key, rows=1, size_bytes=29, progress=1.0))
    engine.dispose()
    return key


def test_download_redirects_to_a_presigned_url_for_the_public_address(infra, make_reports_app, accounts):
    public = "http://storage.reportflow.example:9000"
    app = make_reports_app(S3_PUBLIC_ENDPOINT_URL=public, DOWNLOAD_URL_TTL_SECONDS="120")
    client, user = test_client(app), accounts.new()
    created = client.post("/v1/reports", json={"type": "demo", "params": {"rows": 1}}, headers=user.headers).get_json()
    _finish_as_the_worker_would(infra, user.id, created["id"])

    r = client.get(f"/v1/reports/{created['id']}/download", headers=user.headers)
    assert r.status_code == 302
    url = urlsplit(r.headers["Location"])
    assert f"{url.scheme}://{url.netloc}" == public
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["120"] and "X-Amz-Signature" in query
    assert "attachment" in query["response-content-disposition"][0]
    # the same path and query against the real S3 server returns the object
    internal = requests.get(infra.s3.url + url.path + "?" + url.query, timeout=10)
    assert internal.status_code == 200 and internal.content.startswith(b"PK")

    body = client.get(f"/v1/reports/{created['id']}", headers=user.headers).get_json()
    assert body["status"] == "succeeded" and body["download_url"] == f"/v1/reports/{created['id']}/download"

    other = accounts.new()
    assert_problem(client.get(f"/v1/reports/{created['id']}/download", headers=other.headers), 404, "not_found")


def test_deleting_a_finished_report_removes_its_file(infra, reports, accounts):
    user = accounts.new()
    created = reports.post("/v1/reports", json={"type": "demo"}, headers=user.headers).get_json()
    key = _finish_as_the_worker_would(infra, user.id, created["id"])
    assert reports.delete(f"/v1/reports/{created['id']}", headers=user.headers).status_code == 204
    assert "Contents" not in infra.s3.client().list_objects_v2(Bucket=infra.s3.bucket, Prefix=key)
    assert_problem(reports.get(f"/v1/reports/{created['id']}", headers=user.headers), 404, "not_found")
