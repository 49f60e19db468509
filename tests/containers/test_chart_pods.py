"""The chart's pods for real: `helm template` with ci/podman-values.yaml, then `podman kube play` of its pods.

PostgreSQL, Redis and S3 run on the host (started by the test); the pods use the host's network to reach them.
Played: the Secret (as a podman secret), the migration hook's pod (before the services, as pre-install would)
and every Deployment, one pod per replica, each with the rendered image, command, env, securityContext,
resources and volumes. Its probes are run from the host. Left out: what podman cannot run (podman_kit).
The tests run in this order: they end by stopping every container.
"""
from __future__ import annotations

import errno
import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pytest
import requests
import yaml

from containers.podman_kit import (
    CHART,
    PLAYED_KINDS,
    SKIPPED_KINDS,
    Podman,
    PodPlan,
    component,
    create_secret,
    for_podman,
    in_container,
    play,
    render,
    run_to_completion,
    stop,
    wait_ready,
)
from reportflow_worker.builders.demo import TOTAL_LABEL
from support.clients import Api, SocketClient
from support.stack import generate_private_key_pem
from support.waiting import free_port, wait_until

pytestmark = pytest.mark.timeout(600)  # the first test's setup may build the base and the images (~3 min here)

PODMAN_VALUES = CHART / "ci" / "podman-values.yaml"
ORDER = ("auth", "reports", "worker", "notifier")  # auth first: the others fetch its JWKS


@dataclass
class Release:
    name: str
    values: list[Path]
    docs: list[dict]
    workdir: Path
    redis_url: str
    ports: dict[str, int] = field(default_factory=dict)  # chosen before the render when a value needs them
    pods: dict[str, list[PodPlan]] = field(default_factory=dict)

    def api(self) -> Api:
        return Api(self.pods["auth"][0].url, self.pods["reports"][0].url)

    def all(self) -> list[PodPlan]:
        return [plan for name in ORDER for plan in self.pods[name]]


def deployment(docs: list[dict], name: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == "Deployment" and component(d) == name]
    return found


def start_pods(podman: Podman, release: Release, name: str, docs: list[dict], suffixes=None) -> list[PodPlan]:
    dep = deployment(docs, name)
    auth = release.pods.get("auth")
    suffixes = suffixes or [str(i) for i in range(dep["spec"].get("replicas", 1))]
    config_maps = [d for d in docs if d["kind"] == "ConfigMap"]
    plans = [play(podman, for_podman(dep, s, release.ports.pop(f"{name}-{s}", None) or free_port(),
                                     auth[0].url if auth else None), release.workdir, config_maps)
             for s in suffixes]
    return [wait_ready(podman, plan) for plan in plans]


@pytest.fixture(scope="module")
def release(podman, host_servers, tmp_path_factory):
    postgres, redis_server, s3 = host_servers
    workdir = tmp_path_factory.mktemp("chart-pods")
    replicas = yaml.safe_load(PODMAN_VALUES.read_text())["notifier"]["replicas"]
    notifier_ports = {f"notifier-{i}": free_port() for i in range(replicas)}
    host_values = workdir / "host-values.yaml"  # this run's servers, in place of podman-values' placeholders
    host_values.write_text(yaml.safe_dump({
        "secrets": {"databaseUrl": postgres.url, "redisUrl": redis_server.url,
                    "jwtPrivateKey": generate_private_key_pem(), "s3AccessKeyId": "test", "s3SecretAccessKey": "test"},
        "storage": {"bucket": s3.bucket, "endpointUrl": s3.url, "publicEndpointUrl": s3.url},
        # Each notifier pod is its own origin here (in a cluster: ingress.publicUrl); clients send their URL.
        "notifier": {"allowedOrigins": [f"http://127.0.0.1:{port}" for port in notifier_ports.values()]},
    }))
    rel = Release(f"rfc{uuid.uuid4().hex[:6]}", [PODMAN_VALUES, host_values], [], workdir, redis_server.url,
                  notifier_ports)
    rel.docs = render(rel.name, rel.values)
    kinds = {d["kind"] for d in rel.docs}
    assert not kinds - PLAYED_KINDS - SKIPPED_KINDS, f"kinds neither played nor knowingly left out: {kinds}"
    try:
        (secret,) = [d for d in rel.docs if d["kind"] == "Secret"]
        create_secret(podman, secret)
        (job,) = [d for d in rel.docs if d["kind"] == "Job" and component(d) == "migrations"]
        migrated = run_to_completion(podman, for_podman(job, "run", 0), workdir)
        assert migrated["ExitCode"] == 0, migrated["logs"]
        for name in ORDER:
            rel.pods[name] = start_pods(podman, rel, name, rel.docs)
        yield rel
    finally:
        podman.cleanup()


