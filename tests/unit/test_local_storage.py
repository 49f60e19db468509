"""reportflow_common.storage.LocalStorage: the `make up` file store and its signed, short-lived download links."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from reportflow_common.settings import Settings, load_settings
from reportflow_common.storage import LocalStorage, make_storage, report_key

KEY = report_key("7d3c1a52-0000-4000-8000-000000000001", "9f0e2b64-0000-4000-8000-000000000002")


@pytest.fixture
def root(tmp_path):
    return tmp_path / "files"


@pytest.fixture
def storage(root):
    settings = load_settings("reports", {
        "DATABASE_URL": "postgresql+psycopg2://u:p@db/r", "REDIS_URL": "redis://r", "JWKS_URL": "http://a/jwks",
        "STORAGE_BACKEND": "local", "LOCAL_STORAGE_DIR": str(root), "STORAGE_SIGNING_KEY": "unit-test-key",
        "DOWNLOAD_URL_TTL_SECONDS": "120"})
    return make_storage(settings)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "report.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"x" * 1000)
    return path


def _link(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    assert parts.path.startswith("/v1/files/")
    query = parse_qs(parts.query)
    return parts.path.removeprefix("/v1/files/"), query["expires"][0], query["signature"][0]


def test_make_storage_picks_local(storage, root):
    assert isinstance(storage, LocalStorage)
    assert root.is_dir()  # created on start


def test_upload_size_delete(storage, source, root):
    assert storage.size(KEY) is None
    assert storage.upload(KEY, str(source)) == source.stat().st_size  # the size it confirmed holding
    assert storage.size(KEY) == source.stat().st_size
    assert (root / KEY).read_bytes() == source.read_bytes()
    assert not list(root.rglob("*.part"))  # the temporary copy was renamed into place
    storage.delete(KEY)
    assert storage.size(KEY) is None
    storage.delete(KEY)  # deleting what is gone is not an error


def test_upload_replaces_an_existing_object(storage, source, tmp_path):
    storage.upload(KEY, str(source))
    smaller = tmp_path / "smaller.xlsx"
    smaller.write_bytes(b"PK")
    storage.upload(KEY, str(smaller))
    assert storage.size(KEY) == 2


@pytest.mark.parametrize("key", ["../outside.xlsx", "reports/../../outside.xlsx", "/etc/passwd", "", ".",
                                 "reports/../.."])
def test_keys_that_escape_the_folder_are_refused(storage, source, key):
    with pytest.raises(ValueError):
        storage.path(key)
    with pytest.raises(ValueError):
        storage.upload(key, str(source))
    with pytest.raises(ValueError):
        storage.size(key)
    with pytest.raises(ValueError):
        storage.delete(key)


def test_a_sibling_folder_with_the_same_prefix_is_outside(storage, root):
    with pytest.raises(ValueError):
        storage.path(f"../{root.name}-evil/x.xlsx")


def test_download_url_verifies(storage):
    before = int(time.time())
    key, expires, signature = _link(storage.download_url(KEY, "demo-1.xlsx"))
    assert key == KEY
    assert before + 120 <= int(expires) <= int(time.time()) + 120
    assert storage.verify(key, expires, signature) is True


def test_tampered_links_are_refused(storage):
    key, expires, signature = _link(storage.download_url(KEY, "demo-1.xlsx"))
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    assert storage.verify(key, expires, flipped) is False
    assert storage.verify(key, str(int(expires) + 3600), signature) is False  # extended expiry
    assert storage.verify(key.replace(".xlsx", "-other.xlsx"), expires, signature) is False  # another file
    assert storage.verify(key, expires, "") is False
    assert storage.verify(key, expires, None) is False
    assert storage.verify(key, None, signature) is False
    assert storage.verify(key, "tomorrow", signature) is False


def test_a_link_signed_with_another_key_is_refused(storage, root):
    other = LocalStorage(Settings(service="reports", storage_backend="local", local_storage_dir=str(root),
                                  storage_signing_key="another-key"))
    key, expires, signature = _link(other.download_url(KEY, "demo-1.xlsx"))
    assert storage.verify(key, expires, signature) is False


def test_expired_links_are_refused(storage, root):
    past = int(time.time()) - 1
    assert storage.verify(KEY, str(past), storage.signature(KEY, past)) is False
    expired_at_birth = LocalStorage(Settings(service="reports", storage_backend="local", local_storage_dir=str(root),
                                             storage_signing_key="unit-test-key", download_url_ttl_seconds=-5))
    key, expires, signature = _link(expired_at_birth.download_url(KEY, "demo-1.xlsx"))
    assert storage.signature(key, int(expires)) == signature  # well signed, only too old
    assert storage.verify(key, expires, signature) is False


def test_a_non_ascii_signature_is_refused_not_a_crash(storage):
    key, expires, _signature = _link(storage.download_url(KEY, "demo-1.xlsx"))
    assert storage.verify(key, expires, "é" * 64) is False


def test_ping_checks_the_folder_is_writable(storage):
    storage.ping()
