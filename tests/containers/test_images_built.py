"""The images as built: each adds no more than its target above the base (SIZE_TARGETS_MB, what `make images`
prints), carries its own service's dependencies and not the others', and no pip or setuptools."""
from __future__ import annotations

import json

import pytest

from containers.podman_kit import images

pytestmark = pytest.mark.timeout(600)  # may build the images first

PROBE = """
import importlib.util, json
names = ["pip", "setuptools", "sqlalchemy", "psycopg2", "alembic", "boto3", "celery", "socketio", "gevent",
         "openpyxl", "argon2", "yaml"]
print(json.dumps({n: importlib.util.find_spec(n) is not None for n in names}))
"""
# What each service's image must (True) and must not (False) hold.
EXPECTED = {
    "auth": {"sqlalchemy": True, "psycopg2": True, "alembic": True, "argon2": True, "boto3": False,
             "celery": False, "socketio": False, "gevent": False, "openpyxl": False, "yaml": False},
    "reports": {"sqlalchemy": True, "alembic": True, "boto3": True, "celery": True, "socketio": False, "yaml": True,
                "gevent": False, "openpyxl": False, "argon2": False},
    "worker": {"sqlalchemy": True, "boto3": True, "celery": True, "socketio": False, "openpyxl": True,
               "gevent": False, "argon2": False, "yaml": False},
    "notifier": {"socketio": True, "gevent": True, "sqlalchemy": False, "psycopg2": False, "alembic": False,
                 "boto3": False, "celery": False, "openpyxl": False, "argon2": False},
}


def run_python(podman, service: str, code: str) -> str:
    return podman("run", "--rm", "--pull=never", "--network", "none", images.image(service),
                  "/venv/bin/python", "-c", code).stdout


@pytest.mark.parametrize("service", images.SERVICES)
def test_each_image_adds_at_most_its_target_above_the_base(podman, service):
    added = images.above_base(service) / 1e6
    assert added < images.SIZE_TARGETS_MB[service], f"{service}: {added:.1f} MB above the base"


@pytest.mark.parametrize("service", images.SERVICES)
def test_each_image_holds_its_own_dependencies_only_and_no_installer(podman, service):
    found = json.loads(run_python(podman, service, PROBE))
    assert not found["pip"] and not found["setuptools"], found
    assert {name: found[name] for name in EXPECTED[service]} == EXPECTED[service]


@pytest.mark.parametrize("service", ["reports", "worker"])
def test_boto3_keeps_the_models_it_uses(podman, service):
    """Only the S3 and credential-chain models of botocore are kept: S3 and STS clients are still made (and a
    presigned URL signed); another service's client is not."""
    code = """
import boto3, botocore.exceptions
s = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
url = s.client("s3", endpoint_url="http://127.0.0.1:9").generate_presigned_url(
    "get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60)
s.client("sts")
try:
    s.client("ec2")
    other = True
except botocore.exceptions.UnknownServiceError:
    other = False
print(url.startswith("http://127.0.0.1:9/b/k?"), other)
"""
    assert run_python(podman, service, code).split() == ["True", "False"]
