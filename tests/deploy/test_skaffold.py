"""skaffold.yaml: valid for skaffold/v4beta14, builds the four images, and deploys the chart with them.

skaffold itself is not installable here: the file is checked against skaffold's published JSON schema and
its helm values are fed to `helm template` the way skaffold would set them.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT.parent / "shared" / "schemas" / "skaffold-v4beta14.json"  # the shared folder beside the repository
SERVICES = ("auth", "reports", "worker", "notifier")
TIMEOUT = 60


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "skaffold.yaml").read_text())


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(ROOT / ".tools" / "bin"), os.environ.get("PATH", "")])
    binary = shutil.which("helm", path=path)
    if not binary:
        pytest.fail("helm is not installed: `make tools` installs it")
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=TIMEOUT)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)}:\n{result.stderr}")
    return result


def test_validates_against_the_v4beta14_schema(config, validator):
    assert config["apiVersion"] == "skaffold/v4beta14"
    errors = [e.message for e in validator.iter_errors(config)]
    assert not errors, errors


def test_the_schema_check_catches_mistakes(config, validator):
    """The schema is strict enough to matter: a misspelt field and a wrong type are both refused."""
    misspelt = copy.deepcopy(config)
    misspelt["deploy"]["helm"]["releases"][0]["chartpath"] = "charts/reportflow"
    wrong_type = copy.deepcopy(config)
    wrong_type["build"]["artifacts"][0]["docker"]["dockerfile"] = ["services/Dockerfile"]
    for broken in (misspelt, wrong_type):
        assert not validator.is_valid(broken)


def test_builds_the_four_images_from_the_repository_root(config):
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert sorted(artifacts) == sorted(f"localhost/reportflow-{s}" for s in SERVICES)
    for service in SERVICES:
        artifact = artifacts[f"localhost/reportflow-{service}"]
        assert artifact.get("context", ".") == "."
        assert artifact["docker"]["dockerfile"] == "services/Dockerfile"
        assert artifact["docker"]["buildArgs"] == {"SERVICE": service}
        assert (ROOT / artifact["docker"]["dockerfile"]).is_file()
    assert config["build"]["local"]["push"] is False, "kind and minikube get the images without a registry"


def template_key(image: str) -> str:
    """skaffold's name for an image in templates: / and - (and .) become _."""
    return re.sub(r"[/.\-:]", "_", image)


def release(config: dict) -> dict:
    (only,) = config["deploy"]["helm"]["releases"]
    return only


def test_deploys_the_chart_with_the_built_images(config):
    r = release(config)
    assert (ROOT / r["chartPath"] / "Chart.yaml").is_file()
    assert r["namespace"] == "reportflow" and r["createNamespace"] is True
    expected = {}
    for service in SERVICES:
        key = template_key(f"localhost/reportflow-{service}")
        expected[f"{service}.image.repository"] = f"{{{{.IMAGE_REPO_{key}}}}}"
        expected[f"{service}.image.tag"] = f"{{{{.IMAGE_TAG_{key}}}}}"
    assert r["setValueTemplates"] == expected


TAG = "0f3a9c" + "e" * 58  # what the inputDigest tagger gives: 64 hex characters


def fill(template: str, config: dict) -> str:
    """A setValueTemplates value as skaffold fills it for the built artifacts."""
    for artifact in config["build"]["artifacts"]:
        key = template_key(artifact["image"])
        template = template.replace(f"{{{{.IMAGE_REPO_{key}}}}}", artifact["image"])
        template = template.replace(f"{{{{.IMAGE_TAG_{key}}}}}", TAG)
    assert "{{" not in template, f"{template} names no built artifact"
    return template


def render_like_skaffold(config: dict, profile: str | None = None) -> list[dict]:
    """`helm template` with the --set flags skaffold would pass (profile patches to setValues applied)."""
    r = copy.deepcopy(release(config))
    if profile:
        (p,) = [p for p in config["profiles"] if p["name"] == profile]
        for patch in p.get("patches", []):
            if patch["path"] == "/deploy/helm/releases/0/setValues":
                r["setValues"] = patch["value"]
    sets = []
    for key, template in r["setValueTemplates"].items():
        sets += ["--set", f"{key}={fill(template, config)}"]
    for key, value in r.get("setValues", {}).items():
        sets += ["--set", f"{key}={value}"]
    out = helm("template", r["name"], str(ROOT / r["chartPath"]), "-n", r["namespace"], *sets).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("profile", [None, "kind", "minikube"])
def test_chart_renders_with_skaffolds_values(config, profile):
    objects = render_like_skaffold(config, profile)
    images = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
              for d in objects if d["kind"] == "Deployment"}
    for service in SERVICES:
        assert images[f"reportflow-{service}"] == f"localhost/reportflow-{service}:{TAG}"
    if profile == "minikube":
        wanted = ("Deployment", "reportflow-notifier")
        (notifier,) = [d for d in objects if (d["kind"], d["metadata"]["name"]) == wanted]
        env = {e["name"]: e.get("value") for e in notifier["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["SOCKETIO_ALLOWED_ORIGINS"] == "http://reportflow.localhost:8080"


def test_tags_cannot_be_all_digits(config):
    """helm --set turns an all-digit tag into a number, which the chart's schema refuses as a tag: the
    inputDigest tagger (64 hex digits) never produces one, unlike a 7-character git commit prefix may."""
    assert config["build"]["tagPolicy"] == {"inputDigest": {}}


def test_profiles_and_port_forwards_match_the_cluster_and_the_chart(config):
    profiles = {p["name"]: p for p in config["profiles"]}
    kind_cluster = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())["name"]
    assert profiles["kind"]["activation"] == [{"kubeContext": f"kind-{kind_cluster}"}]
    assert profiles["minikube"]["activation"] == [{"kubeContext": "minikube"}]
    objects = render_like_skaffold(config)
    services = {d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]}
                for d in objects if d["kind"] == "Service"}
    forwards = config["portForward"]
    (gateway,) = [f for f in forwards if f["namespace"] != "reportflow"]
    own = [f for f in forwards if f is not gateway]
    assert {f["resourceName"] for f in own} == {f"reportflow-{s}" for s in SERVICES}
    for forward in own:
        assert forward["resourceType"] == "service"
        assert forward["port"] in services[forward["resourceName"]]
    assert len({f["localPort"] for f in forwards}) == len(forwards)
    # The gateway's proxy: the Service that k8s/envoy-gateway.yaml names, on the Gateway's listener port, to
    # the local port of the chart's public.url.
    envoy = next(d for d in yaml.safe_load_all((ROOT / "k8s" / "envoy-gateway.yaml").read_text())
                 if d["kind"] == "EnvoyProxy")
    assert (gateway["resourceType"], gateway["namespace"]) == ("service", envoy["metadata"]["namespace"])
    assert gateway["resourceName"] == envoy["spec"]["provider"]["kubernetes"]["envoyService"]["name"]
    (gw,) = [d for d in objects if d["kind"] == "Gateway"]
    assert gateway["port"] == gw["spec"]["listeners"][0]["port"]
    chart = yaml.safe_load((ROOT / "charts" / "reportflow" / "values.yaml").read_text())
    assert chart["public"]["url"].endswith(f":{gateway['localPort']}")
