"""The package's curated surface: every name in ``streamjobs.__all__`` resolves, and importing
``streamjobs`` (as an emitting service does) does not load the worker."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import streamjobs

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_resolves() -> None:
    """Rule: `from streamjobs import X` works for each X in __all__, and __all__ is sorted."""
    for name in streamjobs.__all__:
        assert getattr(streamjobs, name) is not None, name
    assert streamjobs.__all__ == sorted(streamjobs.__all__)


def test_import_does_not_load_the_worker() -> None:
    """Rule: a service that only emits never imports the worker machinery."""
    code = ("import sys, streamjobs; from streamjobs import Producer; "
            "print('streamjobs._worker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# -- one import path per public name ---------------------------------------------------------

# The modules a user imports from. Everything else has a leading underscore somewhere in its
# path (httpx's way), except streamjobs.errors, which defines the exception tree: its class
# paths are data (sj-error-class headers, status records, catalogue permanent_errors), so the
# module keeps its name, but the documented import path of an exception is `streamjobs`.
USER_MODULES = ("streamjobs", "streamjobs.events", "streamjobs.listeners", "streamjobs.testing")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _exported(module_name: str) -> dict[str, object]:
    module = importlib.import_module(module_name)
    return {name: getattr(module, name) for name in module.__all__}


def _is_private(module_name: str) -> bool:
    return any(part.startswith("_") for part in module_name.split("."))


def test_every_top_level_name_is_defined_privately() -> None:
    """Rule: each name in streamjobs.__all__ is defined in a private module (or is an exception
    of streamjobs.errors), so `streamjobs` is its one public import path."""
    for name, obj in _exported("streamjobs").items():
        where = getattr(obj, "__module__", None)
        assert where is not None, name
        assert _is_private(where) or where == "streamjobs.errors", (name, where)


def test_every_exception_is_exported_from_the_top() -> None:
    """Rule: every exception of streamjobs.errors is importable from `streamjobs`."""
    assert set(_exported("streamjobs.errors")) <= set(streamjobs.__all__)


def test_no_name_is_exported_by_two_public_modules() -> None:
    """Rule: a public object appears in the __all__ of exactly one user-facing module."""
    seen: dict[int, str] = {}
    for module_name in USER_MODULES:
        for name, obj in _exported(module_name).items():
            if isinstance(obj, (str, int, float, tuple, frozenset)):
                continue  # constants compare by value, not identity
            other = seen.setdefault(id(obj), f"{module_name}.{name}")
            assert other == f"{module_name}.{name}", (other, f"{module_name}.{name}")


def test_testing_names_live_under_testing() -> None:
    """Rule: streamjobs.testing's names are defined inside streamjobs.testing (or privately)."""
    for name, obj in _exported("streamjobs.testing").items():
        where = getattr(obj, "__module__", "")
        assert where.startswith("streamjobs.testing.") or _is_private(where), (name, where)


def _imports(code: str) -> list[tuple[str, list[str]]]:
    """(module, names) of every streamjobs import in ``code``."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        found = []
        for line in code.splitlines():
            m = re.match(r"\s*from\s+(streamjobs[\w.]*)\s+import\s+([\w, ]+)", line)
            if m:
                found.append((m.group(1), [n.strip() for n in m.group(2).split(",")]))
            m = re.match(r"\s*import\s+(streamjobs[\w.]*)", line)
            if m:
                found.append((m.group(1), []))
        return found
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "streamjobs":
            out.append((node.module or "", [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "streamjobs"]
    return out


def _doc_code() -> list[tuple[str, str]]:
    blocks = [(doc.name, block) for doc in DOCS
              for block in re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)]
    blocks += [(p.name, p.read_text()) for p in sorted((ROOT / "examples").glob("*.py"))]
    return blocks


def test_docs_and_examples_import_only_public_names() -> None:
    """Rule: README, docs and examples import each name from its one public module, and only
    names that module exports."""
    blocks = _doc_code()
    assert len(blocks) >= 5
    imports = [(where, module, names) for where, code in blocks
               for module, names in _imports(code)]
    assert len(imports) >= 8
    for where, module, names in imports:
        assert module in USER_MODULES, f"{where}: imports {module}"
        exported = importlib.import_module(module).__all__
        for name in names:
            assert name in exported, f"{where}: {name} is not in {module}.__all__"
