"""Pure checks of what clients send; every failure names its field."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from datetime import datetime

from reportflow_common import contracts as c
from reportflow_common.problems import invalid

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_SEED_LIMIT = 2 ** 63 - 1


def _as_int(value) -> int | None:
    """JSON's idea of an integer: 20 and 20.0 are; 20.5, true and "20" are not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _int_in(errors: list, params: dict, name: str, low: int, high: int) -> None:
    """Check params[name] and store it as an int, so 20.0 and 20 are the same request."""
    value, field = _as_int(params[name]), f"params.{name}"
    if value is None:
        errors.append({"field": field, "message": "must be an integer"})
    elif not low <= value <= high:
        errors.append({"field": field, "message": f"must be between {low} and {high}"})
    else:
        params[name] = value


def validate_new_report(body: dict) -> tuple[str, dict]:
    """(type, params with defaults applied) of a POST /v1/reports body, or a 422 listing every problem."""
    errors: list[dict] = []
    unknown = sorted(set(body) - {"type", "params"})
    errors += [{"field": k, "message": "unknown field"} for k in unknown]
    report_type, params = body.get("type"), body.get("params", {})
    if report_type not in c.REPORT_TYPES:
        errors.append({"field": "type", "message": f"must be one of: {', '.join(c.REPORT_TYPES)}"})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        errors.append({"field": "params", "message": "must be an object"})
        raise invalid(errors)
    if report_type == "demo":
        params = {**c.DEMO_DEFAULTS, **params}
        errors += [{"field": f"params.{k}", "message": "unknown parameter"}
                   for k in sorted(set(params) - set(c.DEMO_DEFAULTS))]
        _int_in(errors, params, "rows", *c.DEMO_ROWS_RANGE)
        _int_in(errors, params, "columns", *c.DEMO_COLUMNS_RANGE)
        _int_in(errors, params, "seed", -_SEED_LIMIT, _SEED_LIMIT)
        if params["format"] not in c.REPORT_FORMATS:
            errors.append({"field": "params.format", "message": f"must be one of: {', '.join(c.REPORT_FORMATS)}"})
    elif report_type == "activity":
        errors += [{"field": f"params.{k}", "message": "unknown parameter"} for k in sorted(params)]
    if errors:
        raise invalid(errors)
    return report_type, params


def request_fingerprint(report_type: str, params: dict) -> str:
    """Identifies what was asked, so a reused Idempotency-Key with another body is told apart."""
    return hashlib.sha256(json.dumps([report_type, params], sort_keys=True).encode()).hexdigest()


def validate_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.match(value):
        raise invalid([{"field": "Idempotency-Key", "message": "must be 1 to 255 visible ASCII characters"}],
                      status=400)
    return value


def parse_report_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def encode_cursor(created_at: datetime, report_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(report_id)]).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, report_id = json.loads(raw)
        if not isinstance(created_at, str) or not isinstance(report_id, str):  # uuid.UUID(5) is no ValueError
            raise TypeError("cursor parts must be strings")
        return datetime.fromisoformat(created_at), uuid.UUID(report_id)
    except (ValueError, TypeError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
        raise invalid([{"field": "cursor", "message": "is not a cursor this API returned"}], status=400) from None


def validate_list_query(args) -> tuple[str | None, int, tuple[datetime, uuid.UUID] | None]:
    errors = []
    status = args.get("status") or None
    if status is not None and status not in c.STATUSES:
        errors.append({"field": "status", "message": f"must be one of: {', '.join(c.STATUSES)}"})
    limit = c.PAGE_LIMIT_DEFAULT
    if args.get("limit") not in (None, ""):
        try:
            limit = int(args["limit"])
        except ValueError:
            limit = -1
        if not 1 <= limit <= c.PAGE_LIMIT_MAX:
            errors.append({"field": "limit", "message": f"must be an integer from 1 to {c.PAGE_LIMIT_MAX}"})
    if errors:
        raise invalid(errors, status=400)
    cursor = decode_cursor(args["cursor"]) if args.get("cursor") else None
    return status, limit, cursor
