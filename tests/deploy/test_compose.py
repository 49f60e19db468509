"""docker-compose.yml, its nginx ingress and its Prometheus config, checked without an engine.

`docker-compose config` (the real Compose binary) validates and renders the file with an env file; the
rendered services are then held to what the console scripts need (reportflow_common.settings) and to the
hardening rules. nginx runs for real against stand-in upstreams when Debian's nginx is installed.
"""
from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from reportflow_auth.keys import generate_private_key_pem, load_signing_key
from reportflow_common.settings import ALL, MIGRATE, REPORTS, VARIABLES, WORKER, load_settings, variables_for
from support.waiting import GiveUp, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
NGINX_CONF = ROOT / "deploy" / "compose" / "nginx.conf"
PROMETHEUS_CONF = ROOT / "deploy" / "compose" / "prometheus.yml"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
RULES_IN_CONTAINER, RULES_GLOB = "/etc/prometheus/rules", "*.rules.yml"
SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"
IMAGE = re.compile(r"localhost/reportflow-(auth|reports|worker|notifier):\S+")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|PRIVATE_KEY|ACCESS_KEY|TOKEN")
SECRETS = {v.name for v in VARIABLES if v.secret}


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"{name} is not installed: `make install-dev` installs it")
    return found


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess:
    """The Compose binary on our file, with a clean environment so no shell variable leaks into it."""
    env = {"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir()}
    return subprocess.run([tool("docker-compose"), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f'{k}="{v}"\n' for k, v in values.items()))
    return path


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def sentinels(example) -> dict[str, str]:
    """The .env.example keys with values found nowhere else, and a real key, so each can be traced."""
    values = {k: f"sentinel{i}x{k.lower().replace('_', '')}" for i, k in enumerate(example)}
    values["JWT_PRIVATE_KEY"] = generate_private_key_pem().strip()  # multi-line, as the .env.example command writes
    return values


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, sentinels) -> dict:
    env_file = write_env_file(tmp_path_factory.mktemp("compose") / "sentinel.env", sentinels)
    run = compose(env_file, "config", "--format", "json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def services(rendered) -> dict[str, dict]:
    return rendered["services"]


def settings_service(spec: dict) -> str | None:
    """Which console script's settings a container needs: its image's service, or migrate's."""
    match = IMAGE.fullmatch(spec.get("image", ""))
    if not match:
        return None
    return MIGRATE if "/venv/bin/reportflow-migrate" in (spec.get("command") or []) else match.group(1)


@pytest.fixture(scope="module")
def ours(services) -> dict[str, str]:
    """compose service name -> settings service, for every container running one of our images."""
    found = {name: settings_service(spec) for name, spec in services.items() if settings_service(spec)}
    assert set(found.values()) == set(ALL) | {MIGRATE}, found
    assert list(found.values()).count("notifier") >= 2, "two notifier replicas behind the sticky ingress"
    return found


def one_shots(services) -> set[str]:
    return {target for spec in services.values() for target, dep in (spec.get("depends_on") or {}).items()
            if dep["condition"] == "service_completed_successfully"}


def published(spec: dict) -> list[dict]:
    return [p for p in spec.get("ports") or [] if p.get("published")]


# --- the file is valid --------------------------------------------------------------------------------------

def test_config_is_valid_with_the_example_env_file():
    run = compose(ENV_EXAMPLE, "config", "-q")
    assert run.returncode == 0, run.stderr


def test_file_matches_the_compose_schema():
    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} not found (the shared folder sits beside the repository)")
    import jsonschema
    jsonschema.validate(yaml.safe_load(COMPOSE_FILE.read_text()), json.loads(SCHEMA.read_text()))


def test_every_example_variable_is_required(tmp_path, example):
    """Each secret comes from .env through ${VAR:?...}: leaving one out stops compose, naming it."""
    for key in example:
        env_file = write_env_file(tmp_path / f"without-{key}.env", {k: v for k, v in example.items() if k != key})
        run = compose(env_file, "config", "-q")
        assert run.returncode != 0 and key in run.stderr, f"{key}: {run.returncode} {run.stderr}"


