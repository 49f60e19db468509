"""The newcomer check: `make up` from a fresh clone in a pristine Debian container, driven from the host.

This is the test that catches a step only the developer's machine had (an undeclared library, a system
package nobody installs): the container has nothing but the base image, python3-venv, make and git.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_up_works_on_a_pristine_machine(podman):
    done = subprocess.run([str(ROOT / "scripts" / "newcomer-check.sh")], capture_output=True, text=True,
                          timeout=1800)
    print(done.stdout[-3000:])  # the check's own timings, kept in the test log
    assert done.returncode == 0, f"newcomer check failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    assert "newcomer check passed" in done.stdout and "downloaded" in done.stdout
