"""The project's real images under podman: the chart's pods (kube play) and docker-compose through podman's API.

Where podman cannot run containers every test here is skipped, with the reason (pytest -ra lists it).
REPORTFLOW_CONTAINER_TESTS=require turns that skip into a failure (CI machines that do have podman);
REPORTFLOW_CONTAINER_TESTS=0 skips them on purpose. The images are (re)built first with scripts/images.py:
with unchanged sources that is the layer cache, a few seconds an image, so the tests never run stale code;
REPORTFLOW_CONTAINER_IMAGES=present uses the images already there (built by an earlier CI step) and builds
only those missing.
"""
from __future__ import annotations

import os
import shutil
import uuid

import pytest

from containers.podman_kit import Podman, images
from support.infra import Postgres, RedisServer, S3Server


def _unavailable(reason: str):
    if os.environ.get("REPORTFLOW_CONTAINER_TESTS") == "require":
        pytest.fail(f"{reason} (REPORTFLOW_CONTAINER_TESTS=require)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def podman():
    if os.environ.get("REPORTFLOW_CONTAINER_TESTS") == "0":
        pytest.skip("switched off: REPORTFLOW_CONTAINER_TESTS=0")
    if not shutil.which("podman"):
        _unavailable("podman is not installed: apt-get install -y podman runc debootstrap (MACHINE.md §15)")
    p = Podman()
    info = p("info", check=False)
    if info.returncode:
        _unavailable(f"podman does not work here: {info.stderr.strip()[-400:]}")
    try:
        try:
            images.ensure_base()
        except SystemExit as exc:
            _unavailable(f"no base image and none can be made here: {exc}")
        probe = p("run", "--rm", "--pull=never", "--network", "host", "--name", f"rfprobe-{uuid.uuid4().hex[:8]}",
                  images.BASE, "python3", "-c", "pass", check=False)
        if probe.returncode:
            _unavailable(f"podman cannot start a container here (MACHINE.md §15: runc, default_ulimits = []): "
                         f"{probe.stderr.strip()[-400:]}")
        try:
            images.ensure(missing_only=os.environ.get("REPORTFLOW_CONTAINER_IMAGES") == "present")
        except SystemExit as exc:  # podman works, so a failed build is the Dockerfile's fault
            pytest.fail(f"building the images failed: {exc}")
        yield p
    finally:
        p.cleanup()


def _host_servers(workdir):
    """PostgreSQL (a fresh, empty database: the migration container creates the schema), Redis, S3, on 127.0.0.1."""
    servers = []
    try:
        for server in (Postgres(workdir), RedisServer(workdir), S3Server(workdir)):
            servers.append(server.start())
        return servers
    except BaseException:
        for server in reversed(servers):
            server.stop()
        raise


@pytest.fixture(scope="module")
def host_servers(podman, tmp_path_factory):
    servers = _host_servers(tmp_path_factory.mktemp("host-servers"))
    try:
        yield servers
    finally:
        for server in reversed(servers):
            server.stop()
