"""No import cycle in the ``streamjobs`` package.

Rule, package-wide: every ``import``/``from ... import`` of a ``streamjobs`` module that can
run counts, at any depth (module level, inside functions, relative or absolute); one under
``if TYPE_CHECKING:`` does not (it never runs). Inside ``worker/`` and ``testing/`` the rule is
stricter: TYPE_CHECKING imports count too, since a module whose types name its caller's is as
tangled as one that imports it. A
``from pkg import name`` counts as an import of ``pkg.name`` when that is a module, else of
``pkg`` (whose ``__init__`` runs). A package's ``__init__`` importing its own submodules is
not an edge back to it from them (a submodule importing its package's ``__init__`` is).
"""

from __future__ import annotations

import ast
from pathlib import Path

import streamjobs

ROOT = Path(streamjobs.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path], *,
             only_runtime: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if only_runtime and isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                found.add(sub if sub in modules else mod)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    edges = set()
    for target in found:
        # The nearest streamjobs module named (an attribute import names its module); a
        # submodule importing its own package's __init__ is an edge to it too.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def _graph(*, only_runtime: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules, only_runtime=only_runtime)
            for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_finder_sees_a_cycle() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_count(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import x\n"
                   "else:\n    from . import y\ndef f():\n    from . import z\n")
    mods = {"p.m": src, "p.x": src, "p.y": src, "p.z": src}
    assert _imports("p.m", src, mods) == {"p.x", "p.y", "p.z"}
    assert _imports("p.m", src, mods, only_runtime=True) == {"p.y", "p.z"}


def test_no_import_cycle_in_the_package() -> None:
    graph = _graph(only_runtime=True)
    assert "streamjobs._worker.intake" in graph["streamjobs._worker.runner"]  # the walk sees
    assert "streamjobs._headers" in graph["streamjobs._worker.intake"]  # relative imports
    assert find_cycles(graph) == []


def test_no_import_cycle_in_the_worker_even_for_types() -> None:
    mine = ("streamjobs._worker", "streamjobs.testing")
    graph = {m: {d for d in deps if d.startswith(mine)}
             for m, deps in _graph().items() if m.startswith(mine)}
    assert find_cycles(graph) == []


def test_the_worker_imports_one_way() -> None:
    """Nothing the runner drives imports the runner (not even for types)."""
    graph = _graph()
    assert [m for m, deps in graph.items() if "streamjobs._worker.runner" in deps
            and m.startswith("streamjobs._worker.")] == []
