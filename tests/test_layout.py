"""The package's layout holds by structure: imports run one way (no circle), the torch-free layers
import no torch, no module grows past 400 lines, and block types dispatch only through their
records."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scaling"
TORCH_FREE = ("scaling.ir", "scaling.cost", "scaling.compound")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, lazy (function-level) imports included."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # a submodule's import of the top-level facade is not an edge: the facade is lazy
                if target and target != name and target != "scaling":
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_circle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    assert circles(import_graph()) == []


def test_torch_free_layers_import_nothing_above_them():
    above = ("scaling.nn", "scaling.zoo", "scaling.data", "scaling.train", "scaling.search",
             "scaling.study", "scaling.bench")
    graph = import_graph()
    bad = {m: sorted(t for t in targets if t.startswith(above))
           for m, targets in graph.items() if m.startswith(TORCH_FREE)}
    # the CLIs of the torch-free layers resolve zoo names through scaling.cli only
    assert {m: t for m, t in bad.items() if t} == {}


_BLOCK_TORCH = "import sys; sys.modules['torch'] = None; "


def test_torch_free_layers_import_with_torch_blocked():
    modules = [m for m in _modules() if m.startswith(TORCH_FREE) and not m.endswith("__main__")]
    code = _BLOCK_TORCH + "import importlib; " + "; ".join(
        f"importlib.import_module({m!r})" for m in modules) + "; import scaling"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_compound_cli_runs_with_torch_blocked():
    code = _BLOCK_TORCH + ("import runpy; sys.argv = ['scaling.compound', '--phi', '3']; "
                           "runpy.run_module('scaling.compound', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "phi = 3" in out.stdout


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


BLOCK_DISPATCH = re.compile(r"\bblock\s*(==|!=|\bin\b|\bnot in\b)\s*[\"'(\[]")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module_name(p))
def test_block_types_dispatch_through_their_records(path):
    if path == PACKAGE / "ir" / "blocks.py":
        pytest.skip("the block records themselves")
    hits = [f"{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if BLOCK_DISPATCH.search(line)]
    assert hits == []
