"""charts/reportflow and k8s/: helm lint, the values schema, Kubernetes API schemas, checkov, and what a
reviewer checks by eye in the rendered objects (security, probes, env, references, routes, network flows).

No cluster here: everything is checked on `helm template` renders of the chart's ci/*-values.yaml. The
Gateway API and KEDA objects are checked against their own schemas in test_chart_gateway_keda.py.
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reportflow_common.settings import variables_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "reportflow"
CI_VALUES = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
RELEASE, NAMESPACE = "reportflow", "reportflow"
KUBE_VERSIONS = ("1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36")
# API groups of CRDs (Prometheus Operator, Gateway API, KEDA): not built-in kinds, checked elsewhere.
CRD_GROUPS = ("monitoring.coreos.com/", "gateway.networking.k8s.io/", "keda.sh/")
SERVICES = ("auth", "reports", "worker", "notifier")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
TIMEOUT = 120  # seconds for any one tool call
# Keys a Secret named by secrets.existingSecret must hold (values.yaml and NOTES.txt document them).
EXISTING_SECRET_KEYS = {"DATABASE_URL", "REDIS_URL", "JWT_PRIVATE_KEY", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY",
                        "POSTGRES_PASSWORD", "REDIS_PASSWORD"}


def tool(name: str, *extra_dirs: Path) -> str:
    """A tool from .tools/bin, PATH, the test venv or the given folders; missing is a failure, not a skip."""
    folders = [ROOT / ".tools" / "bin", os.environ.get("PATH", ""), Path(sys.executable).parent, *extra_dirs]
    search = os.pathsep.join(map(str, folders))
    found = shutil.which(name, path=search)
    if not found:
        pytest.fail(f"{name} is not installed: `make tools` installs helm, kubectl and checkov")
    return found


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": os.pathsep.join([str(ROOT / ".tools" / "bin"), os.environ.get("PATH", "")])}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def helm_template(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(tool("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args, check=check)


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {name: helm_template("-f", str(CHART / "ci" / name)).stdout for name in CI_VALUES}


@pytest.fixture(scope="module")
def docs(rendered) -> dict[str, list[dict]]:
    return {name: documents(text) for name, text in rendered.items()}


def ci_values(name: str) -> dict:
    return yaml.safe_load((CHART / "ci" / name).read_text()) or {}


def existing_secret(name: str) -> str:
    return (ci_values(name).get("secrets") or {}).get("existingSecret", "")


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def pod_templates(objects: list[dict]):
    """(object, pod template) for every workload and bare Pod of a render, hooks and tests included."""
    for o in objects:
        if o["kind"] in WORKLOADS:
            yield o, o["spec"]["template"]
        elif o["kind"] == "Pod":
            yield o, o


def containers(pod: dict) -> list[dict]:
    spec = pod["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def component(obj: dict) -> str:
    return obj["metadata"]["labels"].get("app.kubernetes.io/component", "")


def service_container(objects: list[dict], service: str) -> tuple[dict, dict]:
    (deployment,) = find(objects, "Deployment", f"{RELEASE}-{service}")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return pod, container


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_the_chart_has_its_ci_values_files():
    assert CI_VALUES == ["default-values.yaml", "ingress-values.yaml", "keda-values.yaml", "minimal-values.yaml",
                         "podman-values.yaml", "production-values.yaml"]


@pytest.mark.parametrize("values", CI_VALUES)
def test_helm_lint_strict(values):
    run(tool("helm"), "lint", "--strict", str(CHART), "-f", str(CHART / "ci" / values))


def test_renders_are_valid_kubernetes_objects_for_each_supported_version(docs, tmp_path):
    """kubernetes-validate knows the built-in kinds only: the CRDs' objects are left out here and checked by
    test_service_monitors_scrape_every_service and test_chart_gateway_keda.py instead."""
    files = []
    for name, objects in docs.items():
        builtin = [o for o in objects if not o["apiVersion"].startswith(CRD_GROUPS)]
        files.append(tmp_path / name)
        files[-1].write_text(yaml.safe_dump_all(builtin))
    for version in KUBE_VERSIONS:
        run(tool("kubernetes-validate"), "--strict", "-k", version, "--quiet", *map(str, files))


def test_service_monitors_scrape_every_service(docs):
    assert not find(docs["default-values.yaml"], "ServiceMonitor"), "off by default (needs the CRD)"
    objects = docs["production-values.yaml"]
    monitors = find(objects, "ServiceMonitor")
    assert sorted(m["metadata"]["name"] for m in monitors) == sorted(f"{RELEASE}-{s}" for s in SERVICES)
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in find(objects, "Service") if selector.items() <= s["metadata"]["labels"].items()]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]


def checkov_skips() -> dict[str, str]:
    skips = yaml.safe_load((CHART / "checkov-skips.yaml").read_text())["skips"]
    assert all(s["reason"].strip() for s in skips), "every waived check says why"
    return {s["id"]: s["reason"] for s in skips}


def test_checkov_finds_nothing_beyond_the_listed_skips(rendered, tmp_path):
    for name, text in rendered.items():
        (tmp_path / name).write_text(text)
    checkov = tool("checkov", ROOT / ".venv-checkov" / "bin")
    base = [checkov, "-d", str(tmp_path), "--framework", "kubernetes", "--compact", "--quiet", "--skip-download"]
    skips = checkov_skips()
    run(*base, "--skip-check", ",".join(skips))
    unwaived = run(*base, check=False)
    fired = set(re.findall(r"Check: (CKV\w+)", unwaived.stdout))
    assert fired == set(skips), f"checkov-skips.yaml lists {sorted(skips)} but checkov fires {sorted(fired)}"


@pytest.mark.parametrize("values", CI_VALUES)
def test_every_container_runs_unprivileged_with_resources(docs, values):
    pods = list(pod_templates(docs[values]))
    assert {component(o) for o, _ in pods} >= {*SERVICES, "migrations", "test"}
    for owner, pod in pods:
        where = f"{owner['kind']}/{owner['metadata']['name']}"
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] == 10001, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in containers(pod):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= c["resources"][bound].keys(), f"{where}: resources.{bound}"
            if owner["kind"] in ("Deployment", "StatefulSet"):
                assert "livenessProbe" in c and "readinessProbe" in c, where
            if sc["readOnlyRootFilesystem"] and owner["kind"] != "StatefulSet":
                mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/tmp" in mounts or "/data" in mounts, f"{where}: needs a writable scratch folder"


@pytest.mark.parametrize("values", CI_VALUES)
def test_services_probes_ports_scratch_and_shutdown(docs, values):
    objects = docs[values]
    for service in SERVICES:
        pod, c = service_container(objects, service)
        env = env_of(c)
        assert c["command"] == [f"reportflow-{service}"]
        assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
        assert env["PORT"]["value"] == "8000"
        assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        graceful = int(env["GRACEFUL_TIMEOUT_SECONDS"]["value"])
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["spec"]["terminationGracePeriodSeconds"] > graceful + pre_stop
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        metrics_dir = env["PROMETHEUS_MULTIPROC_DIR"]["value"]
        assert {"/tmp", metrics_dir} <= mounts.keys()
        assert all("emptyDir" in volumes[mounts[p]] for p in ("/tmp", metrics_dir))
        assert list(mounts).index("/tmp") < list(mounts).index(metrics_dir), "nested mount after its parent"
        annotations = pod["metadata"].get("annotations", {})
        if ci_values(values).get("metrics", {}).get("scrapeAnnotations", True):
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == "8000"
            assert annotations["prometheus.io/path"] == "/metrics"
        (svc,) = find(objects, "Service", f"{RELEASE}-{service}")
        assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_standard_labels_on_every_object(docs):
    for objects in docs.values():
        for o in objects:
            labels = o["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "reportflow"
            assert labels["app.kubernetes.io/instance"] == RELEASE
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["helm.sh/chart"].startswith("reportflow-")
            assert o["metadata"]["namespace"] == NAMESPACE
        for owner, pod in pod_templates(objects):
            if owner["kind"] != "Job":
                assert owner["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component(pod)


def test_replicas_disruption_budgets_and_autoscalers(docs):
    default, production = docs["default-values.yaml"], docs["production-values.yaml"]
    assert find(default, "Deployment", f"{RELEASE}-notifier")[0]["spec"]["replicas"] == 2
    assert not find(default, "HorizontalPodAutoscaler"), "no metrics-server on kind/minikube by default"
    for objects in (default, production):
        assert sorted(p["metadata"]["name"] for p in find(objects, "PodDisruptionBudget")) == \
            sorted(f"{RELEASE}-{s}" for s in SERVICES)
    hpas = {h["metadata"]["name"]: h for h in find(production, "HorizontalPodAutoscaler")}
    # CPU for the web services; the worker scales on its queue (KEDA), never on CPU
    assert sorted(hpas) == sorted(f"{RELEASE}-{s}" for s in ("reports", "notifier"))
    assert not [h for objects in docs.values() for h in find(objects, "HorizontalPodAutoscaler")
                if h["metadata"]["name"] == f"{RELEASE}-worker"]
    assert "replicas" not in find(production, "Deployment", f"{RELEASE}-worker")[0]["spec"], "KEDA owns the count"
    assert find(default, "Deployment", f"{RELEASE}-worker")[0]["spec"]["replicas"] == 1
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert "replicas" not in find(production, "Deployment", name)[0]["spec"], "the HPA owns the count"
    assert find(production, "Deployment", f"{RELEASE}-auth")[0]["spec"]["replicas"] == 3
    assert not find(docs["minimal-values.yaml"], "PodDisruptionBudget")


def ingress_routes(ingress: dict) -> dict[str, tuple[str, str]]:
    (rule,) = ingress["spec"]["rules"]
    return {p["path"]: (p["backend"]["service"]["name"], p["backend"]["service"]["port"]["name"])
            for p in rule["http"]["paths"]}


def test_ingress_routes_one_host_and_the_socket_is_sticky_and_long_lived(docs):
    """The Ingress option (ci/ingress-values.yaml): the same paths as the HTTPRoutes, the controller's
    annotations as values. By default the chart renders no Ingress and assumes no controller."""
    for values in CI_VALUES:
        if not (ci_values(values).get("ingress") or {}).get("enabled"):
            assert not find(docs[values], "Ingress"), values
    objects = docs["ingress-values.yaml"]
    api, socket = find(objects, "Ingress", f"{RELEASE}-api")[0], find(objects, "Ingress", f"{RELEASE}-socket")[0]
    for ingress in (api, socket):
        assert ingress["apiVersion"] == "networking.k8s.io/v1"
        assert ingress["spec"]["ingressClassName"] == "nginx"
    assert api["spec"]["rules"][0]["host"] == socket["spec"]["rules"][0]["host"] == "reportflow.localhost"
    assert ingress_routes(api) == {"/v1/auth": (f"{RELEASE}-auth", "http"),
                                   "/.well-known/jwks.json": (f"{RELEASE}-auth", "http"),
                                   "/v1/reports": (f"{RELEASE}-reports", "http"),
                                   "/v1/openapi.json": (f"{RELEASE}-reports", "http")}
    assert ingress_routes(socket) == {"/socket.io": (f"{RELEASE}-notifier", "http"),
                                      "/static": (f"{RELEASE}-notifier", "http"),
                                      "/favicon.ico": (f"{RELEASE}-notifier", "http"),
                                      "/": (f"{RELEASE}-notifier", "http")}
    # only the contract's paths are public: "/" is the demo page, not a prefix that would expose /metrics
    path_types = {p["path"]: p["pathType"] for i in (api, socket) for p in i["spec"]["rules"][0]["http"]["paths"]}
    assert path_types == {"/v1/auth": "Prefix", "/.well-known/jwks.json": "Exact", "/v1/reports": "Prefix",
                          "/v1/openapi.json": "Exact", "/socket.io": "Prefix", "/static": "Prefix",
                          "/favicon.ico": "Exact", "/": "Exact"}
    notes = socket["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert notes["nginx.ingress.kubernetes.io/affinity-mode"] == "persistent"
    assert notes["nginx.ingress.kubernetes.io/session-cookie-name"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600
    assert "nginx.ingress.kubernetes.io/affinity" not in (api["metadata"].get("annotations") or {})
    services = {s["metadata"]["name"]: {p["name"] for p in s["spec"]["ports"]} for s in find(objects, "Service")}
    for ingress in find(objects, "Ingress"):
        for service, port in ingress_routes(ingress).values():
            assert port in services[service], f"{ingress['metadata']['name']} -> {service}:{port}"
    plain = documents(helm_template("--set", "ingress.enabled=true").stdout)
    for ingress in find(plain, "Ingress"):
        assert "ingressClassName" not in ingress["spec"] and not ingress["metadata"].get("annotations"), \
            "controller-neutral by default: class and annotations come from values only"


def test_dev_storage_path_is_routed_on_the_public_host_for_presigned_urls(docs):
    objects = docs["default-values.yaml"]
    (storage,) = find(objects, "HTTPRoute", f"{RELEASE}-storage")
    (rule,) = storage["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/reports"}}]
    assert rule["backendRefs"] == [{"name": f"{RELEASE}-s3", "port": 9000}]
    (ingress,) = find(docs["ingress-values.yaml"], "Ingress", f"{RELEASE}-storage")
    assert ingress_routes(ingress) == {"/reports": (f"{RELEASE}-s3", "s3")}
    _, reports = service_container(objects, "reports")
    env = env_of(reports)
    assert env["S3_PUBLIC_ENDPOINT_URL"]["value"] == "http://reportflow.localhost:8080"
    assert env["S3_ENDPOINT_URL"]["value"] == f"http://{RELEASE}-s3:9000"
    for values in ("production-values.yaml", "minimal-values.yaml"):
        assert not [o for o in docs[values] if o["kind"] in ("HTTPRoute", "Ingress") and component(o) == "s3"]


def secret_refs(objects: list[dict]):
    """(kind, name, key or None, optional, where) for every Secret/ConfigMap a pod reads."""
    for owner, pod in pod_templates(objects):
        where = f"{owner['kind']}/{owner['metadata']['name']}"
        for c in containers(pod):
            for e in c.get("env", []):
                for ref_kind, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    if ref := e.get("valueFrom", {}).get(ref_kind):
                        yield kind, ref["name"], ref["key"], ref.get("optional", False), where
            for source in c.get("envFrom", []):
                for ref_kind, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                    if ref := source.get(ref_kind):
                        yield kind, ref["name"], None, ref.get("optional", False), where
        for volume in pod["spec"].get("volumes", []):
            if "secret" in volume:
                yield "Secret", volume["secret"]["secretName"], None, False, where
            if "configMap" in volume:
                yield "ConfigMap", volume["configMap"]["name"], None, False, where


@pytest.mark.parametrize("values", CI_VALUES)
def test_every_secret_and_config_map_reference_resolves(docs, values):
    objects = docs[values]
    existing = existing_secret(values)
    refs = list(secret_refs(objects))
    assert refs
    for kind, name, key, _optional, where in refs:
        found = find(objects, kind, name)
        if not found:
            assert kind == "Secret" and name == existing, f"{where}: {kind} {name} is not in the render"
            assert key in EXISTING_SECRET_KEYS, f"{where}: {key} is not a documented key of existingSecret"
            continue
        if key is not None:
            assert key in {**found[0].get("data", {}), **found[0].get("stringData", {})}, f"{where}: {name}/{key}"
    values_text = (CHART / "values.yaml").read_text()
    assert all(key in values_text for key in EXISTING_SECRET_KEYS), "values.yaml documents existingSecret's keys"


def declared(service: str) -> dict:
    return {v.name: v for v in variables_for(service)}


@pytest.mark.parametrize("values", CI_VALUES)
def test_each_service_gets_every_required_setting_and_only_its_own(docs, values):
    objects = docs[values]
    (job,) = find(objects, "Job", f"{RELEASE}-migrations")
    containers_by_service = {s: service_container(objects, s)[1] for s in SERVICES}
    containers_by_service["migrate"] = job["spec"]["template"]["spec"]["containers"][0]
    for service, container in containers_by_service.items():
        env = env_of(container)
        variables = declared(service)
        assert env.keys() <= variables.keys(), f"{service} is given settings it never reads"
        for name, var in variables.items():
            if var.default is None:
                entry = env.get(name)
                assert entry and (entry.get("value") or "valueFrom" in entry), f"{service}: {name} is required"
                if var.secret:
                    assert "valueFrom" in entry, f"{service}: secret {name} must come from a Secret"
        if service in ("reports", "worker"):  # the storage rule of settings._check_storage
            assert env["STORAGE_BACKEND"]["value"] == "s3"
            assert env["S3_BUCKET"]["value"]
        for name, entry in env.items():
            if variables[name].secret:
                assert "value" not in entry, f"{service}: secret {name} must not be a literal"


def test_services_find_auth_and_one_another(docs):
    objects = docs["default-values.yaml"]
    (auth_service,) = find(objects, "Service", f"{RELEASE}-auth")
    for service in ("reports", "notifier"):
        url = urlsplit(env_of(service_container(objects, service)[1])["JWKS_URL"]["value"])
        auth_port = auth_service["spec"]["ports"][0]["port"]
        assert (url.scheme, url.hostname, url.port, url.path) == \
            ("http", auth_service["metadata"]["name"], auth_port, "/.well-known/jwks.json")
    origins = env_of(service_container(objects, "notifier")[1])["SOCKETIO_ALLOWED_ORIGINS"]["value"]
    assert origins == "http://reportflow.localhost:8080"
    reports, worker = (env_of(service_container(objects, s)[1]) for s in ("reports", "worker"))
    for shared in ("VISIBILITY_TIMEOUT_SECONDS", "EVENT_HISTORY_MAX", "S3_BUCKET", "S3_ENDPOINT_URL",
                   "REPORT_RETENTION_DAYS"):
        assert reports[shared] == worker[shared], f"{shared} must be equal for reports and worker"
    (job,) = find(objects, "Job", f"{RELEASE}-migrations")
    migrate = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert migrate["REPORT_RETENTION_DAYS"] == worker["REPORT_RETENTION_DAYS"] == {"name": "REPORT_RETENTION_DAYS",
                                                                                  "value": "7"}


def hook(obj: dict) -> tuple[str, int, str]:
    a = obj["metadata"]["annotations"]
    return a["helm.sh/hook"], int(a.get("helm.sh/hook-weight", "0")), a.get("helm.sh/hook-delete-policy", "")


def test_migrations_run_as_a_hook_and_the_secret_is_an_ordinary_release_object(docs):
    for values in CI_VALUES:
        objects = docs[values]
        (job,) = find(objects, "Job", f"{RELEASE}-migrations")
        events, _weight, policy = hook(job)
        # Migrate before anything starts when the database and the Secret exist outside the release
        # (existingSecret, no dev); the chart's own Secret and the dev PostgreSQL come with the install, so
        # there the first run is right after it. Upgrades always migrate first.
        before = bool(existing_secret(values)) and not (ci_values(values).get("dev") or {}).get("enabled", True)
        assert events == ("pre-install,pre-upgrade" if before else "post-install,pre-upgrade"), values
        assert policy == "before-hook-creation,hook-succeeded"
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["reportflow-migrate"]
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert "serviceAccountName" not in job["spec"]["template"]["spec"], "hooks run before the release's SAs"
        secrets = find(objects, "Secret")
        if existing_secret(values):
            assert not secrets
            continue
        (secret,) = secrets
        notes = secret["metadata"].get("annotations") or {}
        assert not [k for k in notes if k.startswith("helm.sh/hook")], "never a hook (GitOps tools skip hooks)"
        assert notes.get("helm.sh/resource-policy") == "keep", "kept on uninstall by default"
    kept = find(documents(helm_template("--set", "secrets.keepOnUninstall=false").stdout), "Secret")[0]
    assert "helm.sh/resource-policy" not in (kept["metadata"].get("annotations") or {})


def test_pods_carry_checksums_of_their_settings_and_of_the_secret_inputs(docs):
    objects = docs["default-values.yaml"]
    sums = {}
    for service in SERVICES:
        pod, container = service_container(objects, service)
        notes = pod["metadata"]["annotations"]
        assert re.fullmatch(r"[0-9a-f]{64}", notes["checksum/config"]) and re.fullmatch(r"[0-9a-f]{64}",
                                                                                         notes["checksum/secret"])
        sums[service] = notes
    assert len({s["checksum/config"] for s in sums.values()}) == len(SERVICES), "each its own settings"
    assert len({s["checksum/secret"] for s in sums.values()}) == 1, "one Secret"

    def annotations(*sets: str) -> dict:
        render = documents(helm_template(*[a for s in sets for a in ("--set", s)]).stdout)
        return {s: service_container(render, s)[0]["metadata"]["annotations"] for s in SERVICES}
    again = annotations()
    assert again == sums, "the same values give the same checksums (generated secrets do not enter them)"
    logs = annotations("config.logLevel=DEBUG")
    assert all(logs[s]["checksum/config"] != sums[s]["checksum/config"] for s in SERVICES)
    assert all(logs[s]["checksum/secret"] == sums[s]["checksum/secret"] for s in SERVICES)
    password = annotations("dev.redis.password=anotherpassword")
    assert all(password[s]["checksum/secret"] != sums[s]["checksum/secret"] for s in SERVICES)


# Generated on every render where `lookup` sees no live Secret (documented in values.yaml and the chart's
# README): the signing key and the dev passwords, and the URLs that hold them.
GENERATED_KEYS = {"JWT_PRIVATE_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "S3_SECRET_ACCESS_KEY", "DATABASE_URL",
                  "REDIS_URL"}


def test_helm_template_twice_differs_only_in_the_documented_generated_values():
    first, second = (documents(helm_template().stdout) for _ in range(2))
    assert [(o["kind"], o["metadata"]["name"]) for o in first] == [(o["kind"], o["metadata"]["name"]) for o in second]
    for a, b in zip(first, second, strict=True):
        if a["kind"] == "Secret":
            differing = {k for k in a["data"] if a["data"][k] != b["data"][k]}
            assert differing == GENERATED_KEYS and a["data"].keys() == b["data"].keys()
            a, b = {**a, "data": None}, {**b, "data": None}
        assert a == b, f"{a['kind']}/{a['metadata']['name']} differs between two renders"
    values_text = (CHART / "values.yaml").read_text()
    assert "`helm template`" in values_text and "existingSecret" in values_text
    pinned = documents(helm_template("-f", str(CHART / "ci" / "production-values.yaml")).stdout)
    assert pinned == documents(helm_template("-f", str(CHART / "ci" / "production-values.yaml")).stdout), \
        "with existingSecret nothing is generated: two renders are equal"


def secret_data(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_generated_secret_holds_an_ed25519_key_and_matching_dev_urls(docs):
    objects = docs["default-values.yaml"]
    (secret,) = find(objects, "Secret", f"{RELEASE}-secrets")
    data = secret_data(secret)
    key = serialization.load_pem_private_key(data["JWT_PRIVATE_KEY"].encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    services = {s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in find(objects, "Service")}
    db, redis = urlsplit(data["DATABASE_URL"]), urlsplit(data["REDIS_URL"])
    assert db.scheme == "postgresql+psycopg2" and db.password == data["POSTGRES_PASSWORD"]
    assert services[db.hostname] == db.port and db.path == "/reportflow"
    assert redis.scheme == "redis" and redis.password == data["REDIS_PASSWORD"]
    assert services[redis.hostname] == redis.port
    assert len(data["S3_SECRET_ACCESS_KEY"]) >= 8, "S3 servers refuse short secret keys"


def test_secret_values_win_and_external_urls_are_required_without_dev():
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    given = documents(helm_template("--set-string", f"secrets.jwtPrivateKey={pem}").stdout)
    assert secret_data(find(given, "Secret")[0])["JWT_PRIVATE_KEY"] == pem

    refused = helm_template("--set", "dev.enabled=false", check=False)
    assert refused.returncode != 0 and "secrets.databaseUrl" in refused.stderr

    external = documents(helm_template(
        "--set", "dev.enabled=false", "--set", "secrets.databaseUrl=postgresql://u:p@db.example:5432/rf",
        "--set", "secrets.redisUrl=redis://cache.example:6379/0").stdout)
    data = secret_data(find(external, "Secret")[0])
    assert data["DATABASE_URL"] == "postgresql://u:p@db.example:5432/rf"
    assert "POSTGRES_PASSWORD" not in data and "S3_ACCESS_KEY_ID" not in data
    assert not {"postgresql", "redis", "s3"} & {component(o) for o in external}


@pytest.mark.parametrize("setting", [
    "notifier.replicas=0",
    "auth.image.tag=1",
    "unknownTopLevelKey=1",
    "auth.unknownKey=1",
    "reports.autoscaling.targetCPUUtilizationPercentage=150",
    "worker.autoscaling.enabled=true",  # no CPU autoscaler for the worker
    "worker.autoscaling.keda.trigger=cpu",
    "worker.autoscaling.keda.redis.address=redis://cache:6379",
    "gateway.socket.requestTimeout=1 hour",
    "gateway.className=Not_A_Name",
    "notifier.transports={sse}",
    "auth.previousPublicKeys={not-a-pem}",
    "auth.env.JWT_PREVIOUS_PUBLIC_KEYS=x",
    "worker.env.JOB_TIME_LIMIT_SECONDS=5",
    "public.url=reportflow.localhost",
    "config.logLevel=LOUD",
    "image.pullPolicy=Sometimes",
    "http.port=70000",
    "ingress.socket.annotations.x=1",
    "auth.env.DATABASE_URL=postgresql://set-by-the-chart",
    "secrets.databaseUrl=mysql://elsewhere",
    "containerSecurityContext.readOnlyRootFilesystem=false",
    "podSecurityContext.runAsNonRoot=false",
    "dev.postgresql.password=not@url-safe",
    "dev.enabled=maybe",
])
def test_schema_rejects_wrong_values(setting):
    result = helm_template("--set", setting, check=False)
    assert result.returncode != 0, f"--set {setting} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr


def test_schema_accepts_right_values():
    """The counterpart of the rejections: the same keys with good values render."""
    helm_template("--set", "notifier.replicas=3", "--set-string", "auth.image.tag=1",
                  "--set", "auth.env.WEB_CONCURRENCY=4", "--set", "config.logLevel=DEBUG",
                  "--set", "worker.autoscaling.keda.enabled=true", "--set", "gateway.socket.requestTimeout=1h30m",
                  "--set", "notifier.transports={websocket}", "--set", "reports.autoscaling.enabled=true")


@pytest.mark.parametrize("settings, message", [
    (["worker.gracefulTimeoutSeconds=300"], "must be at least worker.jobTimeLimitSeconds"),
    (["config.visibilityTimeoutSeconds=600"], "must exceed worker.jobTimeLimitSeconds"),
    (["worker.terminationGracePeriodSeconds=100"], "shorter than shutdown.preStopSleepSeconds"),
    (["gateway.create=false"], "gateway.parentRefs is required"),
    (["worker.autoscaling.keda.enabled=true", "worker.autoscaling.keda.trigger=prometheus"],
     "serverAddress is required"),
    (["worker.autoscaling.keda.enabled=true", "worker.autoscaling.keda.maxReplicas=1",
      "worker.autoscaling.keda.minReplicas=2"], "maxReplicas must be at least minReplicas"),
])
def test_the_chart_refuses_inconsistent_values(settings, message):
    result = helm_template(*[a for s in settings for a in ("--set", s)], check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def component_pods(objects: list[dict]) -> dict[str, tuple[dict, dict]]:
    namespace = {"kubernetes.io/metadata.name": NAMESPACE}
    pods = {component(pod): (pod["metadata"]["labels"], namespace) for _, pod in pod_templates(objects)}
    def elsewhere(ns: str) -> dict:
        return {"kubernetes.io/metadata.name": ns}
    pods.update({
        "gateway": ({"app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "proxy",
                     "app.kubernetes.io/managed-by": "envoy-gateway"}, elsewhere("envoy-gateway-system")),
        "keda-operator": ({"app.kubernetes.io/name": "keda-operator"}, elsewhere("keda")),
        "prometheus": ({"app.kubernetes.io/name": "prometheus"}, elsewhere("monitoring")),
        "kube-dns": ({"k8s-app": "kube-dns"}, elsewhere("kube-system")),
        "stranger": ({"app": "other"}, namespace),  # a pod of another app in the same namespace
    })
    return pods


def _selects(selector: dict, labels: dict) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(peer: dict, pod: tuple[dict, dict]) -> bool:
    labels, namespace = pod
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        in_namespace = _selects(peer["namespaceSelector"], namespace)
    else:
        in_namespace = namespace == {"kubernetes.io/metadata.name": NAMESPACE}
    return in_namespace and _selects(peer.get("podSelector", {}), labels)


def _side_allows(policies: list[dict], subject, direction: str, other, port: int) -> bool:
    if subject[1] != {"kubernetes.io/metadata.name": NAMESPACE}:
        return True  # pods elsewhere are not this chart's to restrict
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [p for p in policies
                 if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], subject[0])]
    if not selecting:
        return True
    return any((not rule.get(peers_key) or any(_peer_matches(peer, other) for peer in rule[peers_key]))
               and (not rule.get("ports") or any(p["port"] == port for p in rule["ports"]))
               for p in selecting for rule in p["spec"].get(rules_key) or [])


def allowed(policies: list[dict], pods: dict, source: str, target: str, port: int) -> bool:
    return (_side_allows(policies, pods[source], "Egress", pods[target], port)
            and _side_allows(policies, pods[target], "Ingress", pods[source], port))


NEEDED_FLOWS = [
    *[("gateway", s, 8000) for s in ("auth", "reports", "notifier")],
    ("reports", "auth", 8000), ("notifier", "auth", 8000),
    *[(s, "postgresql", 5432) for s in ("auth", "reports", "worker", "migrations")],
    *[(s, "redis", 6379) for s in SERVICES],
    *[(s, "s3", 9000) for s in ("reports", "worker", "gateway")],
    *[("prometheus", s, 8000) for s in SERVICES],
    *[("test", s, 8000) for s in SERVICES],
    *[(s, "kube-dns", 53) for s in (*SERVICES, "migrations", "test")],
]
DENIED_FLOWS = [
    ("gateway", "worker", 8000), ("gateway", "postgresql", 5432), ("gateway", "redis", 6379),
    ("keda-operator", "redis", 6379), ("keda-operator", "postgresql", 5432),
    ("worker", "auth", 8000), ("auth", "reports", 8000), ("notifier", "reports", 8000),
    ("notifier", "postgresql", 5432), ("auth", "s3", 9000), ("notifier", "s3", 9000), ("s3", "redis", 6379),
    ("migrations", "redis", 6379), ("stranger", "auth", 8000), ("stranger", "redis", 6379),
    ("auth", "kube-dns", 8000), ("reports", "postgresql", 6379), ("postgresql", "redis", 6379),
]


@pytest.mark.parametrize("values", ["default-values.yaml", "keda-values.yaml"])
def test_network_policies_allow_the_architecture_and_nothing_else(docs, values):
    """keda-values.yaml: KEDA's operator may reach the dev Redis (its queue trigger), and nothing else."""
    objects = docs[values]
    policies = find(objects, "NetworkPolicy")
    (deny,) = [p for p in policies if p["metadata"]["name"] == f"{RELEASE}-default-deny"]
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]
    pods = component_pods(objects)
    for _, pod in pod_templates(objects):
        assert _selects(deny["spec"]["podSelector"], pod["metadata"]["labels"]), "default deny covers every pod"
    for source, target, port in NEEDED_FLOWS:
        assert allowed(policies, pods, source, target, port), f"{source} -> {target}:{port} is blocked"
    keda = values == "keda-values.yaml"
    assert allowed(policies, pods, "keda-operator", "redis", 6379) == keda
    for source, target, port in DENIED_FLOWS:
        if keda and (source, target) == ("keda-operator", "redis"):
            continue
        assert not allowed(policies, pods, source, target, port), f"{source} -> {target}:{port} is open"


