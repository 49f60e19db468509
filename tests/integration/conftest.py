"""In-process apps on the session's real servers; auth is also served over HTTP for the reports app's JWKS."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
import requests
from redis import Redis
from werkzeug.serving import make_server

from reportflow_common.settings import AUTH, REPORTS, load_settings
from support.waiting import free_port, wait_until

from .contract_checks import Accounts, test_client


@contextmanager
def served(app):
    """`app` on a free port in a background thread; yields its base URL."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="served-app", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture(scope="session")
def make_auth_app(infra):
    from reportflow_auth.app import create_app

    def make(**env):
        return create_app(load_settings(AUTH, infra.base_env(**{"JWT_PRIVATE_KEY": infra.private_key_pem, **env})))
    return make


@pytest.fixture(scope="session")
def auth_app(make_auth_app):
    return make_auth_app()


@pytest.fixture(scope="session")
def jwks_url(auth_app):
    with served(auth_app) as base:
        url = base + "/.well-known/jwks.json"
        wait_until(lambda: requests.get(url, timeout=2).status_code == 200, 20, "auth's JWKS over HTTP")
        yield url


@pytest.fixture(scope="session")
def kid(jwks_url) -> str:
    return requests.get(jwks_url, timeout=5).json()["keys"][0]["kid"]


@pytest.fixture(scope="session")
def broker_url(infra) -> str:
    """A broker database of its own: the e2e stack's worker (same Redis server) never takes these messages."""
    return infra.redis.url.rsplit("/", 1)[0] + "/1"


@pytest.fixture(scope="module")
def engine(settings):
    """The database of the module's own `settings` (the worker modules define theirs)."""
    from reportflow_common.db import make_engine

    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def sessions(engine):
    from reportflow_common.db import make_session_factory

    return make_session_factory(engine)


@pytest.fixture(scope="module", autouse=True)
def no_jobs_left_for_later_workers(infra):
    """Workers claim queued jobs from PostgreSQL, whatever rang: the jobs these tests leave queued or
    running are cancelled after each module, so the e2e stack's worker (same database) never runs them."""
    yield
    import psycopg2
    with psycopg2.connect(infra.postgres.url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE reports SET status = 'cancelled', finished_at = now(), attempt_token = NULL, "
                    "lease_expires_at = NULL WHERE status IN ('queued', 'running')")
    conn.close()


@pytest.fixture(scope="session")
def make_reports_app(infra, jwks_url, broker_url):
    from reportflow_reports.app import create_app

    def make(**env):
        return create_app(load_settings(REPORTS, infra.base_env(
            **{"JWKS_URL": jwks_url, "BROKER_URL": broker_url, **env})))
    return make


@pytest.fixture(scope="session")
def reports_app(make_reports_app):
    return make_reports_app()


@pytest.fixture()
def auth(auth_app):
    return test_client(auth_app)


@pytest.fixture()
def reports(reports_app):
    return test_client(reports_app)


@pytest.fixture()
def accounts(auth_app):
    return Accounts(test_client(auth_app))


@pytest.fixture(scope="session")
def redis(infra):
    client = Redis.from_url(infra.redis.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def broker(broker_url):
    client = Redis.from_url(broker_url)
    yield client
    client.close()

