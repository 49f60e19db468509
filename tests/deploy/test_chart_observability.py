"""The chart ships the very dashboard and alert rules that compose and the promtool tests use: one source."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "reportflow"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "reportflow.json"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "reportflow.rules.yml"


def render(*sets: str) -> list[dict]:
    local = ROOT / ".tools" / "bin" / "helm"
    helm = os.environ.get("HELM") or (str(local) if local.exists() else "helm")
    args = [helm, "template", "rf", str(CHART), "-n", "reportflow"]
    for s in sets:
        args += ["--set", s]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    except FileNotFoundError:
        pytest.skip("helm is not on PATH (make tools puts it in .tools/bin)")
    return [d for d in yaml.safe_load_all(out) if d]


def test_chart_files_are_links_to_the_deploy_sources():
    for link, source in ((CHART / "files" / "reportflow-dashboard.json", DASHBOARD),
                         (CHART / "files" / "reportflow.rules.yml", RULES)):
        assert link.is_symlink() and link.resolve() == source.resolve()


def test_dashboard_configmap_carries_the_dashboard_unchanged_for_the_sidecar():
    maps = [d for d in render() if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    assert len(maps) == 1
    assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(maps[0]["data"]["reportflow.json"]) == json.loads(DASHBOARD.read_text())


def test_prometheus_rule_carries_the_rule_groups_unchanged():
    assert not [d for d in render() if d["kind"] == "PrometheusRule"], "off by default (needs the CRD)"
    rules = [d for d in render("metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=kps")
             if d["kind"] == "PrometheusRule"]
    assert len(rules) == 1 and rules[0]["metadata"]["labels"]["release"] == "kps"
    assert rules[0]["spec"] == yaml.safe_load(RULES.read_text())


def test_service_monitors_name_jobs_as_the_rules_expect():
    monitors = [d for d in render("metrics.serviceMonitor.enabled=true") if d["kind"] == "ServiceMonitor"]
    assert {m["spec"]["jobLabel"] for m in monitors} == {"app.kubernetes.io/component"}
    components = {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors}
    assert components == {"auth", "reports", "worker", "notifier"}
