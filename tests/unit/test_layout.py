"""The package's map (docs/DESIGN.md): each top-level module or package of streamjobs sits in a
layer, and imports only go down (a lower number) or stay inside their own unit."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "streamjobs"

# unit (top-level module or package under streamjobs/) -> layer. Same table as docs/DESIGN.md.
LAYERS = {
    "errors": 0, "_headers": 0, "_kafka_log": 0, "events": 0,
    "_settings": 1, "_retry": 1, "_delivery": 1, "_config": 1,
    "_scan": 2, "_unique": 2, "_dev": 2,
    "_schedules": 3,
    "_schemas": 4,
    "_avro": 5, "_status": 5, "_reports": 5,
    "_producer": 6,
    "_ops": 7, "_worker": 7, "listeners": 7,
    "testing": 8, "_web": 8,
    "cli": 9,
    "__init__": 10, "__main__": 11,
}

# Module-level imports that cross the table upward or sideways, each with its reason.
ALLOWED = {
    # framing.py imports only errors; the catalogue validates `framing =` against its names.
    ("streamjobs._schemas.catalogue", "streamjobs._avro.framing"),
    # the wait group's name; moves to the module naming every topic and group (issue #14).
    ("streamjobs._ops.lag", "streamjobs._worker.runner"),
}


def _imports() -> list[tuple[str, str]]:
    """(importer, imported) for every import of a streamjobs module inside the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
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
