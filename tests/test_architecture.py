"""docs/architecture.md matches the tree: every module and package under src/dumpsafe has its
line in the module map, the page names no module that does not exist, and no module outside
``fronts/`` imports a front (imports point down: fronts -> registry -> service -> flows)."""

from __future__ import annotations

import re
from pathlib import Path

from test_import_graph import PKG, import_graph

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def _tree() -> set[str]:
    """Every module (``service.py``, ``engines/toc.py``) and package (``engines/``) under src/dumpsafe."""
    out: set[str] = set()
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG).as_posix()
        out.add(rel)
        if p.name == "__init__.py" and p.parent != PKG:
            out.add(p.parent.relative_to(PKG).as_posix() + "/")
    return out


def _map_entries(text: str) -> list[str]:
    """The names the module map lists: each bullet starts with `path`."""
    section = text.split("## Module map", 1)[1]
    return re.findall(r"^- `([^`]+)`", section, flags=re.M)


def test_every_module_has_a_line_in_the_module_map():
    listed = _map_entries(DOC.read_text())
    missing = sorted(_tree() - set(listed))
    assert not missing, f"modules missing from docs/architecture.md's module map: {missing}"
    assert len(listed) == len(set(listed)), "a module is listed twice in docs/architecture.md"


def test_the_page_names_no_module_that_does_not_exist():
    text = DOC.read_text()
    tree = _tree()
    named = set(_map_entries(text))
    # anywhere on the page: a `something.py` or `fronts/...` path in backticks
    named |= {m for m in re.findall(r"`([\w/]+(?:\.py|/))`", text) if "/" in m or m.endswith(".py")}
    # a data directory (`fronts/web/static/`) or a path from the repository root (`tests/...`) exists too
    unknown = sorted(n for n in named if n not in tree and not (PKG / n).is_dir() and not (ROOT / n).exists())
    assert not unknown, f"docs/architecture.md names modules that do not exist: {unknown}"


def test_no_module_outside_fronts_imports_a_front():
    graph = import_graph()
    bad = sorted(
        f"{mod} imports {dep}"
        for mod, deps in graph.items()
        if not mod.startswith("dumpsafe.fronts")
        for dep in deps
        if dep.startswith("dumpsafe.fronts") and not (mod == "dumpsafe.__main__" and dep == "dumpsafe.fronts.cli")
    )
    assert not bad, f"a core module imports a front (fronts call down, never the reverse): {bad}"