def test_example_key_command_makes_a_key_auth_accepts(tmp_path, example):
    """The one-liner in .env.example writes a PEM that compose passes through and auth loads."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    lines = ENV_EXAMPLE.read_text().splitlines()
    command = next(line.lstrip("# ").strip() for line in lines if "genpkey" in line)
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True, timeout=30)
    run = compose(tmp_path / ".env", "config", "--format", "json")
    assert run.returncode == 0, run.stderr
    pem = json.loads(run.stdout)["services"]["auth"]["environment"]["JWT_PRIVATE_KEY"]
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    load_signing_key(pem)  # raises ConfigError if auth would refuse it


# --- every container of ours starts with its configuration ------------------------------------------------

def test_every_required_setting_is_set(services, ours):
    for name, service in ours.items():
        env = services[name].get("environment") or {}
        missing = [v.name for v in variables_for(service) if v.default is None and not env.get(v.name)]
        assert not missing, f"{name} lacks required {missing}"
        unknown = set(env) - {v.name for v in variables_for(service)}
        assert not unknown, f"{name} sets {sorted(unknown)}, which reportflow-{service} does not read"
        load_settings(service, environ=env)  # the start-up check itself, storage rule included


def test_storage_is_the_s3_service_inside_and_localhost_for_the_browser(services, ours):
    s3_port = next(p["published"] for p in published(services["s3"]) if p["target"] == 9000)
    for name, service in ours.items():
        if service not in (REPORTS, WORKER):
            continue
        env = services[name]["environment"]
        assert env["STORAGE_BACKEND"] == "s3", name
        assert env["S3_ENDPOINT_URL"] == "http://s3:9000", name
        assert env["S3_BUCKET"] and env["S3_ACCESS_KEY_ID"] and env["S3_SECRET_ACCESS_KEY"], name
        if service == REPORTS:  # presigned links are signed for the address the host's browser opens
            assert env["S3_PUBLIC_ENDPOINT_URL"] == f"http://localhost:{s3_port}"
    # The S3 server makes the bucket the services use, and their key is its (admin) key.
    server, app = services["s3"], services["worker"]["environment"]
    assert f"-bucket={app['S3_BUCKET']}" in server["command"] and "-s3.port=9000" in server["command"]
    assert (server["environment"]["AWS_ACCESS_KEY_ID"], server["environment"]["AWS_SECRET_ACCESS_KEY"]) == \
        (app["S3_ACCESS_KEY_ID"], app["S3_SECRET_ACCESS_KEY"])


def test_addresses_name_compose_services(services, ours):
    expected = {"DATABASE_URL": ("postgres", 5432), "REDIS_URL": ("redis", 6379), "BROKER_URL": ("redis", 6379),
                "JWKS_URL": ("auth", 8000), "S3_ENDPOINT_URL": ("s3", 9000)}
    for name in ours:
        env = services[name].get("environment") or {}
        for var, (host, port) in expected.items():
            if env.get(var):
                url = urlsplit(env[var])
                assert (url.hostname, url.port) == (host, port), f"{name} {var}={env[var]}"
                assert host in services
        if env.get("JWKS_URL"):
            assert urlsplit(env["JWKS_URL"]).path == "/.well-known/jwks.json"
    port = published(services["nginx"])[0]["published"]
    for name, service in ours.items():
        if service == "notifier":
            origins = services[name]["environment"]["SOCKETIO_ALLOWED_ORIGINS"].split(",")
            assert f"http://localhost:{port}" in origins


def test_app_services_run_their_own_console_script(services, ours):
    common = tomllib.loads((ROOT / "services/common/pyproject.toml").read_text())["project"]["scripts"]
    for name, service in ours.items():
        command = services[name].get("command")
        if service == MIGRATE:
            assert command == ["/venv/bin/reportflow-migrate"] and "reportflow-migrate" in common
        else:
            assert command in (None, [f"/venv/bin/reportflow-{service}"]), name
            build = services[name]["build"]
            assert build["dockerfile"] == "services/Dockerfile" and build["args"] == {"SERVICE": service}, name
        assert not services[name].get("entrypoint"), name


# --- hardening, health, order -----------------------------------------------------------------------------

def test_our_containers_are_hardened(services, ours):
    for name in ours:
        spec = services[name]
        assert spec.get("read_only") is True, name
        uid, _, gid = str(spec.get("user", "")).partition(":")
        assert uid.isdigit() and int(uid) != 0, f"{name} user={spec.get('user')!r}"
        assert gid.isdigit() and int(gid) != 0, f"{name}: group root (0) unless a group is named"
        assert spec.get("cap_drop") == ["ALL"] and not spec.get("cap_add"), name
        assert "no-new-privileges:true" in (spec.get("security_opt") or []), name
        assert "/tmp" in [t.split(":")[0] for t in spec.get("tmpfs") or []], f"{name}: /tmp must be writable"
        assert not spec.get("privileged"), name


def test_long_running_services_have_healthchecks(services, ours):
    for name in set(services) - one_shots(services):
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and check["test"][0] != "NONE" and not check.get("disable"), name
    for name in set(ours) - one_shots(services):
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "/venv/bin/python", "-c"] and "/readyz" in test[3], name


def test_services_wait_on_healthy_or_completed_dependencies(services, ours):
    jobs = one_shots(services)
    assert jobs == {"migrate"}
    for name, spec in services.items():
        for target, dep in (spec.get("depends_on") or {}).items():
            want = "service_completed_successfully" if target in jobs else "service_healthy"
            assert dep["condition"] == want, f"{name} -> {target}: {dep['condition']}"
    for job in jobs:
        assert services[job].get("restart", "no") == "no", f"{job} is a one-shot job"
    for name, service in ours.items():
        deps = services[name].get("depends_on") or {}
        if service == MIGRATE:
            assert "postgres" in deps
            continue
        if any(service in v.services for v in VARIABLES if v.name == "DATABASE_URL"):
            assert "migrate" in deps, f"{name} must start after the schema is migrated"
        if service in (REPORTS, WORKER):
            assert deps.get("s3", {}).get("condition") == "service_healthy", f"{name} must start after S3 (its bucket)"
    ingress = services["nginx"].get("depends_on") or {}
    assert set(nginx_upstream_hosts()) <= set(ingress), "nginx resolves its upstreams at start"


def test_app_has_one_published_port_on_nginx(services, ours):
    ports = published(services["nginx"])
    assert len(ports) == 1 and ports[0]["target"] == 8080 and ports[0]["published"] == "8080", ports
    assert re.search(r"^\s*listen 8080;", NGINX_CONF.read_text(), re.M)
    for name in ours:
        assert not published(services[name]), f"{name} is reached through nginx only"
    for name, spec in services.items():
        for port in published(spec):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond this machine"


def test_no_literal_secrets_in_the_file(services, sentinels, example):
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    text = COMPOSE_FILE.read_text()
    for name, spec in raw["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            if key in SECRETS or SECRET_NAME.search(key):
                assert re.search(r"\$\{[A-Z0-9_]+:\?", str(value)), f"{name} {key} is not ${{VAR:?...}}"
                rendered = services[name]["environment"][key]
                assert any(s in rendered for s in sentinels.values()), f"{name} {key} does not come from .env"
    assert "BEGIN PRIVATE KEY" not in text
    for key, value in example.items():
        assert value not in text, f"the example value of {key} is written into docker-compose.yml"


# --- Prometheus --------------------------------------------------------------------------------------------

def test_prometheus_scrapes_every_service_and_loads_the_shared_rules(services, ours):
    conf = yaml.safe_load(PROMETHEUS_CONF.read_text())
    targets = {t for job in conf["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    wanted = {f"{name}:8000" for name in set(ours) - one_shots(services)}
    assert wanted <= targets, f"not scraped: {wanted - targets}"
    jobs = {host.split(":")[0]: job["job_name"] for job in conf["scrape_configs"]
            for sc in job.get("static_configs", []) for host in sc["targets"]}
    for name, service in ours.items():  # the shared alert rules select on job="<service>"
        if name in jobs:
            assert jobs[name] == service, f"{name} is scraped as job {jobs[name]!r}"
    assert conf["rule_files"] == [f"{RULES_IN_CONTAINER}/{RULES_GLOB}"]
    mounts = {(v["source"], v["target"]) for v in services["prometheus"]["volumes"] if v["type"] == "bind"}
    assert (str(PROMETHEUS_CONF), "/etc/prometheus/prometheus.yml") in mounts
    assert (str(RULES_DIR), RULES_IN_CONTAINER) in mounts
    grafana = {(v["source"], v["target"]) for v in services["grafana"]["volumes"] if v["type"] == "bind"}
    assert (str(ROOT / "deploy/grafana/provisioning"), "/etc/grafana/provisioning") in grafana
    assert (str(ROOT / "deploy/grafana/dashboards"), "/var/lib/grafana/dashboards") in grafana


def test_rule_glob_loads_rule_groups_only():
    """Prometheus stops at start on a matched file that is not rule groups (such as promtool's unit tests)."""
    if not RULES_DIR.is_dir():
        pytest.skip(f"{RULES_DIR} does not exist yet")
    matched = sorted(RULES_DIR.glob(RULES_GLOB))
    assert matched, f"{RULES_GLOB} matches nothing in {RULES_DIR}"
    for path in matched:
        assert set(yaml.safe_load(path.read_text())) == {"groups"}, f"{path.name} is not a rules file"


def test_promtool_accepts_the_config_with_the_rules_it_mounts(tmp_path):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    conf = tmp_path / "prometheus.yml"  # the rules folder where the container mounts it -> where it is here
    conf.write_text(PROMETHEUS_CONF.read_text().replace(RULES_IN_CONTAINER + "/", f"{RULES_DIR}/"))
    run = subprocess.run([promtool, "check", "config", str(conf)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


# --- nginx -------------------------------------------------------------------------------------------------

def nginx_upstream_hosts() -> dict[str, str]:
    """`server host:port;` of every upstream block -> the upstream's name."""
    hosts = {}
    for upstream, body in re.findall(r"upstream (\S+) \{(.*?)\}", NGINX_CONF.read_text(), re.S):
        for host in re.findall(r"^\s*server ([\w.-]+):8000\b", body, re.M):
            hosts[host] = upstream
    return hosts


def test_nginx_upstreams_are_our_services(services, ours):
    hosts = nginx_upstream_hosts()
    assert set(hosts) <= set(ours), hosts
    assert {h for h, u in hosts.items() if u == "notifier"} == {n for n, s in ours.items() if s == "notifier"}
    mount = [v for v in services["nginx"]["volumes"] if v["target"] == "/etc/nginx/nginx.conf"]
    assert mount and mount[0]["source"] == str(NGINX_CONF) and mount[0]["read_only"]


def render_nginx_conf(tmp: Path, upstreams: dict[str, int], port: int) -> Path:
    """The compose config with upstream hosts on 127.0.0.1 (compose names do not resolve here) and its
    writable paths under `tmp`."""
    text = NGINX_CONF.read_text().replace("/tmp/", f"{tmp}/")
    for host, upstream_port in upstreams.items():
        text = re.sub(rf"server {re.escape(host)}:8000;", f"server 127.0.0.1:{upstream_port};", text)
    text = re.sub(r"listen 8080;", f"listen 127.0.0.1:{port};", text)
    text = re.sub(r"listen 127\.0\.0\.1:8081;", f"listen 127.0.0.1:{free_port()};", text)
    conf = tmp / "nginx.conf"
    conf.write_text(text)
    return conf


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).is_file()), None)
    if not found:
        pytest.skip("nginx is not installed (apt-get install -y nginx); the compose ingress is not checked")
    return found


