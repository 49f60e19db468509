"""reportflow_common.settings: what each service needs from its environment, and how it refuses bad config."""
from __future__ import annotations

import dataclasses

import pytest

from reportflow_common.settings import (
    ALL,
    VARIABLES,
    ConfigError,
    Settings,
    load_settings,
    markdown_table,
    settings_names,
    variables_for,
)

REQUIRED = {
    "auth": {"DATABASE_URL", "REDIS_URL", "JWT_PRIVATE_KEY"},
    "reports": {"DATABASE_URL", "REDIS_URL", "JWKS_URL"},
    "worker": {"DATABASE_URL", "REDIS_URL"},
    "notifier": {"REDIS_URL", "JWKS_URL"},
}
VALUES = {"DATABASE_URL": "postgresql+psycopg2://u:p@db/reportflow", "REDIS_URL": "redis://redis:6379/0",
          "JWT_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----", "JWKS_URL": "http://auth/.well-known/jwks.json"}


def _env(service: str, **extra: str) -> dict[str, str]:
    return {**{name: VALUES[name] for name in REQUIRED[service]}, **extra}


def _config_error(service: str, environ: dict) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(service, environ)
    return str(excinfo.value)


def test_config_error_exits_the_process():
    assert issubclass(ConfigError, SystemExit)
    with pytest.raises(SystemExit):
        load_settings("auth", {})


@pytest.mark.parametrize("service", ALL)
def test_required_variables_per_service(service):
    derived = {v.name for v in variables_for(service) if v.default is None}
    assert derived == REQUIRED[service]  # no secret silently gains a default; no new requirement slips in


@pytest.mark.parametrize("service", ALL)
def test_every_missing_variable_is_named_at_once(service):
    message = _config_error(service, {})
    for name in REQUIRED[service]:
        assert name in message
    assert service in message


def test_empty_required_variable_counts_as_missing():
    message = _config_error("auth", _env("auth", JWT_PRIVATE_KEY=""))
    assert "JWT_PRIVATE_KEY" in message
    assert "DATABASE_URL" not in message and "REDIS_URL" not in message


def test_only_the_variables_a_service_uses_are_required():
    settings = load_settings("notifier", _env("notifier"))  # no DATABASE_URL, no JWT_PRIVATE_KEY
    assert settings.service == "notifier"
    assert settings.redis_url == VALUES["REDIS_URL"] and settings.jwks_url == VALUES["JWKS_URL"]
    assert settings.database_url == ""


def test_variables_of_other_services_are_ignored_even_when_malformed():
    settings = load_settings("notifier", _env("notifier", WORKER_CONCURRENCY="lots", ACCESS_TOKEN_TTL_SECONDS="x"))
    assert settings.worker_concurrency == 2


def test_defaults_are_applied_with_their_types():
    auth = load_settings("auth", _env("auth"))
    assert auth.access_token_ttl_seconds == 900 and type(auth.access_token_ttl_seconds) is int
    assert auth.allow_registration is True
    assert auth.jwt_issuer == "reportflow" and auth.port == 8000 and auth.log_level == "INFO"
    worker = load_settings("worker", _env("worker"))
    assert worker.progress_interval_seconds == 0.5 and type(worker.progress_interval_seconds) is float
    assert worker.storage_backend == "s3" and worker.max_job_attempts == 3


def test_values_are_converted_to_their_types():
    auth = load_settings("auth", _env("auth", ACCESS_TOKEN_TTL_SECONDS="60", PORT="9001", ALLOW_REGISTRATION="false"))
    assert auth.access_token_ttl_seconds == 60 and auth.port == 9001 and auth.allow_registration is False
    worker = load_settings("worker", _env("worker", PROGRESS_INTERVAL_SECONDS="0.25", WORKER_CONCURRENCY="7"))
    assert worker.progress_interval_seconds == 0.25 and worker.worker_concurrency == 7


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                               ("on", True), ("false", False), ("False", False), ("0", False),
                                               ("no", False), ("off", False), ("", False)])
