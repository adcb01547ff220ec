"""The README is for users and tells the truth about the tree: the settings table (docs/settings.md)
is the settings model's, the README stays short, and every repository path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from stream.config import settings_table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
FOLDERS = ("stream/", "models/", "tests/", "scripts/", "config/", "docs/", "schemas/", "benchmarks/", ".ci/")


def test_the_settings_table_is_generated_from_the_settings_model() -> None:
    settings_doc = (ROOT / "docs" / "settings.md").read_text()
    block = settings_doc.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert block == settings_table(), "run scripts/settings_table.py"


def test_the_readme_is_short() -> None:
    """About 300 lines: what a user reads; the settings table lives in docs/settings.md."""
    assert len(README.splitlines()) <= 310


def test_every_path_the_readme_names_exists() -> None:
    folders = "|".join(map(re.escape, FOLDERS))
    named = {m.rstrip(".,:;)") for m in re.findall(rf"[`(\[]((?:{folders})[\w./\-]*)", README)}
    missing = sorted(p for p in named if not (ROOT / p.split("#")[0]).exists())
    assert missing == []
