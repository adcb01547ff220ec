"""The README is for users and tells the truth about the tree: its settings table is the settings
model's, it stays short, and every repository path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from stream.config import settings_table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
FOLDERS = ("stream/", "models/", "tests/", "scripts/", "config/", "docs/", "schemas/", "benchmarks/", ".ci/")


def test_the_settings_table_is_generated_from_the_settings_model() -> None:
    block = README.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert block == settings_table(), "run scripts/settings_table.py"


def test_the_readme_is_short() -> None:
    """About 300 lines of prose, plus the generated settings table (one row per setting)."""
    table_rows = settings_table().count("\n")
    assert len(README.splitlines()) - table_rows <= 310


def test_every_path_the_readme_names_exists() -> None:
    folders = "|".join(map(re.escape, FOLDERS))
    named = {m.rstrip(".,:;)") for m in re.findall(rf"[`(\[]((?:{folders})[\w./\-]*)", README)}
    missing = sorted(p for p in named if not (ROOT / p.split("#")[0]).exists())
    assert missing == []