def test_nginx_config_passes_nginx_t(tmp_path):
    hosts = {h: free_port() for h in nginx_upstream_hosts()}
    conf = render_nginx_conf(tmp_path, hosts, free_port())
    run = subprocess.run([nginx_binary(), "-p", str(tmp_path), "-c", str(conf), "-e", "stderr", "-t"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr


class _Echo(BaseHTTPRequestHandler):
    """A stand-in upstream: answers any request with its own name, the path and the headers it got."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"upstream": self.server.name, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def ingress(tmp_path_factory):
    """nginx with the compose config, every upstream but reports answered by an echo server; reports is
    a port nobody listens on, to see how the ingress answers when a service is down."""
    binary = nginx_binary()
    tmp = tmp_path_factory.mktemp("nginx")
    echoes = {}
    for host in nginx_upstream_hosts():
        if host == "reports":
            continue
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
        server.name = host
        threading.Thread(target=server.serve_forever, daemon=True).start()
        echoes[host] = server
    ports = {h: s.server_address[1] for h, s in echoes.items()} | {"reports": free_port()}
    port = free_port()
    conf = render_nginx_conf(tmp, ports, port)
    proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "stderr.log", "w"))

    def up():
        if proc.poll() is not None:
            raise GiveUp((tmp / "stderr.log").read_text())
        call(port, "/")
        return True

    try:
        wait_until(up, timeout=15, what="nginx")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        for server in echoes.values():
            server.shutdown()
            server.server_close()


def call(port: int, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def upstream_of(port: int, path: str, **kwargs) -> str:
    resp, data = call(port, path, **kwargs)
    assert resp.status == 200, (path, resp.status, data)
    return json.loads(data)["upstream"]


@pytest.mark.parametrize("path, owner", [
    ("/v1/auth/login", "auth"), ("/v1/auth/me", "auth"), ("/.well-known/jwks.json", "auth"),
    ("/socket.io/?EIO=4&transport=polling", "notifier"), ("/", "notifier"), ("/static/js/main.js", "notifier"),
    ("/favicon.ico", "notifier"),
])
def test_ingress_routes_the_contract_paths(ingress, path, owner):
    assert upstream_of(ingress, path).startswith(owner)


@pytest.mark.parametrize("path", ["/v1/reports", "/v1/reports/0a1b/download", "/v1/openapi.json"])
def test_ingress_routes_reports_and_answers_problem_json_when_it_is_down(ingress, path):
    resp, data = call(ingress, path)
    assert resp.status == 503 and resp.getheader("Retry-After")
    assert resp.getheader("Content-Type") == "application/problem+json"
    assert json.loads(data)["code"] == "unavailable"


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/v1/reportsx", "/v1/other"])
def test_ingress_publishes_nothing_else(ingress, path):
    resp, data = call(ingress, path)
    assert resp.status == 404 and resp.getheader("Content-Type") == "application/problem+json"
    assert json.loads(data)["code"] == "not_found"


def test_ingress_answers_problem_json_for_a_too_large_body(ingress):
    resp, data = call(ingress, "/v1/auth/login", method="POST", body=b"x" * (2 * 1024 * 1024),
                      headers={"Content-Type": "application/json"})
    assert resp.status == 413 and json.loads(data)["code"] == "payload_too_large"


def test_ingress_forwards_host_and_websocket_upgrade(ingress):
    resp, data = call(ingress, "/socket.io/?EIO=4&transport=websocket",
                      headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    seen = json.loads(data)["headers"]
    assert seen["upgrade"] == "websocket" and seen["connection"].lower() == "upgrade"
    assert seen["host"] == f"127.0.0.1:{ingress}"  # with the port: Socket.IO compares it with Origin
    plain = json.loads(call(ingress, "/v1/auth/me")[1])["headers"]
    assert "upgrade" not in plain and plain["connection"] == "close"


def test_ingress_keeps_a_socketio_session_on_one_notifier(ingress):
    first, data = call(ingress, "/socket.io/?EIO=4&transport=polling")
    cookie = first.getheader("Set-Cookie") or ""
    match = re.match(r"rf_affinity=(\w+);", cookie)
    assert match and "Path=/socket.io/" in cookie and "HttpOnly" in cookie, cookie
    chosen = json.loads(data)["upstream"]
    headers = {"Cookie": f"rf_affinity={match.group(1)}"}
    for _ in range(5):
        resp, data = call(ingress, "/socket.io/?EIO=4&transport=polling&sid=x", headers=headers)
        assert json.loads(data)["upstream"] == chosen
        assert resp.getheader("Set-Cookie") is None  # the client keeps the cookie it has
    spread = {upstream_of(ingress, "/socket.io/?EIO=4", headers={"Cookie": f"rf_affinity=client{i}"})
              for i in range(20)}
    assert spread == {h for h, u in nginx_upstream_hosts().items() if u == "notifier"}, "all sessions on one"


# --- third-party images: one place declares them, compose and the chart use exactly those ----------------

IMAGES = ROOT / "deploy" / "images.yaml"


def test_compose_and_chart_use_the_images_deploy_images_yaml_declares(services):
    declared = yaml.safe_load(IMAGES.read_text())
    for name, image in declared.items():
        assert re.fullmatch(r"docker\.io/[a-z0-9._/-]+:[A-Za-z0-9._-]+", image), f"{name}: pin a full reference"
        assert not image.endswith((":latest", ":stable", ":mainline")), f"{name}: a moving tag"
    compose_images = {name: spec["image"] for name, spec in services.items() if not IMAGE.fullmatch(spec["image"])}
    assert compose_images == {"postgres": declared["postgres"], "redis": declared["redis"], "s3": declared["s3"],
                              "nginx": declared["nginx"], "prometheus": declared["prometheus"],
                              "grafana": declared["grafana"]}
    dev = yaml.safe_load((ROOT / "charts" / "reportflow" / "values.yaml").read_text())["dev"]
    chart = {name: f"{dev[name]['image']['repository']}:{dev[name]['image']['tag']}"
             for name in ("postgresql", "redis", "s3")}
    assert chart == {"postgresql": declared["postgres"], "redis": declared["redis"], "s3": declared["s3"]}, \
        "the chart's dev dependencies run the images compose runs"


def raw_request(port: int, head: bytes) -> tuple[int, str, bytes]:
    """Send bytes as they are (http.client refuses to build a malformed request); (status, content type, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head_part, _, body = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), body


@pytest.mark.parametrize("head, status, code", [
    (b"GET /v1/auth/me HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\nConnection: close\r\n\r\n",
     431, "headers_too_large"),
    (b"GET /v1/auth/me?" + b"q" * 20000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 414, "uri_too_long"),
    (b"GET /v1/auth/me HTTP/1.1\r\nHost: x\r\nBad\x00Header: 1\r\nConnection: close\r\n\r\n", 400, "invalid_request"),
    (b"GET /v1/auth/me HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "invalid_request"),  # HTTP/1.1 without Host
])
def test_ingress_answers_its_own_refusals_as_problem_json(ingress, head, status, code):
    """What nginx refuses before any service sees it is in the contract's shape too, never an HTML page."""
    got, content_type, body = raw_request(ingress, head)
    assert (got, content_type) == (status, "application/problem+json"), body[:200]
    assert json.loads(body)["code"] == code