def test_bool_spellings(raw, expected):
    assert load_settings("auth", _env("auth", ALLOW_REGISTRATION=raw)).allow_registration is expected


@pytest.mark.parametrize(("name", "raw"), [("ALLOW_REGISTRATION", "maybe"), ("ACCESS_TOKEN_TTL_SECONDS", "ten"),
                                          ("PORT", "80.5"), ("LOGIN_ATTEMPTS_PER_MINUTE", "")])
def test_malformed_values_are_refused_naming_the_variable(name, raw):
    message = _config_error("auth", _env("auth", **{name: raw}))
    assert name in message and repr(raw) in message


def test_bad_float_is_refused():
    assert "PROGRESS_INTERVAL_SECONDS" in _config_error("worker", _env("worker", PROGRESS_INTERVAL_SECONDS="fast"))


def test_missing_and_malformed_are_reported_together():
    message = _config_error("auth", {"REDIS_URL": "redis://x", "PORT": "http"})
    assert "DATABASE_URL" in message and "JWT_PRIVATE_KEY" in message and "PORT" in message


def test_local_storage_for_reports_needs_a_folder_and_a_signing_key():
    message = _config_error("reports", _env("reports", STORAGE_BACKEND="local"))
    assert "LOCAL_STORAGE_DIR" in message and "STORAGE_SIGNING_KEY" in message
    message = _config_error("reports", _env("reports", STORAGE_BACKEND="local", LOCAL_STORAGE_DIR="/tmp/x"))
    assert "STORAGE_SIGNING_KEY" in message and "LOCAL_STORAGE_DIR" not in message
    settings = load_settings("reports", _env("reports", STORAGE_BACKEND="local", LOCAL_STORAGE_DIR="/tmp/x",
                                             STORAGE_SIGNING_KEY="k"))
    assert settings.storage_backend == "local" and settings.local_storage_dir == "/tmp/x"


def test_local_storage_for_the_worker_needs_only_a_folder():
    assert "LOCAL_STORAGE_DIR" in _config_error("worker", _env("worker", STORAGE_BACKEND="local"))
    settings = load_settings("worker", _env("worker", STORAGE_BACKEND="local", LOCAL_STORAGE_DIR="/tmp/x"))
    assert settings.local_storage_dir == "/tmp/x"


def test_unknown_storage_backend_is_refused():
    assert "STORAGE_BACKEND" in _config_error("worker", _env("worker", STORAGE_BACKEND="ftp"))


def test_xlsx_engine_is_one_of_the_engines():
    assert load_settings("worker", _env("worker")).xlsx_engine == "lean"
    assert load_settings("worker", _env("worker", XLSX_ENGINE="openpyxl")).xlsx_engine == "openpyxl"
    message = _config_error("worker", _env("worker", XLSX_ENGINE="pandas"))
    assert "XLSX_ENGINE='pandas' is invalid" in message and "lean, openpyxl" in message


def test_broker_defaults_to_redis_and_origins_are_split():
    reports = load_settings("reports", _env("reports"))
    assert reports.effective_broker_url == VALUES["REDIS_URL"]
    assert load_settings("reports", _env("reports", BROKER_URL="amqp://b")).effective_broker_url == "amqp://b"
    notifier = load_settings("notifier", _env("notifier", SOCKETIO_ALLOWED_ORIGINS=" https://a.test, ,https://b.test"))
    assert notifier.allowed_origins == ["https://a.test", "https://b.test"]
    assert load_settings("notifier", _env("notifier")).allowed_origins == []


