"""The Grafana dashboard, its provisioning and the Prometheus alert rules, checked without servers:
promtool parses the rules and runs their unit tests, the dashboard is well-formed Grafana JSON whose every
panel uses the datasource variable, and every metric either names is one the services define."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/rules/reportflow.rules.yml"
RULES_TEST = ROOT / "deploy/prometheus/rules/reportflow.rules.test.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/reportflow.json"
DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
PROVIDERS = ROOT / "deploy/grafana/provisioning/dashboards/reportflow.yml"
DATASOURCE_VAR = {"type": "prometheus", "uid": "${datasource}"}
ALERTS = {"ReportflowJobFailureRatioHigh", "ReportflowQueueBacklogGrowing", "ReportflowNoWorkerConsuming",
          "ReportflowJobsTakenBack", "ReportflowReconcilerStalled",
          "ReportflowNotificationLatencyHigh", "ReportflowHttp5xxRatioHigh", "ReportflowTargetDown"}
# Grafana's interval variables, fixed so that Prometheus (promtool, the e2e test) can evaluate the queries
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed (apt-get install -y prometheus)")
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=60)


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dash: dict) -> list[dict]:
    """Top-level panels plus those inside collapsed rows."""
    return [q for p in dash["panels"] for q in [p, *p.get("panels", [])]]


def panel_queries(dash: dict) -> list[tuple[str, str]]:
    """(panel title + refId, PromQL with Grafana's variables substituted) of every target."""
    out = []
    for panel in all_panels(dash):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            out.append((f"{panel['title']} [{target['refId']}]", expr))
    return out


def test_promtool_accepts_the_rules():
    run = promtool("check", "rules", str(RULES))
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_rules_unit_tests_pass():
    run = promtool("test", "rules", str(RULES_TEST))
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_is_there_and_has_a_firing_unit_test():
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")}
    quiet = {case["alertname"] for t in tests for case in t["alert_rule_test"] if not case.get("exp_alerts")}
    assert fired == ALERTS, f"no test where it fires: {ALERTS - fired}"
    assert quiet == ALERTS, f"no test where it stays quiet: {ALERTS - quiet}"


def test_dashboard_is_provisionable_json_with_unique_panel_ids():
    dash = dashboard()
    assert dash["uid"] == "reportflow" and dash["title"]
    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    rows = [p["title"].lower() for p in dash["panels"] if p["type"] == "row"]
    for wanted in ("jobs", "queue", "latency", "notifier", "http errors"):
        assert wanted in rows, f"no {wanted!r} row in {rows}"
    assert all(p.get("targets") for p in all_panels(dash) if p["type"] != "row"), "a panel without a query"


def test_every_panel_and_query_uses_the_datasource_variable():
    dash = dashboard()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in all_panels(dash):
        assert panel.get("datasource") == DATASOURCE_VAR, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource") == DATASOURCE_VAR, f"{panel['title']} [{target['refId']}]"


def test_panels_do_not_overlap():
    cells = {}
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_grafana_foundation_sdk_keeps_every_key():
    """A round trip through the SDK's typed models drops keys Grafana does not know (typos, wrong nesting);
    with the default plugins registered, panel options and Prometheus queries are typed too."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    def keys(o, p=""):  # every non-null key path
        if isinstance(o, dict):
            return {q for k, v in o.items() if v is not None for q in {p + "." + k} | keys(v, p + "." + k)}
        return {q for i, v in enumerate(o) for q in keys(v, f"{p}[{i}]")} if isinstance(o, list) else set()

    register_default_plugins()
    raw = dashboard()
    back = json.loads(json.dumps(Dashboard.from_json(raw), cls=JSONEncoder))
    lost = sorted(k for k in keys(raw) - keys(back) if "builtIn" not in k)  # a legacy key Grafana exports
    assert not lost, lost


def test_every_dashboard_query_is_valid_promql(tmp_path):
    """promtool parses each query as a recording rule (the e2e test evaluates them against real services)."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_name, expr) in
             enumerate(panel_queries(dashboard()))]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run = promtool("check", "rules", str(path))
    assert run.returncode == 0, run.stdout + run.stderr


def defined_metrics() -> set[str]:
    """Every sample name the services can export: the names in their metric definitions, with a
    histogram's _bucket/_sum/_count, and the per-service HTTP metrics."""
    names = set()
    for source in ROOT.glob("services/*/reportflow_*/**/*.py"):
        names |= set(re.findall(r'"(reportflow_[a-z0-9_]+)"', source.read_text()))
    for service in ("auth", "reports", "notifier"):
        names |= {f"reportflow_{service}_http_requests_total", f"reportflow_{service}_http_request_duration_seconds"}
    return names | {f"{n}_{suffix}" for n in names for suffix in ("bucket", "sum", "count")}


def test_dashboard_and_rules_name_only_metrics_the_services_define():
    used = set(re.findall(r"\breportflow_[a-z0-9_]+", DASHBOARD.read_text() + RULES.read_text()))
    assert used, "no metric found: the pattern is wrong"
    assert used <= defined_metrics(), f"nobody exports {sorted(used - defined_metrics())}"


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard_folder():
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    prometheus = next(s for s in sources if s["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090"
    current = {v["name"]: v for v in dashboard()["templating"]["list"]}["datasource"]["current"]
    assert current["value"] == prometheus["uid"], "the dashboard's default datasource is the provisioned one"
    providers = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert [(p["type"], p["options"]["path"]) for p in providers] == [("file", "/var/lib/grafana/dashboards")]
