"""The chart's pods for real: `helm template` with ci/podman-values.yaml, then `podman kube play` of its pods.

PostgreSQL, Redis and S3 run on the host (started by the test); the pods use the host's network to reach them.
Played: the Secret (as a podman secret), the migration hook's pod (before the services, as pre-install would)
and every Deployment, one pod per replica, each with the rendered image, command, env, securityContext,
resources and volumes. Its probes are run from the host. Left out: what podman cannot run (podman_kit).
In front of the pods, as a gateway would be: nginx stand-ins generated from the render's HTTPRoutes (what
Envoy Gateway would run) and from its Ingress (ci/ingress-values.yaml's annotations); the Postman collection
(newman) and the demo page (Chromium) go through each. The tests run in this order: they end by stopping every
container.
"""
from __future__ import annotations

import errno
import io
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pytest
import requests
import yaml
from e2e.test_browser import sessions
from e2e.test_postman import newman, run_collection  # noqa: F401 (newman: the fixture)
from playwright.sync_api import expect

from containers.podman_kit import (
    CHART,
    PLAYED_KINDS,
    SKIPPED_KINDS,
    Podman,
    PodPlan,
    component,
    create_secret,
    for_podman,
    images,
    in_container,
    play,
    render,
    run_to_completion,
    stop,
    wait_ready,
)
from reportflow_worker.builders.demo import TOTAL_LABEL
from support.browser import row, signed_in_page, start_report, toast, toasts
from support.clients import Api, SocketClient
from support.ingress import Ingress
from support.ingress import render as stand_in
from support.stack import generate_private_key_pem
from support.waiting import free_port, wait_until

pytestmark = pytest.mark.timeout(600)  # the first test's setup may build the base and the images (~3 min here)

PODMAN_VALUES = CHART / "ci" / "podman-values.yaml"
INGRESS_VALUES = CHART / "ci" / "ingress-values.yaml"  # the Ingress with ingress-nginx's annotations
ORDER = ("auth", "reports", "worker", "notifier")  # auth first: the others fetch its JWKS
STAND_INS = ("gateway", "ingress", "websocket")  # from the HTTPRoutes, the Ingress, a WebSocket-only render's routes
S = 1000  # Playwright timeouts are in ms


@dataclass
class Release:
    name: str
    values: list[Path]
    docs: list[dict]
    workdir: Path
    redis_url: str
    ports: dict[str, int] = field(default_factory=dict)  # chosen before the render when a value needs them
    pods: dict[str, list[PodPlan]] = field(default_factory=dict)
    stand_in_ports: dict[str, int] = field(default_factory=dict)

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
    stand_in_ports = {name: free_port() for name in STAND_INS}
    host_values = workdir / "host-values.yaml"  # this run's servers, in place of podman-values' placeholders
    host_values.write_text(yaml.safe_dump({
        "image": {"tag": images.tag()},  # what scripts/images.py built (REPORTFLOW_IMAGE_TAG)
        "secrets": {"databaseUrl": postgres.url, "redisUrl": redis_server.url,
                    "jwtPrivateKey": generate_private_key_pem(), "s3AccessKeyId": "test", "s3SecretAccessKey": "test"},
        "storage": {"bucket": s3.bucket, "endpointUrl": s3.url, "publicEndpointUrl": s3.url},
        # Each notifier pod is its own origin here, and so is each stand-in (in a cluster: public.url).
        "notifier": {"allowedOrigins": [f"http://127.0.0.1:{port}"
                                        for port in [*notifier_ports.values(), *stand_in_ports.values()]]},
        "gateway": {"enabled": True},  # ingress-values.yaml switches it off: the HTTPRoutes and the Ingress both
    }))
    rel = Release(f"rfc{uuid.uuid4().hex[:6]}", [PODMAN_VALUES, INGRESS_VALUES, host_values], [], workdir,
                  redis_server.url, notifier_ports, stand_in_ports=stand_in_ports)
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


def _hostport(plan: PodPlan) -> str:
    return plan.url.removeprefix("http://")


def start_stand_in(release: Release, name: str, docs: list[dict], source: str, notifiers: list[PodPlan]) -> Ingress:
    """nginx in front of the pods, configured from the render's HTTPRoutes (source "gateway") or Ingress."""
    upstreams = {"auth": [_hostport(p) for p in release.pods["auth"]],
                 "reports": [_hostport(p) for p in release.pods["reports"]],
                 "notifier": [_hostport(p) for p in notifiers]}
    routes = tuple(stand_in.chart_routes(docs, source))
    return Ingress(release.workdir, upstreams, port=release.stand_in_ports[name], routes=routes).start()


@pytest.fixture(scope="module")
def stand_ins(release):
    started = {}
    try:
        for source in ("gateway", "ingress"):
            started[source] = start_stand_in(release, source, release.docs, source, release.pods["notifier"])
        yield started
    finally:
        for ingress in started.values():
            ingress.stop()


