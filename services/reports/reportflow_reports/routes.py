"""The /v1/reports endpoints of the contract, plus signed local-file downloads for `make up`."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, current_app, jsonify, request, send_file

from reportflow_common import contracts as c
from reportflow_common.logs import report_id_var, user_id_var
from reportflow_common.outbox import OutboxPublisher
from reportflow_common.problems import Problem, not_found
from reportflow_common.queue import doorbell_queue, ring_doorbell
from reportflow_common.scheduling import queue_positions
from reportflow_common.storage import LocalStorage
from reportflow_common.tokens import access_token_required, current_claims
from reportflow_common.web import json_body

from . import records, validation

bp = Blueprint("reports", __name__)
log = logging.getLogger(__name__)


def _ctx():
    return current_app.extensions["reportflow"]


def _caller() -> str:
    user_id = current_claims()["sub"]
    user_id_var.set(user_id)
    return user_id


def _owned_or_404(report_id: str, position_order: str | None = None):
    report = records.get_owned(_ctx().reads, _caller(), validation.parse_report_id(report_id), position_order)
    if report is None:
        raise not_found("No such report.")
    report_id_var.set(str(report.id))
    return report


def _as_json(reports: list) -> list[dict]:
    """Report objects, each queued one with its place in the run order (the order the worker claims in)."""
    ctx = _ctx()
    positions = queue_positions(ctx.reads, ctx.settings.job_order, [r.id for r in reports if r.status == c.QUEUED])
    return [records.report_json(r, positions.get(r.id)) for r in reports]


def _created(report, status: int, body: dict | None = None):
    resp = jsonify(body or _as_json([report])[0])
    resp.status_code = status
    resp.headers["Location"] = f"/v1/reports/{report.id}"
    return resp


@bp.post("/v1/reports")
@access_token_required
def create():
    ctx, user_id = _ctx(), _caller()
    report_type, params = validation.validate_new_report(json_body())
    key = validation.validate_idempotency_key(request.headers.get("Idempotency-Key"))
    fingerprint = validation.request_fingerprint(report_type, params)
    earlier = records.earlier_answer(ctx.sessions, user_id, key, fingerprint)
    if earlier is not None:  # a retried request: answer it again, whatever the active-job limit
        return _created(earlier, 200)
    report, created = records.create_report(ctx.sessions, ctx.reads, user_id, report_type, params, key, fingerprint,
                                            ctx.settings.max_active_reports_per_user, ctx.settings.job_order)
    if report is None:
        raise Problem(429, c.RATE_LIMITED, "Too many reports are queued or running; wait for one to finish.",
                      headers={"Retry-After": "10"})
    if not created:
        return _created(report, 200)
    report_id_var.set(str(report.id))
    body = records.report_json(report, report.queue_position)  # its place before a worker can take it
    try:  # the committed row is the job; the message only wakes a worker up
        ring_doorbell(ctx.celery, str(report.id), doorbell_queue(report_type, params, ctx.settings.lane_max_cells))
    except Exception as exc:  # the job stays queued: the worker's reconciler rings for it once the broker is back
        log.warning("doorbell not sent; the reconciler will ring", extra={"error": str(exc)})
    ctx.metrics.created.labels(report_type).inc()
    log.info("report queued", extra={"type": report_type})
    return _created(report, 202, body)


@bp.get("/v1/reports")
@access_token_required
def list_reports():
    status, limit, cursor = validation.validate_list_query(request.args)
    rows, next_key = records.list_reports(_ctx().sessions, _caller(), status, limit, cursor)
    return jsonify(items=_as_json(rows),
                   next_cursor=validation.encode_cursor(*next_key) if next_key else None)


@bp.get("/v1/reports/<report_id>")
@access_token_required
def get_report(report_id: str):
    report = _owned_or_404(report_id, _ctx().settings.job_order)  # read with its queue_position, one statement
    return jsonify(records.report_json(report, report.queue_position))


@bp.get("/v1/reports/<report_id>/download")
@access_token_required
def download(report_id: str):
    report = _owned_or_404(report_id)
    if records.is_past_retention(report):
        raise Problem(410, c.GONE, "The report has expired: its retention ended (see its expires_at) and its "
                                   "file no longer exists.")
    if report.status != c.SUCCEEDED or not report.storage_key:
        raise Problem(409, c.CONFLICT, f"The report is {report.status}; only a succeeded report can be downloaded.")
    url = _ctx().storage.download_url(report.storage_key,
                                      f"{report.type}-{report.id}{c.extension_of(report.storage_key)}")
    return Response(status=302, headers={"Location": url})  # no HTML body, unlike flask.redirect


@bp.delete("/v1/reports/<report_id>")
@access_token_required
def delete(report_id: str):
    ctx = _ctx()
    report = _owned_or_404(report_id)
    done = records.cancel_or_delete(ctx.sessions, report, ctx.settings.report_retention)
    ctx.metrics.deletes.labels(done.outcome).inc()
    if done.event is not None:
        OutboxPublisher(ctx.sessions, ctx.events, ctx.reads).publish_after_commit(done.event)
    elif done.storage_key:  # the deleted row's: it may have finished after `report` was read
        ctx.storage.delete(done.storage_key)
    log.info("report delete", extra={"outcome": done.outcome})
    return "", 204


@bp.get("/v1/files/<path:key>")
def local_file(key: str):
    """Only with STORAGE_BACKEND=local: the target of a signed, short-lived download link."""
    storage = _ctx().storage
    if not isinstance(storage, LocalStorage):
        abort(404)
    if not storage.verify(key, request.args.get("expires"), request.args.get("signature")):
        raise Problem(403, c.FORBIDDEN, "The download link is invalid or has expired.")
    try:
        path = storage.path(key)
    except ValueError:
        abort(404)
    if storage.size(key) is None:
        abort(404)
    return send_file(path, mimetype=c.content_type_of(key), as_attachment=True, download_name=key.rsplit("/", 1)[-1])
