"""The chart's Gateway API, KEDA and Prometheus Operator objects, checked against their CRDs' own schemas (the
@kubernetes-models/* npm packages, MACHINE.md §17), and what they must say: the contract's paths on one host,
a sticky and long-lived Socket.IO rule (none of that with a WebSocket-only notifier), a worker scaled on its
Celery queue whose grace period covers the longest job, and the rest of what a cluster runs the chart with
(ServiceAccounts, topology spread, the dev Redis's volume).

No Gateway implementation or KEDA runs here: the schemas prove the objects are what those controllers accept,
and tests/containers proves the routes work, through an nginx stand-in generated from them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from reportflow_common.contracts import LANE_QUEUE, REPORTS_QUEUE

from .test_chart import (
    CHART,
    CI_VALUES,
    RELEASE,
    ROOT,
    SERVICES,
    ci_values,
    component,
    documents,
    env_of,
    find,
    helm_template,
    ingress_routes,
    service_container,
)

MODELS = ROOT / ".tools" / "k8s-models"
PACKAGES = ("@kubernetes-models/gateway-api@2.0.0", "@kubernetes-models/keda@2.0.0",
            "@kubernetes-models/prometheus-operator@6.0.0")
CHECKER = Path(__file__).with_name("crd_schemas.mjs")
CRD_GROUPS = ("gateway.networking.k8s.io/", "keda.sh/", "monitoring.coreos.com/")
# The fields the chart's routes use (the npm schemas, like the CRDs' structural schemas, do not refuse unknown
# fields: the API server would drop them silently): each one is Gateway API v1 (standard) or, for
# sessionPersistence, the experimental channel that Envoy Gateway's chart installs.
RULE_FIELDS = {"matches", "backendRefs", "timeouts", "sessionPersistence"}
SESSION_FIELDS = {"type", "sessionName", "absoluteTimeout", "cookieConfig"}


@pytest.fixture(scope="module")
def models() -> Path:
    """The npm packages (`make tools` installs them; installed here when missing and npm is there)."""
    if not all((MODELS / "node_modules" / p.rsplit("@", 1)[0]).is_dir() for p in PACKAGES):
        if not shutil.which("npm"):
            pytest.fail("the @kubernetes-models packages are missing and npm is not installed: `make tools`")
        subprocess.run(["npm", "install", "--prefix", str(MODELS), "--no-audit", "--no-fund", "--silent", *PACKAGES],
                       check=True, timeout=300)
    if not shutil.which("node"):
        pytest.fail("node is not installed (apt-get install -y nodejs)")
    return MODELS


def check(models: Path, objects: list[dict]) -> list[dict]:
    run = subprocess.run(["node", str(CHECKER), str(models)], input=json.dumps(objects), capture_output=True,
                         text=True, timeout=120, env={**os.environ})
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def docs() -> dict[str, list[dict]]:
    return {name: documents(helm_template("-f", str(CHART / "ci" / name)).stdout) for name in CI_VALUES}


def crd_objects(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["apiVersion"].startswith(CRD_GROUPS)]


def test_every_crd_object_of_every_render_is_valid_against_its_schema(models, docs):
    checked = set()
    for name, objects in docs.items():
        results = check(models, crd_objects(objects))
        bad = [r for r in results if r["error"]]
        assert not bad, f"{name}: {bad}"
        checked |= {(name, r["kind"]) for r in results}
    gateway_class = [d for d in documents((ROOT / "k8s" / "envoy-gateway.yaml").read_text())
                     if d["apiVersion"].startswith(CRD_GROUPS)]
    assert [r["error"] for r in check(models, gateway_class)] == [None]
    kinds = {kind for _, kind in checked}
    assert kinds == {"Gateway", "HTTPRoute", "ScaledObject", "TriggerAuthentication", "ServiceMonitor",
                     "PrometheusRule"}, kinds
    # each values file that enables them has them checked
    assert {("default-values.yaml", "Gateway"), ("default-values.yaml", "HTTPRoute"),
            ("keda-values.yaml", "ScaledObject"), ("keda-values.yaml", "TriggerAuthentication"),
            ("production-values.yaml", "HTTPRoute"), ("production-values.yaml", "ScaledObject"),
            ("podman-values.yaml", "HTTPRoute")} <= checked


def test_the_schema_check_catches_mistakes(models, docs):
    """The checks bite: a wrong enum, a malformed duration, a missing required field are each refused."""
    objects = docs["keda-values.yaml"]
    (route,) = [o for o in find(objects, "HTTPRoute") if component(o) == "gateway"]
    (gateway,) = find(objects, "Gateway")
    (scaled,) = find(objects, "ScaledObject")
    broken = []
    for mutate in (lambda r: r["spec"]["rules"][0]["matches"][0]["path"].update(type="Prefix"),
                   lambda r: r["spec"]["rules"][2]["sessionPersistence"].update(type="Cookies"),
                   lambda r: r["spec"]["rules"][2]["timeouts"].update(request="1 hour")):
        copy = json.loads(json.dumps(route))
        mutate(copy)
        broken.append(copy)
    bad_gateway = json.loads(json.dumps(gateway))
    bad_gateway["spec"]["listeners"][0]["port"] = 0
    bad_scaled = json.loads(json.dumps(scaled))
    del bad_scaled["spec"]["scaleTargetRef"]["name"]
    results = check(models, [*broken, bad_gateway, bad_scaled])
    assert all(r["error"] for r in results), results
    assert "type" in results[0]["error"] and "request" in results[2]["error"]


def app_route(objects: list[dict]) -> dict:
    (route,) = [o for o in find(objects, "HTTPRoute") if component(o) == "gateway"]
    return route


def route_paths(route: dict) -> dict[str, tuple[str, str]]:
    """path -> (match type, backend Service) of every rule."""
    paths = {}
    for rule in route["spec"]["rules"]:
        (backend,) = rule["backendRefs"]
        for match in rule["matches"]:
            paths[match["path"]["value"]] = (match["path"]["type"], backend["name"])
    return paths


@pytest.mark.parametrize("values", [v for v in CI_VALUES if (ci_values(v).get("gateway") or {}).get("enabled", True)])
def test_routes_serve_the_contract_paths_on_the_public_host_and_nothing_else(docs, values):
    objects = docs[values]
    route = app_route(objects)
    host = (ci_values(values).get("public") or {}).get("host", "reportflow.localhost")
    assert route["spec"]["hostnames"] == [host]
    assert route_paths(route) == {
        "/v1/auth": ("PathPrefix", f"{RELEASE}-auth"), "/.well-known/jwks.json": ("Exact", f"{RELEASE}-auth"),
        "/v1/reports": ("PathPrefix", f"{RELEASE}-reports"), "/v1/openapi.json": ("Exact", f"{RELEASE}-reports"),
        "/socket.io": ("PathPrefix", f"{RELEASE}-notifier"), "/static": ("PathPrefix", f"{RELEASE}-notifier"),
        "/favicon.ico": ("Exact", f"{RELEASE}-notifier"),
        "/": ("Exact", f"{RELEASE}-notifier")}  # "/" the web page only: /metrics, /healthz stay private
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in find(objects, "Service")}
    for rule in route["spec"]["rules"]:
        assert set(rule) <= RULE_FIELDS, set(rule) - RULE_FIELDS
        (backend,) = rule["backendRefs"]
        assert set(backend) == {"name", "port"} and backend["port"] in services[backend["name"]]
        assert set(rule.get("sessionPersistence", {})) <= SESSION_FIELDS
    gateways = find(objects, "Gateway")
    if (ci_values(values).get("gateway") or {}).get("create", True):
        (gateway,) = gateways
        assert route["spec"]["parentRefs"] == [{"name": gateway["metadata"]["name"]}]
        assert {listener["hostname"] for listener in gateway["spec"]["listeners"]} == {host}
        assert all(listener["allowedRoutes"] == {"namespaces": {"from": "Same"}}
                   for listener in gateway["spec"]["listeners"])
    else:
        assert not gateways
        assert route["spec"]["parentRefs"] == ci_values(values)["gateway"]["parentRefs"]


def test_the_ingress_option_routes_the_same_paths_as_the_httproute(docs):
    route = app_route(docs["default-values.yaml"])
    via_route = {p: (t.replace("PathPrefix", "Prefix"), s) for p, (t, s) in route_paths(route).items()}
    ingresses = [i for i in find(docs["ingress-values.yaml"], "Ingress") if component(i) == "ingress"]
    types = {p["path"]: p["pathType"] for i in ingresses for p in i["spec"]["rules"][0]["http"]["paths"]}
    via_ingress = {path: (types[path], service) for i in ingresses for path, (service, _) in ingress_routes(i).items()}
    assert via_route == via_ingress


def socket_rule(route: dict) -> dict:
    (rule,) = [r for r in route["spec"]["rules"] if r["matches"][0]["path"]["value"] == "/socket.io"]
    return rule


def test_the_socket_rule_is_sticky_and_long_lived_and_the_api_is_not(docs):
    route = app_route(docs["default-values.yaml"])
    rule = socket_rule(route)
    assert rule["sessionPersistence"] == {"type": "Cookie", "sessionName": "rfsid", "absoluteTimeout": "24h",
                                          "cookieConfig": {"lifetimeType": "Permanent"}}
    assert rule["timeouts"] == {"request": "0s"}, "no timeout: an idle WebSocket or a long poll is not an error"
    others = [r for r in route["spec"]["rules"] if r is not rule]
    assert all("sessionPersistence" not in r and r["timeouts"] == {"request": "60s"} for r in others)
    _, notifier = service_container(docs["default-values.yaml"], "notifier")
    assert env_of(notifier)["SOCKETIO_TRANSPORTS"]["value"] == "polling,websocket"


def test_a_websocket_only_notifier_needs_no_stickiness(docs):
    """production-values.yaml: notifier.transports [websocket]: no long-polling, so no session to pin."""
    objects = docs["production-values.yaml"]
    assert "sessionPersistence" not in socket_rule(app_route(objects))
    _, notifier = service_container(objects, "notifier")
    assert env_of(notifier)["SOCKETIO_TRANSPORTS"]["value"] == "websocket"
    both = documents(helm_template("--set", "notifier.transports={websocket,polling}").stdout)
    assert "sessionPersistence" in socket_rule(app_route(both))


def test_the_gateway_listens_for_https_with_the_public_tls_secret(docs):
    (plain,) = find(docs["default-values.yaml"], "Gateway")
    assert [(listener["name"], listener["protocol"], listener["port"]) for listener in plain["spec"]["listeners"]] \
        == [("http", "HTTP", 80)]
    assert plain["spec"]["gatewayClassName"] == "eg"
    (tls,) = find(docs["keda-values.yaml"], "Gateway")
    https = [listener for listener in tls["spec"]["listeners"] if listener["protocol"] == "HTTPS"]
    assert https and https[0]["port"] == 443 and https[0]["tls"] == {
        "mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "reportflow-localhost-tls"}]}


def test_the_worker_scales_on_its_celery_queue_with_keda(docs):
    objects = docs["keda-values.yaml"]
    (scaled,) = find(objects, "ScaledObject")
    (deployment,) = find(objects, "Deployment", f"{RELEASE}-worker")
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": deployment["metadata"]["name"]}
    assert "replicas" not in deployment["spec"], "KEDA owns the count"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 6)
    triggers = scaled["spec"]["triggers"]
    assert [t["type"] for t in triggers] == ["redis", "redis"]
    assert [t["metadata"]["listName"] for t in triggers] == [REPORTS_QUEUE, LANE_QUEUE], \
        "the Celery queues the pool consumes (a small job rings only the lane's)"
    # one wake-up message per queued job, in either queue: scale on their sum (two bare triggers give the max)
    modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
    assert sorted(modifiers["formula"].replace(" ", "").split("+")) == sorted(t["name"] for t in triggers)
    assert (modifiers["target"], modifiers["activationTarget"], modifiers["metricType"]) == \
        (triggers[0]["metadata"]["listLength"], triggers[0]["metadata"]["activationListLength"], "AverageValue")
    (trigger, _) = triggers
    meta = trigger["metadata"]
    (redis_service,) = find(objects, "Service", f"{RELEASE}-redis")
    assert meta["address"] == f"{redis_service['metadata']['name']}.{redis_service['metadata']['namespace']}.svc:" \
                              f"{redis_service['spec']['ports'][0]['port']}", "KEDA runs in its own namespace"
    assert all(isinstance(v, str) for v in meta.values()), "trigger metadata values are strings"
    # the parameter names of KEDA 2.20's scalers (pkg/scalers/redis_scaler.go, prometheus_scaler.go): the CRD
    # leaves trigger metadata free-form, and KEDA ignores a misspelt one
    assert set(meta) == {"address", "listName", "listLength", "activationListLength", "databaseIndex", "enableTLS"}
    (auth,) = find(objects, "TriggerAuthentication")
    assert all(t["authenticationRef"] == {"name": auth["metadata"]["name"]} for t in triggers)
    (ref,) = auth["spec"]["secretTargetRef"]
    (secret,) = find(objects, "Secret", ref["name"])
    assert ref["parameter"] == "password" and ref["key"] in secret["data"]
    assert not find(objects, "HorizontalPodAutoscaler", f"{RELEASE}-worker")
    assert scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"] >= 60
    # production: the same queue through Prometheus (reportflow_reports_queue_depth_messages)
    (prod,) = find(docs["production-values.yaml"], "ScaledObject")
    (trigger,) = prod["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert set(trigger["metadata"]) == {"serverAddress", "query", "threshold", "activationThreshold"}
    assert trigger["metadata"]["query"] == 'sum(max by (queue) (reportflow_reports_queue_depth_messages' \
        f'{{queue=~"{REPORTS_QUEUE}|{LANE_QUEUE}",namespace="reportflow"}}))'
    reports_app = (ROOT / "services/reports/reportflow_reports/app.py").read_text()
    assert "reportflow_reports_queue_depth_messages" in reports_app
    assert not find(docs["production-values.yaml"], "TriggerAuthentication")
    for values in ("default-values.yaml", "minimal-values.yaml", "ingress-values.yaml", "podman-values.yaml"):
        assert not find(docs[values], "ScaledObject"), "off by default (needs KEDA's CRDs)"


@pytest.mark.parametrize("values", CI_VALUES)
def test_the_worker_grace_period_covers_the_longest_job(docs, values):
    """Neither a rollout nor a KEDA scale-down kills a running job: after SIGTERM the worker may finish jobs for
    GRACEFUL_TIMEOUT_SECONDS >= JOB_TIME_LIMIT_SECONDS, within terminationGracePeriodSeconds; and the broker
    never hands a running job to a second worker (visibility timeout > the limit)."""
    pod, worker = service_container(docs[values], "worker")
    env = {k: int(v["value"]) for k, v in env_of(worker).items() if k in (
        "JOB_TIME_LIMIT_SECONDS", "GRACEFUL_TIMEOUT_SECONDS", "VISIBILITY_TIMEOUT_SECONDS")}
    pre_stop = worker["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert env["GRACEFUL_TIMEOUT_SECONDS"] >= env["JOB_TIME_LIMIT_SECONDS"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > pre_stop + env["GRACEFUL_TIMEOUT_SECONDS"]
    assert env["VISIBILITY_TIMEOUT_SECONDS"] > env["JOB_TIME_LIMIT_SECONDS"]
    if values == "default-values.yaml":  # the values the chart ships (values.yaml says why)
        assert (env["JOB_TIME_LIMIT_SECONDS"], env["GRACEFUL_TIMEOUT_SECONDS"],
                pod["spec"]["terminationGracePeriodSeconds"]) == (600, 600, 615)


def test_each_component_runs_under_its_own_service_account(docs):
    objects = docs["default-values.yaml"]
    accounts = {a["metadata"]["name"]: a for a in find(objects, "ServiceAccount")}
    used = {}
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet"):
            spec = o["spec"]["template"]["spec"]
            used[component(o)] = spec["serviceAccountName"]
            assert spec["automountServiceAccountToken"] is False
    assert set(used) == {*SERVICES, "postgresql", "redis", "s3"}
    assert used == {c: f"{RELEASE}-{c}" for c in used}, "one each"
    assert set(accounts) == set(used.values())
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    production = docs["production-values.yaml"]
    (auth,) = find(production, "ServiceAccount", f"{RELEASE}-auth")
    assert auth["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn":
                                               "arn:aws:iam::123456789012:role/reportflow-auth"}
    assert "annotations" not in find(production, "ServiceAccount", f"{RELEASE}-worker")[0]["metadata"]
    minimal = docs["minimal-values.yaml"]
    assert not find(minimal, "ServiceAccount")
    assert {o["spec"]["template"]["spec"]["serviceAccountName"] for o in minimal
            if o["kind"] in ("Deployment", "StatefulSet")} == {"default"}


def test_replicated_services_spread_over_nodes_and_zones_by_default(docs):
    for service in SERVICES:
        pod, _ = service_container(docs["default-values.yaml"], service)
        spread = pod["spec"]["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in spread] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        for constraint in spread:
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway", "soft: a one-node cluster still schedules"
            assert constraint["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
            assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == service
    own, _ = service_container(docs["production-values.yaml"], "auth")
    assert [c["topologyKey"] for c in own["spec"]["topologySpreadConstraints"]] == ["topology.kubernetes.io/zone"]
    off, _ = service_container(docs["minimal-values.yaml"], "auth")
    assert "topologySpreadConstraints" not in off["spec"]


def test_the_dev_redis_keeps_its_append_only_file_on_a_volume(docs):
    (redis,) = find(docs["default-values.yaml"], "StatefulSet", f"{RELEASE}-redis")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--dir") + 1] == "/data"
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert not find(docs["default-values.yaml"], "Deployment", f"{RELEASE}-redis")
    (emptied,) = find(docs["minimal-values.yaml"], "StatefulSet", f"{RELEASE}-redis")
    assert "volumeClaimTemplates" not in emptied["spec"]


def test_the_committed_manifest_carries_the_routes_and_the_gateway():
    objects = documents((ROOT / "k8s" / "reportflow.yaml").read_text())
    assert {o["kind"] for o in objects} >= {"Gateway", "HTTPRoute"}
    assert not find(objects, "Ingress"), "no Ingress by default: no controller is assumed"
    assert yaml.safe_load((CHART / "values.yaml").read_text())["ingress"]["enabled"] is False
