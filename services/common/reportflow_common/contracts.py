"""Names shared by producers and consumers: task names, event names, statuses and error codes.

The reports service enqueues by these task names and never imports the worker; the worker and the
notifier agree on event names and rooms through this module alone.
"""

# Celery
BUILD_REPORT_TASK = "reportflow.build_report"
REPORTS_QUEUE = "reports"
LANE_QUEUE = "reports.lane"  # doorbells of small jobs, for the worker's reserved lane (README, scheduling)

# Report types and statuses
REPORT_TYPES = ("demo", "activity")
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
EXPIRED = "expired"  # retention passed: the file is deleted, the report stays as a record (README, retention)
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, EXPIRED)
ENDED_STATUSES = (SUCCEEDED, FAILED, CANCELLED)  # how a job ends; each starts the report's retention clock
FINISHED_STATUSES = (*ENDED_STATUSES, EXPIRED)  # nothing runs any more: the report may be deleted
ACTIVE_STATUSES = (QUEUED, RUNNING)

# Report files: the formats a demo report may ask for, and what each stored file is (by its extension)
XLSX, CSV = "xlsx", "csv"
REPORT_FORMATS = (XLSX, CSV)
FILE_CONTENT_TYPES = {".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                      ".csv": "text/csv; charset=utf-8"}


def extension_of(key: str) -> str:
    """The extension of a stored report file (`.xlsx`, `.csv`), which the worker chose from its format."""
    name = key.rsplit("/", 1)[-1]
    return name[name.rfind("."):] if "." in name else ""


def content_type_of(key: str) -> str:
    """The content type of a stored report file, from its extension (xlsx's when unknown)."""
    return FILE_CONTENT_TYPES.get(extension_of(key), FILE_CONTENT_TYPES[".xlsx"])

# Socket.IO events (server -> client)
EVENT_PROGRESS = "report.progress"
EVENT_SUCCEEDED = "report.succeeded"
EVENT_FAILED = "report.failed"
EVENT_CANCELLED = "report.cancelled"
REPORT_EVENTS = (EVENT_PROGRESS, EVENT_SUCCEEDED, EVENT_FAILED, EVENT_CANCELLED)
TERMINAL_EVENTS = {SUCCEEDED: EVENT_SUCCEEDED, FAILED: EVENT_FAILED, CANCELLED: EVENT_CANCELLED}
# Sent by the notifier alone, never numbered: the events from the client's (epoch, last_seq) on cannot be
# replayed (the event log was lost, expired or trimmed); the client reloads its state over HTTP and
# continues from this payload's {epoch, seq}.
EVENT_RESET = "events.reset"

# Sent by the notifier alone, just before it disconnects a socket whose login is over: {reason}, one of
# SESSION_END_REASONS (docs/events.md). The client signs out and says why.
EVENT_SESSION_ENDED = "session.ended"
LOGGED_OUT, REVOKED, TOKEN_EXPIRED = "logged_out", "revoked", "expired"
SESSION_END_REASONS = (LOGGED_OUT, REVOKED, TOKEN_EXPIRED)
# The one client -> server event: {token}, a fresh access token of the same user, acknowledged with
# {ok: true, expires_at} or {ok: false, problem}; it keeps the socket open past the old token's expiry.
EVENT_AUTH_REFRESH = "auth.refresh"
SOCKETIO_NAMESPACE = "/"

# Redis pub/sub channels of the project's own; every notifier process subscribes to both (docs/events.md).
EVENTS_CHANNEL = "reportflow:events"  # each numbered report event: {user_id, event, payload}
REVOCATIONS_CHANNEL = "reportflow:revocations"  # a login ended by auth: {login, jti, reason}


# Problem codes (CONTRACT.md "Errors")
INVALID_REQUEST = "invalid_request"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
CONFLICT = "conflict"
GONE = "gone"  # 410: the report's retention has passed; its file no longer exists
METHOD_NOT_ALLOWED = "method_not_allowed"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
PAYLOAD_TOO_LARGE = "payload_too_large"
REQUEST_TIMEOUT = "request_timeout"  # 408: the body did not arrive in time
URI_TOO_LONG = "uri_too_long"  # 414
HEADERS_TOO_LARGE = "headers_too_large"  # 431: one header field, or all of them, over the server's limits
NOT_IMPLEMENTED = "not_implemented"  # 501: a transfer coding the server does not speak
RATE_LIMITED = "rate_limited"
UNAVAILABLE = "unavailable"
INTERNAL = "internal"

# The code of an error status no handler chose a code for (a framework's, engine.io's or gunicorn's own).
ERROR_CODES = {
    400: INVALID_REQUEST, 401: UNAUTHORIZED, 403: FORBIDDEN, 404: NOT_FOUND, 405: METHOD_NOT_ALLOWED,
    408: REQUEST_TIMEOUT, 409: CONFLICT, 410: GONE, 413: PAYLOAD_TOO_LARGE, 414: URI_TOO_LONG,
    415: UNSUPPORTED_MEDIA_TYPE,
    422: INVALID_REQUEST, 429: RATE_LIMITED, 431: HEADERS_TOO_LARGE, 501: NOT_IMPLEMENTED, 503: UNAVAILABLE,
}


def code_for_status(status: int) -> str:
    return ERROR_CODES.get(status, INVALID_REQUEST if status < 500 else INTERNAL)

# Limits
MAX_BODY_BYTES = 64 * 1024
# HTTP request heads (gunicorn is configured with these; the WSGI guard holds other servers to them)
MAX_REQUEST_LINE = 8190  # bytes of "METHOD /path?query HTTP/1.1" (gunicorn's largest allowed value)
MAX_HEADER_FIELDS = 100  # header lines per request
MAX_HEADER_FIELD_BYTES = 8190  # one "Name: value" line: a 100 KB token or a 10 KB Idempotency-Key is 431
DEMO_ROWS_RANGE = (1, 1_000_000)
DEMO_COLUMNS_RANGE = (1, 50)
DEMO_DEFAULTS = {"rows": 1000, "columns": 8, "seed": 0, "format": XLSX}
PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX = 20, 100
IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
