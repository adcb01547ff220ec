"""Write the settings table (generated from stream/config.py) into docs/settings.md between its markers.

.venv/bin/python scripts/settings_table.py          # rewrite the block in docs/settings.md
.venv/bin/python scripts/settings_table.py --check  # exit 1 if docs/settings.md is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.config import settings_table  # noqa: E402

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def with_table(readme: str) -> str:
    head, sep, rest = readme.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"docs/settings.md has no {BEGIN} ... {END} block")
    return f"{head}{BEGIN}\n{settings_table()}{END}{tail}"


def main() -> int:
    path = ROOT / "docs" / "settings.md"
    text = path.read_text()
    new = with_table(text)
    if "--check" in sys.argv[1:]:
        if new != text:
            print("docs/settings.md is out of date: run scripts/settings_table.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
