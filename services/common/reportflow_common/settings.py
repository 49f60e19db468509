"""Configuration: every environment variable any service reads is declared once, here.

`load_settings(service)` is called once by each console script; the frozen `Settings` it returns is
passed to the factories. A required variable that is missing stops start-up with a message naming it;
there are no built-in secrets. The README's configuration table is generated from `VARIABLES`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta

AUTH, REPORTS, WORKER, NOTIFIER, MIGRATE = "auth", "reports", "worker", "notifier", "migrate"
WEB = (AUTH, REPORTS, NOTIFIER)
ALL = (AUTH, REPORTS, WORKER, NOTIFIER)
XLSX_ENGINES = ("lean", "openpyxl")  # the worker's xlsx writers (reportflow_worker.builders)
JOB_ORDERS = ("fair", "fifo")  # how queued jobs are ordered (reportflow_common.scheduling)


class ConfigError(SystemExit):
    """Raised at start-up when configuration is missing or malformed; exits with the message."""


@dataclass(frozen=True)
class Variable:
    name: str
    doc: str
    services: tuple[str, ...]
    default: str | None = None  # None: required for the services listed
    secret: bool = False
    kind: type = str
    choices: tuple[str, ...] = ()  # when set, the only values accepted


VARIABLES: tuple[Variable, ...] = (
    Variable("DATABASE_URL", "SQLAlchemy URL of PostgreSQL (`postgresql+psycopg2://user:pass@host/db`).",
             (AUTH, REPORTS, WORKER, MIGRATE), secret=True),
    Variable("REDIS_URL", "Redis for token deny-list, event history, rate limits and the pub/sub channels that "
             "carry events and revocations to the notifiers. One server (or a managed primary with failover behind "
             "one address), not Redis Cluster: the event scripts touch several users' keys in one step.", ALL),
    Variable("BROKER_URL", "Celery broker URL; empty means `REDIS_URL`.", (REPORTS, WORKER), ""),
    Variable("JWT_PRIVATE_KEY", "PEM Ed25519 private key that signs tokens (only auth has it).", (AUTH,),
             secret=True),
    Variable("JWT_PREVIOUS_PUBLIC_KEYS", "PEM Ed25519 public keys of replaced signing keys, one after another: "
             "still in the JWKS, so their tokens verify until they expire (README, key rotation).", (AUTH,), ""),
    Variable("JWKS_URL", "Where verifying services fetch auth's public keys (`…/.well-known/jwks.json`).",
             (REPORTS, NOTIFIER)),
    Variable("JWT_ISSUER", "`iss` claim put in and required of every token.", (AUTH, REPORTS, NOTIFIER),
             "reportflow"),
    Variable("ACCESS_TOKEN_TTL_SECONDS", "Access token lifetime.", (AUTH,), "900", kind=int),
    Variable("REFRESH_TOKEN_TTL_SECONDS", "Refresh token lifetime.", (AUTH,), "1209600", kind=int),
    Variable("ALLOW_REGISTRATION", "`true` to serve `POST /v1/auth/register`.", (AUTH,), "true", kind=bool),
    Variable("LOGIN_ATTEMPTS_PER_MINUTE", "Login attempts (failed or not) allowed per account (email) in any "
             "60 seconds, from all addresses together; beyond it 429 with Retry-After.", (AUTH,), "10", kind=int),
    Variable("LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE", "Login attempts allowed per client address in any 60 "
             "seconds, whatever the emails (stops one address spraying a password over many accounts).", (AUTH,),
             "30", kind=int),
    Variable("MAX_ACTIVE_REPORTS_PER_USER", "Queued plus running reports one user may have (429 beyond).",
             (REPORTS,), "10", kind=int),
    Variable("STORAGE_BACKEND", "`s3` (MinIO, S3) or `local` (a folder; `make up` only).", (REPORTS, WORKER), "s3"),
    Variable("S3_ENDPOINT_URL", "S3 API address the pods use (empty: AWS default).", (REPORTS, WORKER), ""),
    Variable("S3_PUBLIC_ENDPOINT_URL", "S3 address clients reach; presigned URLs are signed for it "
             "(empty: `S3_ENDPOINT_URL`).", (REPORTS,), ""),
    Variable("S3_BUCKET", "Bucket holding the report files.", (REPORTS, WORKER), "reports"),
    Variable("S3_REGION", "S3 region.", (REPORTS, WORKER), "us-east-1"),
    Variable("S3_ACCESS_KEY_ID", "S3 access key (empty: boto3's default chain).", (REPORTS, WORKER), "",
             secret=True),
    Variable("S3_SECRET_ACCESS_KEY", "S3 secret key.", (REPORTS, WORKER), "", secret=True),
    Variable("LOCAL_STORAGE_DIR", "Folder for report files when `STORAGE_BACKEND=local`.", (REPORTS, WORKER), ""),
    Variable("STORAGE_SIGNING_KEY", "HMAC key for local download links when `STORAGE_BACKEND=local`.",
             (REPORTS,), "", secret=True),
    Variable("DOWNLOAD_URL_TTL_SECONDS", "Lifetime of a download link.", (REPORTS,), "300", kind=int),
    Variable("SOCKETIO_ALLOWED_ORIGINS", "Comma-separated browser origins allowed to open a socket "
             "(empty: same origin only).", (NOTIFIER,), ""),
    Variable("SOCKETIO_TRANSPORTS", "Socket.IO transports accepted, comma-separated: `polling,websocket`, or "
             "`websocket` alone (no long-polling, so no sticky sessions needed).", (NOTIFIER,), "polling,websocket"),
    Variable("DEMO_USERS", "Accounts the web page offers pre-filled, as `email:password` pairs separated by commas. "
             "Only `make up` sets it (for its seeded users); empty everywhere else, so no cluster advertises any.",
             (NOTIFIER,), ""),
    Variable("EVENT_HISTORY_MAX", "Events kept per user for replay.", (REPORTS, WORKER, NOTIFIER), "1000",
             kind=int),
    Variable("EVENT_HISTORY_TTL_SECONDS", "How long a user's event history is kept after its last event.",
             (REPORTS, WORKER, NOTIFIER), "86400", kind=int),
    Variable("WORKER_CONCURRENCY", "Celery prefork processes.", (WORKER,), "2", kind=int),
    Variable("JOB_ORDER", "The order queued jobs run in: `fair` (users with fewer jobs running first, then the "
             "oldest; README, scheduling) or `fifo` (oldest first across all users). Reports (its `queue_position`) "
             "and worker must agree.", (REPORTS, WORKER), "fair", choices=JOB_ORDERS),
    Variable("LANE_MAX_CELLS", "Jobs of at most this many cells (a demo report's rows x columns) are also offered "
             "to the worker's reserved lane, one extra process that takes nothing else, so a small report starts at "
             "once however busy the pool is; 0: no lane. Reports (it rings the lane) and worker must agree.",
             (REPORTS, WORKER), "200000", kind=int),
    Variable("VISIBILITY_TIMEOUT_SECONDS", "Seconds before the broker hands a wake-up message that a vanished "
             "worker had taken to another worker. Jobs do not depend on it: their lease does.", (REPORTS, WORKER),
             "3600", kind=int),
    Variable("JOB_TIME_LIMIT_SECONDS", "The longest one job may run: a job still running after this fails (Celery's "
             "soft time limit; the hard one is 30 s later). The chart keeps the worker's grace period after SIGTERM "
             "at least this long.", (WORKER,), "600", kind=int),
    Variable("MAX_JOB_ATTEMPTS", "Attempts (claims) of one job before it is failed instead of retried; an attempt "
             "handed back on shutdown does not count.", (WORKER,), "3", kind=int),
    Variable("JOB_LEASE_SECONDS", "How long a running job's claim lasts without a heartbeat (renewed every third "
             "of it); a job whose worker vanished is taken back after this.", (WORKER,), "30", kind=int),
    Variable("RECONCILE_INTERVAL_SECONDS", "Seconds between two passes of the reconciler (takes back expired "
             "leases, rings for queued jobs, publishes committed events).", (WORKER,), "5", kind=float),
    Variable("REQUEUE_AFTER_SECONDS", "A queued job whose wake-up message was sent longer ago than this is rung "
             "again when the broker holds fewer messages than there are queued jobs.", (WORKER,), "30", kind=int),
    Variable("TRANSIENT_RETRY_SECONDS", "Time budget for retrying one step of a job through an outage of "
             "PostgreSQL, Redis or storage (exponential backoff with jitter).", (WORKER,), "300", kind=int),
    Variable("XLSX_ENGINE", "How the worker writes xlsx files: `lean` (reportflow's own streaming writer) or "
             "`openpyxl` (its write-only mode: the same cells, several times slower; `bench/README.md`).",
             (WORKER,), "lean", choices=XLSX_ENGINES),
    Variable("REPORT_RETENTION_DAYS", "Days a finished report is kept (its `expires_at`); after it the worker deletes "
             "its file and the report ends `expired` (downloads: 410). Reports, worker and migrate must agree.",
             (REPORTS, WORKER, MIGRATE), "7", kind=int),
    Variable("REPORT_RETENTION_SECONDS", "When above 0, the retention in seconds instead of REPORT_RETENTION_DAYS "
             "(tests and demos: a report that expires in seconds).", (REPORTS, WORKER, MIGRATE), "0", kind=int),
    Variable("PROGRESS_INTERVAL_SECONDS", "Minimum seconds between two progress events of one report.",
             (WORKER,), "0.5", kind=float),
    Variable("TRUSTED_PROXY_HOPS", "Reverse proxies in front whose X-Forwarded-For/-Proto are believed "
             "(1 behind the ingress; 0 trusts none). The login throttle keys on the client address.", WEB, "0",
             kind=int),
    Variable("HOST", "Address the HTTP server binds.", ALL, "0.0.0.0"),
    Variable("PORT", "Port of the HTTP server (the worker's serves metrics and health).", ALL, "8000", kind=int),
    Variable("WEB_CONCURRENCY", "gunicorn worker processes (the notifier always runs one per process; `make up` "
             "runs its one-origin web apps in this many, by default one per core).",
             (AUTH, REPORTS), "2", kind=int),
    Variable("WORKER_CONNECTIONS", "Sockets and requests one gevent process (the notifier, `make up`'s web process) "
             "serves at once; beyond it gunicorn stops accepting. ~70 KB each: 10,000 is ~0.7 GiB. The process "
             "raises its open-file limit to the hard limit at start, which must exceed this (chart README).",
             (NOTIFIER,), "10000", kind=int),
    Variable("DATABASE_POOL_SIZE", "PostgreSQL connections one process keeps at most (no overflow). A request "
             "needing one when all are busy waits up to DATABASE_POOL_TIMEOUT_SECONDS. Size the database's "
             "`max_connections` for pods × processes × this.", (AUTH, REPORTS, WORKER), "10", kind=int),
    Variable("DATABASE_POOL_TIMEOUT_SECONDS", "How long a request waits for a free PostgreSQL connection before "
             "it fails (503).", (AUTH, REPORTS, WORKER), "10", kind=float),
    Variable("REDIS_MAX_CONNECTIONS", "Redis connections one process keeps at most. A command takes well under a "
             "millisecond, so a burst of requests waits its turn (up to REDIS_POOL_TIMEOUT_SECONDS) instead of "
             "opening more, or failing.", ALL, "50", kind=int),
    Variable("REDIS_POOL_TIMEOUT_SECONDS", "How long a command waits for a free Redis connection before it fails "
             "(503).", ALL, "5", kind=float),
    Variable("GRACEFUL_TIMEOUT_SECONDS", "Seconds given to in-flight work after SIGTERM (the worker finishes a "
             "job that fits, else hands it back to the queue).", ALL, "25", kind=int),
    Variable("LOG_LEVEL", "Python log level.", ALL, "INFO"),
    Variable("PROMETHEUS_MULTIPROC_DIR", "Folder for multi-process metrics (emptied at start; a private "
             "temporary folder when unset).", ALL, ""),
)
_BY_NAME = {v.name: v for v in VARIABLES}


def _attr(name: str) -> str:
    return name.lower()


@dataclass(frozen=True)
class Settings:
    """Typed configuration of one service process; fields are the variables' names in lower case."""

    service: str
    database_url: str = ""
    redis_url: str = ""
    broker_url: str = ""
    jwt_private_key: str = field(default="", repr=False)
    jwt_previous_public_keys: str = ""
    jwks_url: str = ""
    jwt_issuer: str = "reportflow"
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 1209600
    allow_registration: bool = True
    login_attempts_per_minute: int = 10
    login_attempts_per_address_per_minute: int = 30
    max_active_reports_per_user: int = 10
    storage_backend: str = "s3"
    s3_endpoint_url: str = ""
    s3_public_endpoint_url: str = ""
    s3_bucket: str = "reports"
    s3_region: str = "us-east-1"
    s3_access_key_id: str = field(default="", repr=False)
    s3_secret_access_key: str = field(default="", repr=False)
    local_storage_dir: str = ""
    storage_signing_key: str = field(default="", repr=False)
    download_url_ttl_seconds: int = 300
    socketio_allowed_origins: str = ""
    socketio_transports: str = "polling,websocket"
    demo_users: str = ""
    event_history_max: int = 1000
    event_history_ttl_seconds: int = 86400
    worker_concurrency: int = 2
    job_order: str = "fair"
    lane_max_cells: int = 200000
    visibility_timeout_seconds: int = 3600
    job_time_limit_seconds: int = 600
    max_job_attempts: int = 3
    job_lease_seconds: int = 30
    reconcile_interval_seconds: float = 5.0
    requeue_after_seconds: int = 30
    transient_retry_seconds: int = 300
    xlsx_engine: str = "lean"
    report_retention_days: int = 7
    report_retention_seconds: int = 0
    progress_interval_seconds: float = 0.5
    trusted_proxy_hops: int = 0
    host: str = "0.0.0.0"
    port: int = 8000
    web_concurrency: int = 2
    worker_connections: int = 10000
    database_pool_size: int = 10
    database_pool_timeout_seconds: float = 10.0
    redis_max_connections: int = 50
    redis_pool_timeout_seconds: float = 5.0
    graceful_timeout_seconds: int = 25
    log_level: str = "INFO"
    prometheus_multiproc_dir: str = ""

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def report_retention(self) -> timedelta:
        """How long a finished report is kept: REPORT_RETENTION_SECONDS when set, else REPORT_RETENTION_DAYS."""
        if self.report_retention_seconds > 0:
            return timedelta(seconds=self.report_retention_seconds)
        return timedelta(days=self.report_retention_days)

    @property
    def allowed_origins(self) -> list[str]:
        return [o.strip() for o in self.socketio_allowed_origins.split(",") if o.strip()]

    @property
    def transports(self) -> list[str]:
        return [t.strip() for t in self.socketio_transports.split(",") if t.strip()]

    @property
    def demo_accounts(self) -> list[tuple[str, str]]:
        """DEMO_USERS as (email, password) pairs (load_settings has refused malformed entries)."""
        pairs = (entry.strip().partition(":") for entry in self.demo_users.split(",") if entry.strip())
        return [(email.strip(), password) for email, _colon, password in pairs]


