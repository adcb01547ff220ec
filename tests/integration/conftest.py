"""Every test of this folder needs the real stack (fixtures in tests/conftest.py): marked
``integration``, so ``pytest -m "not integration"`` runs the pure suite."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Conftest hooks see every collected item, not only this folder's: filter by path.
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)
