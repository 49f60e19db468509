"""What the web page is told before sign-in: demo accounts only where `make up` declares them."""
from __future__ import annotations

from pathlib import Path

import pytest

from reportflow_common.settings import NOTIFIER, ConfigError, load_settings
from reportflow_devstack.up import DEMO_USERS
from reportflow_notifier.page import page_config

ROOT = Path(__file__).resolve().parents[2]
BASE = {"REDIS_URL": "redis://127.0.0.1:1/0", "JWKS_URL": "http://auth/.well-known/jwks.json"}


def test_no_demo_accounts_unless_configured():
    assert page_config(load_settings(NOTIFIER, BASE))["demo_users"] == []


@pytest.mark.parametrize("accepted, tried", [("polling,websocket", ["websocket", "polling"]),
                                             ("websocket", ["websocket"]), ("polling", ["polling"])])
def test_the_page_tries_what_the_notifier_accepts_websocket_first(accepted, tried):
    settings = load_settings(NOTIFIER, {**BASE, "SOCKETIO_TRANSPORTS": accepted})
    assert page_config(settings)["socket_transports"] == tried


def test_demo_accounts_are_email_password_pairs():
    settings = load_settings(NOTIFIER, {**BASE, "DEMO_USERS": " a@test.com:pw:with:colons , b@test.com:p2,"})
    assert page_config(settings)["demo_users"] == [{"email": "a@test.com", "password": "pw:with:colons"},
                                                   {"email": "b@test.com", "password": "p2"}]


@pytest.mark.parametrize("value", ["a@test.com", "a@test.com:", "nobody:pw", "a@test.com:pw,oops"])
def test_malformed_demo_accounts_stop_start_up_without_echoing_a_password(value):
    with pytest.raises(ConfigError, match="DEMO_USERS entry") as raised:
        load_settings(NOTIFIER, {**BASE, "DEMO_USERS": value})
    assert "pw" not in str(raised.value)


def test_make_up_offers_exactly_its_seeded_users(tmp_path, monkeypatch):
    from reportflow_devstack.up import Up
    monkeypatch.setenv("UP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DEMO_USERS", raising=False)
    env = Up().environment("postgresql+psycopg2://u@127.0.0.1:1/db", BASE["REDIS_URL"])  # writes dev keys only
    assert page_config(load_settings(NOTIFIER, env))["demo_users"] == \
        [{"email": e, "password": p} for e, p in DEMO_USERS]


def test_no_deployment_file_advertises_demo_accounts():
    """Clusters and compose never set DEMO_USERS: their users do not exist there."""
    files = [*ROOT.glob("charts/**/*"), *ROOT.glob("k8s/**/*"), *ROOT.glob("docker-compose*.yml"),
             *ROOT.glob(".env.example"), *ROOT.glob("deploy/**/*")]
    offenders = [str(f.relative_to(ROOT)) for f in files
                 if f.is_file() and f.suffix not in (".png", ".gz") and "DEMO_USERS" in f.read_text(errors="ignore")]
    assert files and not offenders
