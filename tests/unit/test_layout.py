"""The package's map (docs/DESIGN.md): each top-level module or package of streamjobs sits in a
layer, and run-time imports only go down (a lower number) or stay inside their own unit."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "streamjobs"

# unit (top-level module or package under streamjobs/) -> layer. Same table as docs/DESIGN.md.
LAYERS = {
    "errors": 0, "_headers": 0, "_kafka_log": 0, "events": 0, "_durations": 0,
    "_names": 1, "_connection": 1,
    "_settings": 2, "_retry": 2, "_config": 2, "_delivery": 2, "_limits": 2, "_priorities": 2,
    "_scan": 3, "_unique": 3, "_dev": 3,
    "_schedules": 4,
    "_schemas": 5,
    "_avro": 6, "_status": 6, "_reports": 6,
    "_producer": 7,
    "_ops": 8, "_worker": 8, "listeners": 8,
    "testing": 9, "_web": 9,
    "cli": 10,
    "__init__": 11, "__main__": 12,
}

# Module-level imports that cross the table upward or sideways, each with its reason.
ALLOWED = {
    # framing.py imports only errors; the catalogue validates `framing =` against its names.
    ("streamjobs._schemas.catalogue", "streamjobs._avro.framing"),
}


def _imports() -> list[tuple[str, str]]:
    """(importer, imported) for every run-time import of a streamjobs module inside the
    package (imports under ``if TYPE_CHECKING:`` name types only and are left out)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test)
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if not isinstance(node, ast.ImportFrom):
                if isinstance(node, ast.Import):
                    found += [(".".join(parts), a.name) for a in node.names
                              if a.name.startswith("streamjobs.")]
                continue
            if node.level:
                base = parts if is_pkg else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            elif (node.module or "").startswith("streamjobs."):
                targets = [node.module or ""]
            else:
                continue
            found += [(".".join(parts), t) for t in targets]
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_unit_has_a_layer() -> None:
    """Rule: every top-level module and package of streamjobs is placed on the map."""
    units = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
             if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert units - set(LAYERS) == set(), "add these to LAYERS and docs/DESIGN.md"


def test_imports_only_go_down() -> None:
    """Rule: a module imports its own unit or a lower layer (the listed exceptions aside)."""
    imports = _imports()
    assert len(imports) > 200
    upward = []
    for importer, imported in imports:
        a, b = _unit(importer), _unit(imported)
        if a == b or (importer, imported) in ALLOWED or imported == "streamjobs":
            continue
        if LAYERS.get(b, 99) >= LAYERS.get(a, -1):
            upward.append(f"{importer} -> {imported}")
    assert upward == []


def test_allowed_exceptions_still_exist() -> None:
    """Rule: an exception to the layering is listed only while the import exists."""
    assert set(_imports()) >= ALLOWED