def _convert(var: Variable, raw: str):
    if var.kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError("expected true or false")
    if var.choices and raw not in var.choices:
        raise ValueError(f"expected one of {', '.join(var.choices)}")
    return var.kind(raw)


def load_settings(service: str, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Read the variables `service` uses from the environment; raise ConfigError naming every problem."""
    environ = os.environ if environ is None else environ
    values, problems = {}, []
    for var in VARIABLES:
        if service not in var.services:
            continue
        raw = environ.get(var.name)
        if raw is None or (raw == "" and var.default is None):
            if var.default is None:
                problems.append(f"{var.name} is required ({var.doc})")
                continue
            raw = var.default
        try:
            values[_attr(var.name)] = _convert(var, raw)
        except ValueError as exc:
            problems.append(f"{var.name}={raw!r} is invalid: {exc}")
    values.update(overrides)
    settings = Settings(service=service, **values)
    problems += (_check_storage(settings) + _check_transports(settings) + _check_demo_users(settings)
                 + _check_worker(settings) + _check_retention(settings) + _check_scheduling(settings)
                 + _check_pools(settings))
    if problems:
        raise ConfigError(f"reportflow-{service}: configuration error:\n  " + "\n  ".join(problems))
    return settings


def _check_storage(s: Settings) -> list[str]:
    if s.service not in (REPORTS, WORKER):
        return []
    if s.storage_backend == "local":
        missing = ["LOCAL_STORAGE_DIR"] if not s.local_storage_dir else []
        if s.service == REPORTS and not s.storage_signing_key:
            missing.append("STORAGE_SIGNING_KEY")
        return [f"{m} is required when STORAGE_BACKEND=local" for m in missing]
    if s.storage_backend != "s3":
        return [f"STORAGE_BACKEND={s.storage_backend!r} is invalid: expected s3 or local"]
    return []


def _check_worker(s: Settings) -> list[str]:
    if s.service != WORKER:
        return []
    problems = []
    if s.job_lease_seconds < 3:
        problems.append(f"JOB_LEASE_SECONDS={s.job_lease_seconds} is invalid: at least 3 (heartbeats renew a third)")
    if s.reconcile_interval_seconds <= 0:
        problems.append("RECONCILE_INTERVAL_SECONDS must be above 0")
    if s.max_job_attempts < 1:
        problems.append("MAX_JOB_ATTEMPTS must be at least 1")
    return problems


def _check_scheduling(s: Settings) -> list[str]:
    if s.service in (REPORTS, WORKER) and s.lane_max_cells < 0:
        return [f"LANE_MAX_CELLS={s.lane_max_cells} is invalid: 0 (no lane) or more"]
    return []


def _check_retention(s: Settings) -> list[str]:
    if s.service not in (REPORTS, WORKER, MIGRATE):
        return []
    problems = []
    if s.report_retention_days < 1:
        problems.append(f"REPORT_RETENTION_DAYS={s.report_retention_days} is invalid: at least 1")
    if s.report_retention_seconds < 0:
        problems.append(f"REPORT_RETENTION_SECONDS={s.report_retention_seconds} is invalid: 0 (unused) or more")
    return problems


def _check_pools(s: Settings) -> list[str]:
    sizes = {"WORKER_CONNECTIONS": s.worker_connections, "DATABASE_POOL_SIZE": s.database_pool_size,
             "REDIS_MAX_CONNECTIONS": s.redis_max_connections}
    return [f"{name}={size} is invalid: at least 1" for name, size in sizes.items() if size < 1]


def _check_transports(s: Settings) -> list[str]:
    if s.service == NOTIFIER and (not s.transports or set(s.transports) - {"polling", "websocket"}):
        return [f"SOCKETIO_TRANSPORTS={s.socketio_transports!r} is invalid: expected polling, websocket or both"]
    return []


def _check_demo_users(s: Settings) -> list[str]:
    bad = [e.strip() for e in s.demo_users.split(",") if e.strip() and not (
        "@" in e.partition(":")[0] and e.partition(":")[2])]
    return [f"DEMO_USERS entry {e.partition(':')[0]!r} is invalid: expected email:password" for e in bad]


def settings_names() -> set[str]:
    """Field names of Settings, so a test can prove VARIABLES and the dataclass agree."""
    return {f.name for f in fields(Settings)} - {"service"}


def variables_for(service: str) -> list[Variable]:
    return [v for v in VARIABLES if service in v.services]


def markdown_table() -> str:
    """The README's configuration table (tests keep the README equal to this)."""
    rows = ["| Variable | Services | Default | Meaning |", "|---|---|---|---|"]
    for v in VARIABLES:
        default = "*required*" if v.default is None else (f"`{v.default}`" if v.default else "")
        secret = " Secret." if v.secret else ""
        rows.append(f"| `{v.name}` | {', '.join(v.services)} | {default} | {v.doc}{secret} |")
    return "\n".join(rows)
