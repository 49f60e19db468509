"""Every file of the page ships in the notifier's package (images install it non-editable)."""
from __future__ import annotations

import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "services" / "notifier"


def test_package_data_covers_every_page_file():
    globs = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "reportflow_notifier"]
    root = PACKAGE / "reportflow_notifier"
    shipped = {p for g in globs for p in root.glob(g) if p.is_file()}
    files = {p for folder in ("static", "templates") for p in (root / folder).rglob("*") if p.is_file()}
    assert files and files <= shipped, sorted(str(p.relative_to(root)) for p in files - shipped)
