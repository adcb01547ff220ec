"""The house rules, checked: no import cycles, and the CLI and operations use public APIs only.

The layers themselves (the domain imports no runtime; cli > ops > runtime > state | io >
config > errors) are import-linter contracts in pyproject.toml, run by scripts/test.sh.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(m: str) -> None:
        index[m] = low[m] = counter[0]
        counter[0] += 1
        stack.append(m)
        on_stack.add(m)
        for n in sorted(graph.find_modules_directly_imported_by(m)):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            component = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                component.append(n)
                if n == m:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in modules:
        if m not in index:
            visit(m)
    return found


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("stream", "models")
    assert _cycles(graph) == []


def test_the_cli_and_operations_never_reach_into_private_members() -> None:
    """Commands and operations call what other modules offer; a private name (``_x``) imported
    or reached on an object other than ``self`` is something they should not depend on."""
    bad = []
    for folder in ("stream/cli", "stream/ops"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
                if isinstance(node, ast.ImportFrom):
                    bad += [f"{where} imports {a.name}" for a in node.names if _private(a.name)]
                elif isinstance(node, ast.Attribute) and _private(node.attr) and not _on_self(node):
                    bad.append(f"{where} reaches {ast.unparse(node)}")
    assert bad == []


def _on_self(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")