def test_settings_are_frozen():
    settings = load_settings("worker", _env("worker"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.redis_url = "redis://elsewhere"


def test_every_variable_has_a_settings_field_and_vice_versa():
    assert settings_names() == {v.name.lower() for v in VARIABLES}
    assert len({v.name for v in VARIABLES}) == len(VARIABLES)  # declared once


def test_field_types_and_defaults_agree_with_the_variables():
    # Settings(...) built directly (tests, tools) must behave like load_settings with nothing set
    by_name = {f.name: f for f in dataclasses.fields(Settings)}
    for var in VARIABLES:
        f = by_name[var.name.lower()]
        assert f.type == var.kind.__name__, var.name
        if var.default is not None:
            service = next(s for s in var.services if s in ALL)
            assert getattr(load_settings(service, _env(service)), f.name) == f.default, var.name


def test_secrets_are_not_shown_in_repr():
    settings = Settings(service="auth", jwt_private_key="TOP-SECRET-PEM", s3_secret_access_key="S3-SECRET",
                        storage_signing_key="SIGNING-SECRET")
    text = repr(settings)
    assert "TOP-SECRET-PEM" not in text and "S3-SECRET" not in text and "SIGNING-SECRET" not in text


def test_markdown_table_mentions_every_variable():
    table = markdown_table()
    lines = table.splitlines()
    assert lines[0].startswith("| Variable |")
    assert len(lines) == 2 + len(VARIABLES)
    for var in VARIABLES:
        row = next(line for line in lines if f"`{var.name}`" in line)
        assert ("*required*" in row) == (var.default is None), var.name
        assert ("Secret." in row) == var.secret, var.name


@pytest.mark.parametrize("service", ["reports", "worker"])
def test_jobs_are_fair_with_a_lane_by_default_and_a_bad_order_or_lane_is_refused(service):
    settings = load_settings(service, _env(service))
    assert (settings.job_order, settings.lane_max_cells) == ("fair", 200000)
    assert load_settings(service, _env(service, JOB_ORDER="fifo", LANE_MAX_CELLS="0")).job_order == "fifo"
    message = _config_error(service, _env(service, JOB_ORDER="priority", LANE_MAX_CELLS="-1"))
    assert "JOB_ORDER='priority' is invalid" in message and "LANE_MAX_CELLS=-1 is invalid" in message


def test_the_worker_refuses_leases_too_short_for_heartbeats_and_no_attempts():
    message = _config_error("worker", _env("worker", JOB_LEASE_SECONDS="2", MAX_JOB_ATTEMPTS="0",
                                           RECONCILE_INTERVAL_SECONDS="0"))
    assert "JOB_LEASE_SECONDS" in message and "MAX_JOB_ATTEMPTS" in message and "RECONCILE_INTERVAL_SECONDS" in message
    worker = load_settings("worker", _env("worker"))
    assert (worker.job_lease_seconds, worker.reconcile_interval_seconds, worker.requeue_after_seconds) == (30, 5.0, 30)
    assert load_settings("reports", _env("reports", JOB_LEASE_SECONDS="1")).service == "reports"  # not its setting


def test_retention_is_a_week_by_default_in_days_or_in_seconds_when_those_are_set():
    from datetime import timedelta
    for service in ("reports", "worker"):
        assert load_settings(service, _env(service)).report_retention == timedelta(days=7)
        assert load_settings(service, _env(service, REPORT_RETENTION_DAYS="30")).report_retention == timedelta(days=30)
        seconds = load_settings(service, _env(service, REPORT_RETENTION_DAYS="30", REPORT_RETENTION_SECONDS="5"))
        assert seconds.report_retention == timedelta(seconds=5)  # the seconds win (tests, demos)
    migrate = load_settings("migrate", {"DATABASE_URL": VALUES["DATABASE_URL"], "REPORT_RETENTION_DAYS": "2"})
    assert migrate.report_retention == timedelta(days=2)  # it dates the reports that ended before retention
    message = _config_error("worker", _env("worker", REPORT_RETENTION_DAYS="0", REPORT_RETENTION_SECONDS="-1"))
    assert "REPORT_RETENTION_DAYS=0" in message and "REPORT_RETENTION_SECONDS=-1" in message
