"""podman for the container tests: the CLI with the environment scripts/images.py gives it, removal of what
the tests created (by name, nothing else), and the chart's objects as podman 4.3's `kube play` can run them.

What podman cannot run is left out on purpose (SKIPPED_KINDS): Services and cluster DNS, the Gateway, its
HTTPRoutes and the Ingress (the tests put nginx stand-ins generated from them in front), NetworkPolicy,
PodDisruptionBudget, ServiceAccount, and Jobs (the migration hook is played as a Pod from the Job's template;
`helm test` needs Service DNS). The few edits made to the pod specs are all in `for_podman` and each says why.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from support.waiting import GiveUp, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "reportflow"

_spec = importlib.util.spec_from_file_location("reportflow_images", ROOT / "scripts" / "images.py")
images = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(images)

PLAYED_KINDS = {"Deployment", "ConfigMap", "Secret"}
# Gateway, HTTPRoute and Ingress: no gateway runs under podman; the tests build nginx stand-ins from them.
SKIPPED_KINDS = {"Service", "Ingress", "Gateway", "HTTPRoute", "NetworkPolicy", "PodDisruptionBudget",
                 "ServiceAccount", "Job", "HorizontalPodAutoscaler"}


class Podman:
    """Runs podman; remembers every pod, container, secret and volume the tests create, and removes them."""

    def __init__(self):
        self.env = images.podman_env()
        self.created: dict[str, list[str]] = {"pod": [], "container": [], "secret": [], "volume": []}

    def __call__(self, *args: str, check: bool = True, timeout: float = 180, stdin: str | None = None):
        run = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                             input=stdin)
        if check and run.returncode:
            raise AssertionError(f"podman {' '.join(args)} exited {run.returncode}:\n{run.stdout}\n{run.stderr}")
        return run

    def own(self, kind: str, name: str) -> str:
        self.created[kind].append(name)
        return name

    def state(self, container: str) -> dict:
        return json.loads(self("inspect", "--type", "container", "--format", "{{json .State}}", container).stdout)

    def logs(self, container: str, lines: int = 60) -> str:
        run = self("logs", "--tail", str(lines), container, check=False)
        return run.stdout + run.stderr

    def cleanup(self) -> None:
        """Remove everything created so far (and forget it: a second call does nothing)."""
        for kind, argv in (("container", ["rm", "-f", "-t", "0"]), ("pod", ["pod", "rm", "-f", "-t", "0"]),
                           ("volume", ["volume", "rm", "-f"]), ("secret", ["secret", "rm"])):
            while self.created[kind]:
                self(*argv, self.created[kind].pop(), check=False)


def helm() -> str:
    found = shutil.which("helm", path=os.pathsep.join([str(ROOT / ".tools" / "bin"), os.environ.get("PATH", "")]))
    if not found:
        raise AssertionError("helm is not installed: `make tools` installs it")
    return found


def render(release: str, values: list[Path], *sets: str) -> list[dict]:
    argv = [helm(), "template", release, str(CHART), "--namespace", "reportflow"]
    for path in values:
        argv += ["-f", str(path)]
    for item in sets:
        argv += ["--set", item]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def component(doc: dict) -> str:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")


def create_secret(podman: Podman, secret: dict) -> str:
    """Podman 4.3's secretKeyRef reads a podman secret holding the Secret's `data` map as JSON (base64 values);
    its own `kube play` of a Secret stores the whole YAML document, which secretKeyRef then rejects."""
    name = podman.own("secret", secret["metadata"]["name"])
    podman("secret", "create", name, "-", stdin=json.dumps(secret.get("data", {})))
    return name


@dataclass
class PodPlan:
    doc: dict           # what is played
    pod: str            # podman's pod name
    containers: list[str]
    port: int
    probes: dict = field(default_factory=dict)  # the spec's probes, run from the host
    grace: int = 30     # terminationGracePeriodSeconds

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def container(self) -> str:
        return self.containers[0]


def for_podman(workload: dict, suffix: str, port: int, auth_url: str | None = None) -> PodPlan:
    """One pod of a Deployment (or a Job's template) for `podman kube play`, with the host's network.

    Kubernetes gives every pod its own address and resolves Service names; here all pods share the host's
    network, where PostgreSQL, Redis and S3 are. So each pod gets its own port and the auth Service's address
    becomes auth's port on 127.0.0.1. Everything else (image, command, env, securityContext, resources,
    volumes) is played as rendered."""
    doc = copy.deepcopy(workload)
    if doc["kind"] == "Job":  # the migration hook: its pod template as a Pod
        doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {**doc["spec"]["template"]["metadata"],
                                                               "name": doc["metadata"]["name"]},
               "spec": doc["spec"]["template"]["spec"]}
    doc["metadata"]["name"] = name = f"{doc['metadata']['name']}-{suffix}"
    if doc["kind"] == "Deployment":
        doc["spec"]["replicas"] = 1  # podman plays one pod per Deployment: a replica is one more play
        spec, pod = doc["spec"]["template"]["spec"], f"{name}-pod-0"
    else:
        spec, pod = doc["spec"], name
    spec["hostNetwork"] = True
    probes = {}
    for c in spec["containers"]:
        # podman 4.3 refuses port mappings on the host network; the probes it would derive are `curl` commands
        # (the images have no curl, a named port becomes 0, and without systemd they never run): the test
        # runs the spec's probes itself, from the host, against the pod's port.
        c.pop("ports", None)
        probes.update({k: c.pop(k) for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in c})
        env = {e["name"]: e for e in c.get("env", [])}
        if "PORT" in env or doc["kind"] == "Deployment":
            env.setdefault("PORT", {"name": "PORT"})["value"] = str(port)
            env.setdefault("HOST", {"name": "HOST"})["value"] = "127.0.0.1"  # the host's network: loopback only
        if "JWKS_URL" in env:
            assert auth_url, "auth must be up before the services that verify its tokens"
            env["JWKS_URL"]["value"] = f"{auth_url}/.well-known/jwks.json"
        c["env"] = list(env.values())
    # podman 4.3 makes an emptyDir a named volume called by the volume's name, shared by every pod that uses
    # the same name (all of ours say "tmp" and "metrics"): one name per pod keeps them private, as in Kubernetes.
    renamed = {v["name"]: f"{pod}-{v['name']}" for v in spec.get("volumes", [])}
    for v in spec.get("volumes", []):
        v["name"] = renamed[v["name"]]
    for c in spec["containers"]:
        for m in c.get("volumeMounts", []):
            m["name"] = renamed[m["name"]]
    return PodPlan(doc, pod, [f"{pod}-{c['name']}" for c in spec["containers"]], port, probes,
                   int(spec.get("terminationGracePeriodSeconds", 30)))


def play(podman: Podman, plan: PodPlan, workdir: Path, config_maps: list[dict] = ()) -> PodPlan:
    """`podman kube play` of one pod, with the render's ConfigMaps beside it (podman resolves references only
    within one file; a ConfigMap alone is not something podman runs)."""
    podman.own("pod", plan.pod)
    spec = plan.doc["spec"]["template"]["spec"] if plan.doc["kind"] == "Deployment" else plan.doc["spec"]
    for v in spec.get("volumes", []):
        podman.own("volume", v["name"])
    path = workdir / f"{plan.pod}.yaml"
    path.write_text(yaml.safe_dump_all([*config_maps, plan.doc]))
    podman("kube", "play", str(path))
    return plan


def _probe_url(plan: PodPlan, probe: dict) -> str:
    return f"{plan.url}{probe['httpGet']['path']}"


def wait_ready(podman: Podman, plan: PodPlan) -> PodPlan:
    """The spec's startup probe (its whole failureThreshold x periodSeconds budget), then its readiness probe."""
    startup, ready = plan.probes["startupProbe"], plan.probes["readinessProbe"]

    def probe(p: dict) -> bool:
        state = podman.state(plan.container)
        if state["Status"] != "running":
            raise GiveUp(f"{plan.container} is {state['Status']} (exit {state['ExitCode']}):\n"
                         f"{podman.logs(plan.container)}")
        return requests.get(_probe_url(plan, p), timeout=p.get("timeoutSeconds", 1)).status_code == 200

    budget = startup.get("failureThreshold", 3) * startup.get("periodSeconds", 10)
    try:
        wait_until(lambda: probe(startup), budget, f"{plan.pod} startup probe", interval=0.2)
        wait_until(lambda: probe(ready), ready.get("periodSeconds", 10) * ready.get("failureThreshold", 3),
                   f"{plan.pod} readiness probe", interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- {plan.container} ---\n{podman.logs(plan.container)}") from None
    return plan


def run_to_completion(podman: Podman, plan: PodPlan, workdir: Path, timeout: float = 120) -> dict:
    """Play a run-once pod (restartPolicy Never) and wait for its container to exit."""
    play(podman, plan, workdir)
    state = wait_until(lambda: (s := podman.state(plan.container))["Status"] == "exited" and s, timeout,
                       f"{plan.container} to finish")
    state["logs"] = podman.logs(plan.container)
    return state


def stop(podman: Podman, container: str, grace: int) -> tuple[float, dict]:
    """SIGTERM, SIGKILL after `grace` seconds (what the kubelet does): (seconds it took, final state).
    Passed explicitly: podman 4.3 leaves a played container's stop timeout at 10 s, whatever
    terminationGracePeriodSeconds says (so `podman kube down` would kill a worker mid-job)."""
    start = time.monotonic()
    try:
        podman("stop", "-t", str(grace), container, timeout=grace + 30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{container} still not stopped {grace + 30} s after SIGTERM: "
                             f"{podman.state(container)}\n{podman.logs(container)}") from None
    return time.monotonic() - start, podman.state(container)


def in_container(podman: Podman, container: str, code: str) -> dict:
    """Run Python in a running container (its own interpreter, its own user) and return what it prints as JSON."""
    run = podman("exec", container, "/venv/bin/python", "-c", code)
    return json.loads(run.stdout)