def test_network_policies_reach_external_services_without_dev(docs):
    objects = docs["production-values.yaml"]
    egress = {component(p): p["spec"]["egress"] for p in find(objects, "NetworkPolicy") if component(p)}
    ports = {c: {port["port"] for rule in rules for port in rule.get("ports", [])} for c, rules in egress.items()}
    assert ports["auth"] == {53, 5432, 6379}
    assert ports["reports"] == {53, 8000, 5432, 6379, 443}
    assert ports["worker"] == {53, 5432, 6379, 443}
    assert ports["notifier"] == {53, 8000, 6379}
    assert ports["migrations"] == {53, 5432}
    database_rule = next(r for r in egress["auth"] if r["ports"][0]["port"] == 5432)
    assert database_rule["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]


def test_helm_test_checks_readiness_of_every_service_and_the_jwks(docs):
    objects = docs["default-values.yaml"]
    (job,) = [o for o in find(objects, "Job") if component(o) == "test"]
    assert hook(job)[0] == "test"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    urls = container["args"][1:]
    assert urls[0] == f"http://{RELEASE}-auth:8000/.well-known/jwks.json"
    assert sorted(urls[1:]) == sorted(f"http://{RELEASE}-{s}:8000/readyz" for s in SERVICES)
    compile(container["command"][2], "helm-test", "exec")  # the inline script is valid Python


def test_notes_render_for_every_values_file():
    for values in CI_VALUES:
        notes = run(tool("helm"), "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client",
                    "-f", str(CHART / "ci" / values)).stdout
        assert "helm test reportflow -n reportflow" in notes


# k8s/: the committed render, its Secret script, the kind cluster.

def test_committed_k8s_manifest_is_a_fresh_render(tmp_path):
    fresh = tmp_path / "reportflow.yaml"
    run("bash", str(ROOT / "k8s" / "render.sh"), str(fresh))
    committed = ROOT / "k8s" / "reportflow.yaml"
    assert committed.read_text() == fresh.read_text(), "k8s/reportflow.yaml is stale: run `make k8s-manifest`"
    again = tmp_path / "again.yaml"
    run("bash", str(ROOT / "k8s" / "render.sh"), str(again))
    assert again.read_text() == fresh.read_text(), "the render must not change from run to run"


def test_committed_manifest_holds_no_secret_and_dev_secret_script_provides_its_keys():
    objects = documents((ROOT / "k8s" / "reportflow.yaml").read_text())
    assert not find(objects, "Secret") and "PRIVATE KEY" not in (ROOT / "k8s" / "reportflow.yaml").read_text()
    assert not [o for o in objects if component(o) == "test"], "helm test Job is left out of the render"
    printed = yaml.safe_load(run("bash", str(ROOT / "k8s" / "dev-secret.sh"), "--print").stdout)
    assert (printed["kind"], printed["metadata"]["name"]) == ("Secret", f"{RELEASE}-secrets")
    data = secret_data(printed)
    for kind, name, key, _optional, where in secret_refs(objects):
        assert (kind, name) == ("Secret", printed["metadata"]["name"]), where
        assert key in data, f"{where} reads {key}, which k8s/dev-secret.sh does not create"
    assert isinstance(serialization.load_pem_private_key(data["JWT_PRIVATE_KEY"].encode(), None), Ed25519PrivateKey)
    services = {s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in find(objects, "Service")}
    for url in (urlsplit(data["DATABASE_URL"]), urlsplit(data["REDIS_URL"])):
        assert services[url.hostname] == url.port
    assert urlsplit(data["DATABASE_URL"]).password == data["POSTGRES_PASSWORD"]
    assert urlsplit(data["REDIS_URL"]).password == data["REDIS_PASSWORD"]


def test_kind_config_pins_a_node_that_envoy_gateway_supports():
    config = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    (node,) = config["nodes"]
    assert node["role"] == "control-plane"
    version = re.fullmatch(r"kindest/node:v1\.(\d+)\.\d+@sha256:[0-9a-f]{64}", node["image"])
    assert version and 33 <= int(version.group(1)) <= 36, "Envoy Gateway v1.9 supports Kubernetes 1.33-1.36"
    assert f"1.{version.group(1)}" in KUBE_VERSIONS, "the renders are validated for the node's version"


def test_envoy_gateway_class_is_the_one_the_chart_names():
    objects = documents((ROOT / "k8s" / "envoy-gateway.yaml").read_text())
    (proxy,) = find(objects, "EnvoyProxy")
    (klass,) = find(objects, "GatewayClass")
    assert klass["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    assert klass["spec"]["parametersRef"] == {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy",
                                              "name": proxy["metadata"]["name"],
                                              "namespace": proxy["metadata"]["namespace"]}
    service = proxy["spec"]["provider"]["kubernetes"]["envoyService"]
    assert service == {"name": "reportflow-gateway", "type": "ClusterIP"}
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["gateway"]["className"] == klass["metadata"]["name"]
    namespace = chart["networkPolicy"]["gateway"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    assert namespace == proxy["metadata"]["namespace"], "the proxies run in the controller's namespace"