def quantity(text: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(text[:-2]) * units[text[-2:]] if text[-2:] in units else int(text)


def _succeeded(report_id):
    return lambda name, p: name == "report.succeeded" and p["report_id"] == report_id


def _running_with_progress(user, report_id):
    return lambda: (r := user.get(report_id))["status"] == "running" and r["progress"] > 0 and r


def test_every_pod_runs_the_rendered_spec(release, podman):
    for plan in release.all():
        (spec_container,) = plan.doc["spec"]["template"]["spec"]["containers"]
        sc, limits = spec_container["securityContext"], spec_container["resources"]["limits"]
        got = podman("inspect", "--type", "container", "--format",
                     "{{.ImageName}}|{{json .Config.Entrypoint}}|{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|"
                     "{{.HostConfig.Memory}}|{{.State.Status}}", plan.container).stdout.strip().split("|")
        image, command, user, read_only, memory, status = got
        assert image == spec_container["image"] and status == "running"
        assert command.strip('"[]') == spec_container["command"][0], command
        assert user == f"{sc['runAsUser']}:{sc['runAsGroup']}" and read_only == "true"
        assert int(memory) == quantity(limits["memory"]), (plan.pod, memory)
        # the liveness probe, as the kubelet would call it
        live = plan.probes["livenessProbe"]["httpGet"]["path"]
        assert requests.get(plan.url + live, timeout=5).status_code == 200, plan.pod


def test_two_users_notifications_download_and_isolation(release):
    api = release.api()
    alice, bob = api.new_user(), api.new_user()
    notifiers = release.pods["notifier"]
    assert len(notifiers) == 2
    socks = {u.email: [SocketClient(n.url, u.token).connect() for n in notifiers] for u in (alice, bob)}
    try:
        a = alice.create({"rows": 3000, "columns": 6, "seed": 7})
        b = bob.create({"rows": 2000, "columns": 4, "seed": 8})
        for user, rep in ((alice, a), (bob, b)):
            for sock in socks[user.email]:  # both notifier pods: events cross pods through Redis
                sock.wait_for(_succeeded(rep["id"]), 90, f"{user.email}'s report.succeeded")
                assert {p["report_id"] for _n, p in sock.events} == {rep["id"]}, "only one's own reports"
    finally:
        for sock in [s for group in socks.values() for s in group]:
            sock.disconnect()

    r = alice.request("GET", f"/v1/reports/{a['id']}/download", allow_redirects=False)
    assert r.status_code == 302, r.text
    file = requests.get(r.headers["Location"], timeout=30)  # presigned for S3_PUBLIC_ENDPOINT_URL
    assert file.status_code == 200
    rows = list(openpyxl.load_workbook(io.BytesIO(file.content), read_only=True).active.iter_rows(values_only=True))
    assert len(rows) == 1 + 3000 + 1 and rows[-1][0] == TOTAL_LABEL

    for path in (f"/v1/reports/{a['id']}", f"/v1/reports/{a['id']}/download"):
        assert bob.request("GET", path, allow_redirects=False).status_code == 404
    assert [x["id"] for x in bob.request("GET", "/v1/reports").json()["items"]] == [b["id"]]


PROBE = """
import json, os
def write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.remove(path)
        return True
    except OSError as exc:
        return exc.errno
status = dict(line.split(":", 1) for line in open("/proc/1/status") if ":" in line)
print(json.dumps({"uid": os.getuid(), "pid1": status["Uid"].split(), "cap_eff": status["CapEff"].strip(),
                  "no_new_privs": status["NoNewPrivs"].strip(), "root": write("/rf-probe"),
                  "venv": write("/venv/rf-probe"), "tmp": write("/tmp/rf-probe"),
                  "metrics": write(os.environ["PROMETHEUS_MULTIPROC_DIR"] + "/rf-probe")}))
"""


def test_each_container_is_non_root_unprivileged_and_read_only(release, podman):
    for plan in release.all():
        seen = in_container(podman, plan.container, PROBE)
        uid = plan.doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"]
        assert seen["uid"] == uid != 0 and set(seen["pid1"]) == {str(uid)}, (plan.pod, seen)
        assert seen["cap_eff"] == "0000000000000000" and seen["no_new_privs"] == "1", (plan.pod, seen)
        assert seen["root"] == seen["venv"] == errno.EROFS, (plan.pod, seen)
        assert seen["tmp"] is True and seen["metrics"] is True, (plan.pod, seen)  # the emptyDir volumes


def test_worker_container_killed_mid_job_leaves_the_job_to_another(release, podman):
    """SIGKILL of the whole worker container: nothing renews the job's lease any more, so the next worker's
    reconciler takes the job back once the lease (5 s here, by values) has run out, and runs it."""
    user = release.api().new_user()
    (worker,) = release.pods["worker"]
    stop(podman, worker.container, worker.grace)  # only the doomed worker may take the job
    docs = render(release.name, release.values, "worker.env.JOB_LEASE_SECONDS=5",
                  "worker.env.RECONCILE_INTERVAL_SECONDS=1", "worker.env.WORKER_CONCURRENCY=1")
    started = []
    try:
        started += start_pods(podman, release, "worker", docs, ["doomed"])
        rep = user.create({"rows": 400_000, "columns": 8, "seed": 4})
        wait_until(_running_with_progress(user, rep["id"]), 60, "the job to run in the doomed container")
        podman("kill", "-s", "KILL", started[0].container)
        wait_until(lambda: podman.state(started[0].container)["Status"] == "exited", 15, "the container to die")
        assert user.get(rep["id"])["status"] == "running", "not failed, not lost: its lease runs out first"
        started += start_pods(podman, release, "worker", docs, ["replacement"])
        done = user.wait_status(rep["id"], ("succeeded", "failed"), 180)
        assert done["status"] == "succeeded" and done["rows"] == 400_000, done
    finally:
        for plan in started:
            podman("pod", "rm", "-f", "-t", "0", plan.pod, check=False)
        podman("start", worker.container)
        wait_ready(podman, worker)


def test_sigterm_stops_every_container_within_its_grace_period(release, podman):
    """What the kubelet does (SIGTERM, SIGKILL after terminationGracePeriodSeconds): each exits 0 in time; the
    worker, stopped mid-job, finishes the job first (it fits in the grace period: no hand-back)."""
    user = release.api().new_user()
    rep = user.create({"rows": 60_000, "columns": 8, "seed": 9})
    wait_until(_running_with_progress(user, rep["id"]), 60, "a job to be running")
    (worker,) = release.pods["worker"]
    order = [worker] + [p for p in release.all() if p is not worker]
    for plan in order:
        seconds, state = stop(podman, plan.container, plan.grace)
        assert state["ExitCode"] == 0 and not state["OOMKilled"], (plan.pod, state, podman.logs(plan.container))
        assert seconds < plan.grace, f"{plan.pod} took {seconds:.1f} s of its {plan.grace} s"
        if plan is worker:
            assert user.get(rep["id"])["status"] == "succeeded", "the job cut short by the stop"