def test_the_stand_ins_are_the_renders_routes_and_only_the_socket_is_sticky(release, stand_ins):
    for source, ingress in stand_ins.items():
        assert {r.kind for r in ingress.routes} == {"HTTPRoute" if source == "gateway" else "Ingress"}
        assert {r.cookie for r in ingress.routes if r.component == "notifier" and r.path == "/socket.io"} == {"rfsid"}
        assert not [r for r in ingress.routes if r.cookie and r.component != "notifier"]
        for path, status in (("/.well-known/jwks.json", 200), ("/v1/reports", 401), ("/", 200), ("/metrics", 404)):
            assert requests.get(ingress.url + path, timeout=10).status_code == status, (source, path)


@pytest.mark.parametrize("source", ["gateway", "ingress"])
def test_the_postman_collection_passes_through_each_stand_in(newman, stand_ins, source, tmp_path):  # noqa: F811
    run_collection(newman, tmp_path, f"baseUrl={stand_ins[source].url}")


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
@pytest.mark.parametrize("source", ["gateway", "ingress"])
def test_the_demo_page_works_through_each_stand_in(browser, stand_ins, source, transports, tmp_path):
    """Long-polling across two notifier pods works only if the stand-in keeps each session on one pod: the
    HTTPRoute's sessionPersistence cookie and the Ingress's affinity annotations both do."""
    site = stand_ins[source]
    user = Api(site.url, site.url).new_user()
    mark = len(site.access_log())
    page = signed_in_page(browser, site.url, user, transports=transports)
    try:
        report = start_report(page, rows=5000, columns=4)
        expect(toast(page, "report.succeeded", report)).to_have_count(1, timeout=60 * S)
        assert toasts(page) == [("report.succeeded", report)]
        with page.expect_download(timeout=30 * S) as download:
            row(page, report).locator("button.download").click()
        download.value.save_as(saved := tmp_path / download.value.suggested_filename)
        rows = list(openpyxl.load_workbook(saved, read_only=True).active.iter_rows(values_only=True))
        assert len(rows) == 5000 + 2 and rows[-1][0] == TOTAL_LABEL
    finally:
        page.context.close()

    def socket_log():
        return [x for x in site.access_log()[mark:] if "/socket.io/" in x]
    wait_until(lambda: {m for x in socket_log() for m in re.findall(r"transport=(\w+)", x)} == {transports[0]}, 10,
               f"{transports[0]} requests, and only those, in the stand-in's access log")
    assert not [x for x in socket_log() if " 400 " in x], socket_log()
    assert all(len(ups) == 1 for ups in sessions(socket_log()).values()), sessions(socket_log())


def test_a_websocket_only_notifier_works_through_routes_without_stickiness(release, podman, browser):
    """notifier.transports [websocket]: the HTTPRoute has no session persistence, two such notifier pods sit
    behind a round-robin stand-in, polling is refused, and the demo page (WebSocket first) works."""
    docs = render(release.name, release.values, "notifier.transports={websocket}")
    started, site = [], None
    try:
        started += start_pods(podman, release, "notifier", docs, ["ws0", "ws1"])
        site = start_stand_in(release, "websocket", docs, "gateway", started)
        assert not [r for r in site.routes if r.cookie], "nothing is sticky"
        polling = requests.get(site.url + "/socket.io/?EIO=4&transport=polling", timeout=10)
        assert polling.status_code == 400 and "set-cookie" not in polling.headers, polling.text
        user = Api(site.url, site.url).new_user()
        sockets = [SocketClient(site.url, user.token).connect() for _ in range(4)]  # round-robin over both pods
        page = signed_in_page(browser, site.url, user)  # the page's own transports: WebSocket first
        try:
            report = start_report(page, rows=2000, columns=3)
            expect(toast(page, "report.succeeded", report)).to_have_count(1, timeout=60 * S)
            for sock in sockets:
                sock.wait_for(_succeeded(report), 60, "report.succeeded on every socket")
        finally:
            page.context.close()
            for sock in sockets:
                sock.disconnect()

        def upgraded_to() -> set[str]:  # nginx logs a WebSocket when it closes
            return {re.search(r"upstream=(\S+)", x).group(1) for x in site.access_log()
                    if "/socket.io/" in x and " 101 " in x}
        wait_until(lambda: upgraded_to() == {_hostport(p) for p in started}, 15, "WebSockets to both notifier pods")
    finally:
        if site:
            site.stop()
        for plan in started:
            podman("pod", "rm", "-f", "-t", "0", plan.pod, check=False)


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
        try:  # the doorbell, or the reconciler's second ring (REQUEUE_AFTER_SECONDS, 30 s), starts it
            wait_until(_running_with_progress(user, rep["id"]), 90, "the job to run in the doomed container")
        except AssertionError as exc:  # seen once in CI (2026-12-06): say where the job and the worker were
            raise AssertionError(f"{exc}; report: {user.get(rep['id'])}; doomed worker's log (end): "
                                 f"{podman.logs(started[0].container)[-4000:]}") from None
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


@pytest.mark.timeout(900)  # beyond the worker's 615 s grace: a stop that overruns fails with its state and logs
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
