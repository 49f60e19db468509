"""The Postman collection (deploy/postman), run by newman against the running system, passes every test."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from support.waiting import free_port

ROOT = Path(__file__).resolve().parents[2]
POSTMAN = ROOT / "deploy" / "postman"
COLLECTION = POSTMAN / "reportflow.postman_collection.json"
ENVIRONMENT = POSTMAN / "make-up.postman_environment.json"
NODE_PREFIX = ROOT / ".tools" / "node"
NEWMAN = NODE_PREFIX / "node_modules" / ".bin" / "newman"
NEWMAN_VERSION = "6.2.2"
# The assertions of one pass through the collection (counting a poller's last attempt only, the one that
# checks the report): a collection that silently loses tests fails here.
MIN_ASSERTIONS = 182


@pytest.fixture(scope="module")
def newman() -> Path:
    if not NEWMAN.exists():
        if shutil.which("npm") is None:
            pytest.skip(f"newman is not installed and npm is not available: run "
                        f"`npm install --prefix {NODE_PREFIX} newman@{NEWMAN_VERSION}`")
        subprocess.run(["npm", "install", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund",
                        f"newman@{NEWMAN_VERSION}"], check=True, timeout=300)
    return NEWMAN


def leaf_names(items: list[dict]) -> list[str]:
    names = []
    for item in items:
        names += leaf_names(item["item"]) if "item" in item else [item["name"]]
    return names


def run_collection(newman: Path, tmp_path: Path, *env_vars: str) -> None:
    """Run the collection with the make-up environment and `env_vars`; every test in it must pass."""
    report_path = tmp_path / "newman.json"
    args = [str(newman), "run", str(COLLECTION), "--environment", str(ENVIRONMENT)]
    for var in env_vars:
        args += ["--env-var", var]
    run = subprocess.run(
        [*args, "--reporters", "cli,json", "--reporter-json-export", str(report_path),
         "--timeout-request", "15000", "--color", "off", "--disable-unicode"],
        capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]

    result = json.loads(report_path.read_text())["run"]
    stats = result["stats"]
    assert result["failures"] == []
    for kind in ("requests", "assertions", "testScripts", "prerequestScripts"):
        assert stats[kind]["failed"] == 0, kind

    names = leaf_names(json.loads(COLLECTION.read_text())["item"])
    assert len(names) == len(set(names)), "request names must be unique (the pollers repeat by name)"
    last = {e["item"]["name"]: e for e in result["executions"]}  # a poller's last attempt is the one that asserts
    assert set(last) == set(names), "every request ran"
    own = {name: [a for a in e.get("assertions", []) if not a["assertion"].startswith("[api]")]
           for name, e in last.items()}
    assert [n for n, tests in own.items() if not tests] == [], "every request asserts something of its own"
    assert sum(len(e.get("assertions", [])) for e in last.values()) >= MIN_ASSERTIONS


def test_collection_passes_through_the_ingress(newman, ingress, tmp_path):
    """As a user runs it against kind: one origin, the nginx stand-in configured from the chart's Ingress."""
    run_collection(newman, tmp_path, f"baseUrl={ingress.url}")


def test_collection_passes_against_split_origins(newman, stack, tmp_path):
    # baseUrl points at a closed port: a request that ignores authUrl/reportsUrl fails instead of
    # reaching whatever listens on 127.0.0.1:8080
    run_collection(newman, tmp_path, f"baseUrl=http://127.0.0.1:{free_port()}",
                   f"authUrl={stack.auth_url}", f"reportsUrl={stack.reports_url}")
