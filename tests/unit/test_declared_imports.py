"""Every third-party module a service package imports is declared in that package's own pyproject.toml.

A dev venv that happens to hold a library hides the missing line until a newcomer's `make up` dies on it
(that is how `requests` slipped through). This scans each package's source with `ast` (imports inside
functions too) and maps each top-level module to the distributions that provide it in this environment.
"""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
PACKAGES = sorted(p.parent for p in SERVICES.glob("*/pyproject.toml"))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(pyproject: Path) -> set[str]:
    """Distribution names in `dependencies` and every extra, without versions, markers or extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    specs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    return {_normalise(re.match(r"[A-Za-z0-9_.\-]+", spec).group(0)) for spec in specs}


def imported_top_levels(package_dir: Path) -> dict[str, str]:
    """{top-level module: first file importing it} for absolute imports in the package's Python files."""
    found: dict[str, str] = {}
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(SERVICES)))
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=[p.name for p in PACKAGES])
def test_every_third_party_import_is_declared_by_its_own_package(package):
    providers = packages_distributions()
    own = declared(package / "pyproject.toml")
    missing = []
    for module, where in imported_top_levels(package).items():
        if module in sys.stdlib_module_names or module.startswith("reportflow_") or module == "__future__":
            continue
        dists = {_normalise(d) for d in providers.get(module, [])}
        assert dists, f"{where} imports {module!r}, which no installed distribution provides"
        if not dists & own:
            missing.append(f"{where}: {module} (from {', '.join(sorted(dists))})")
    assert not missing, f"{package.name}/pyproject.toml does not declare:\n" + "\n".join(missing)


def test_first_party_imports_are_declared_too():
    """A service importing reportflow_x needs reportflow-x among its dependencies (installed images use it)."""
    for package in PACKAGES:
        own = declared(package / "pyproject.toml")
        name = _normalise(tomllib.loads((package / "pyproject.toml").read_text())["project"]["name"])
        for module, where in imported_top_levels(package).items():
            if module.startswith("reportflow_"):
                dist = _normalise(module)
                assert dist == name or dist in own, f"{where} imports {module} but {name} does not depend on {dist}"
