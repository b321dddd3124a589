"""The map in docs/architecture.md, enforced: what may import what, no cycles, small modules.

Layers, lowest first; a module may import its own layer and the layers below it, never above:

1. ``exchange_common`` — shared by everything;
2. ``pki`` — cryptography and trust;
3. ``exchange_client`` (the department's side) and the node's foundation: ``exchange_server``'s
   ``config``, ``node``, ``spool``, ``crl`` and ``store``;
4. ``exchange_server.outbox``; 5. ``exchange_server.data``; 6. ``exchange_server.pipeline``;
7. ``exchange_server.front``; 8. ``exchange_server.admin``.

The client and the node never import each other: what both need lives in ``exchange_common``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("exchange_common", "pki", "exchange_client", "exchange_server")
#: Modules may hold about this many lines at most.
MAX_LINES = 500

_SERVER_LAYERS = {
    "config": 3,
    "node": 3,
    "spool": 3,
    "crl": 3,
    "store": 3,
    "outbox": 4,
    "data": 5,
    "pipeline": 6,
    "front": 7,
    "admin": 8,
}


def _modules() -> Iterator[tuple[str, Path]]:
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def _layer(module: str) -> tuple[str, int]:
    """(side, layer): side keeps the client and the node apart at the same height."""
    parts = module.split(".")
    if parts[0] == "exchange_common":
        return "common", 1
    if parts[0] == "pki":
        return "common", 2
    if parts[0] == "exchange_client":
        return "client", 3
    if len(parts) == 1:
        return "node", 3
    return "node", _SERVER_LAYERS[parts[1]]


def _imports(path: Path, *, top_level_only: bool) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text("utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def test_every_import_goes_down_the_layers() -> None:
    wrong = []
    for module, path in _modules():
        side, layer = _layer(module)
        for line, target in _imports(path, top_level_only=False):
            if not _ours(target):
                continue
            t_side, t_layer = _layer(target)
            if t_layer > layer or (t_side not in ("common", side)):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert wrong == [], "imports against the layers of docs/architecture.md:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    known = {m for m, _ in _modules()}
    for module, path in _modules():
        edges = set()
        for _, target in _imports(path, top_level_only=True):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                edges.add(target)
        graph[module] = edges
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n) :], n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_module_is_over_the_size_limit() -> None:
    big = {
        str(path.relative_to(ROOT)): n
        for _, path in _modules()
        if (n := len(path.read_text("utf-8").splitlines())) > MAX_LINES + 50
    }
    assert big == {}, f"modules over about {MAX_LINES} lines (split them by responsibility): {big}"
