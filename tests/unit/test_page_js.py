"""The page's JavaScript model (services/notifier/reportflow_notifier/static/js/model.js) under Node's test runner."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent / "js"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed (make tools needs it too)")
def test_page_model_passes_its_node_tests():
    run = subprocess.run(["node", "--test", str(TESTS)], capture_output=True, text=True, timeout=120)
    summary = [line for line in run.stdout.splitlines() if line.startswith(("# pass", "# fail", "not ok"))]
    assert run.returncode == 0, "\n".join(summary) + "\n" + run.stdout[-4000:] + run.stderr[-2000:]
    assert "# pass 0" not in run.stdout, "no JavaScript test ran"
