"""Where report files live: S3/MinIO in deployments, a local folder in `make up`; one interface for both.

The worker uploads and confirms; the reports service hands out short-lived download links and deletes.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import time
from typing import Protocol
from urllib.parse import urlencode

from .contracts import content_type_of
from .settings import Settings


class Storage(Protocol):
    def upload(self, key: str, path: str) -> int: ...  # the size the store confirmed holding; raises otherwise
    def size(self, key: str) -> int | None: ...  # None when absent
    def delete(self, key: str) -> None: ...
    def download_url(self, key: str, filename: str) -> str: ...
    def ping(self) -> None: ...


def report_key(user_id: str, report_id: str, extension: str = ".xlsx") -> str:
    return f"reports/{user_id}/{report_id}{extension}"


MULTIPART_BYTES = 8 * 1024 * 1024  # files from this size on go up in parts of this size


class StoredIncomplete(Exception):
    """The store holds fewer (or more) bytes under the key than were uploaded."""


class S3Storage:
    """boto3 against S3 or MinIO; presigned links are signed for the address clients use."""

    def __init__(self, settings: Settings):
        import boto3
        from botocore.config import Config

        self.bucket, self.ttl = settings.s3_bucket, settings.download_url_ttl_seconds
        common = dict(region_name=settings.s3_region,
                      aws_access_key_id=settings.s3_access_key_id or None,
                      aws_secret_access_key=settings.s3_secret_access_key or None,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                    retries={"max_attempts": 3, "mode": "standard"},
                                    connect_timeout=5, read_timeout=30))
        self.client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None, **common)
        public = settings.s3_public_endpoint_url or settings.s3_endpoint_url or None
        self.public_client = boto3.client("s3", endpoint_url=public, **common)

    def upload(self, key: str, path: str) -> int:
        """A file smaller than one part goes in a single PUT with its Content-MD5, which S3 checks before it
        answers 200: that answer confirms the whole file, with no transfer threads and no HEAD after it. A
        bigger one goes up in parts and is confirmed by a HEAD."""
        size = os.path.getsize(path)
        if size < MULTIPART_BYTES:
            with open(path, "rb") as f:
                body = f.read()
            digest = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentMD5=digest,
                                   ContentType=content_type_of(key))
            return size
        from boto3.s3.transfer import TransferConfig
        self.client.upload_file(path, self.bucket, key, ExtraArgs={"ContentType": content_type_of(key)},
                                Config=TransferConfig(multipart_threshold=MULTIPART_BYTES,
                                                      multipart_chunksize=MULTIPART_BYTES))
        return _confirmed(key, size, self.size(key))

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def download_url(self, key: str, filename: str) -> str:
        return self.public_client.generate_presigned_url(
            "get_object", ExpiresIn=self.ttl,
            Params={"Bucket": self.bucket, "Key": key,
                    "ResponseContentDisposition": f'attachment; filename="{filename}"'})

    def ping(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)


class LocalStorage:
    """A folder on disk for `make up`; links point at the reports service's signed `/v1/files/` route."""

    def __init__(self, settings: Settings):
        self.root, self.ttl = os.path.abspath(settings.local_storage_dir), settings.download_url_ttl_seconds
        self.signing_key = settings.storage_signing_key.encode()
        os.makedirs(self.root, exist_ok=True)

    def path(self, key: str) -> str:
        full = os.path.abspath(os.path.join(self.root, key))
        if not full.startswith(self.root + os.sep):
            raise ValueError("key escapes the storage folder")
        return full

    def upload(self, key: str, path: str) -> int:
        dest = self.path(key)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = dest + ".part"
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)  # readers never see half a file
        return _confirmed(key, os.path.getsize(path), self.size(key))

    def size(self, key: str) -> int | None:
        try:
            return os.path.getsize(self.path(key))
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass

    def signature(self, key: str, expires: int) -> str:
        return hmac.new(self.signing_key, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def download_url(self, key: str, filename: str) -> str:
        expires = int(time.time()) + self.ttl
        return "/v1/files/" + key + "?" + urlencode({"expires": expires, "signature": self.signature(key, expires)})

    def verify(self, key: str, expires: str, signature: str) -> bool:
        try:
            expiry = int(expires)
        except (TypeError, ValueError):
            return False
        return expiry >= time.time() and hmac.compare_digest(self.signature(key, expiry).encode(),
                                                             (signature or "").encode())

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"{self.root} is not writable")


def _confirmed(key: str, uploaded: int, stored: int | None) -> int:
    if stored != uploaded:
        raise StoredIncomplete(f"stored object {key} is missing or incomplete ({stored} of {uploaded} bytes)")
    return uploaded


def make_storage(settings: Settings) -> Storage:
    return LocalStorage(settings) if settings.storage_backend == "local" else S3Storage(settings)
