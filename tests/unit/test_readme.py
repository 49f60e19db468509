"""The README's configuration table is the settings registry, never a hand-kept copy."""
from pathlib import Path

from reportflow_common.settings import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_matches_the_settings_registry():
    text = README.read_text()
    start, end = text.index("<!-- config-table:start -->"), text.index("<!-- config-table:end -->")
    assert text[start:end].split("\n", 1)[1].strip() == markdown_table(), "run `make config-table` and paste"


def test_readme_shows_the_two_commands():
    text = README.read_text()
    assert "make up" in text and "make test" in text
