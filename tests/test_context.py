"""The flows take the service as ``context.ServiceContext``: a typed interface written down once.
Every attribute a flow reads from the service must be declared there (a flow reaching for
something new fails here until the interface says so), and BackupService must provide it all."""

from __future__ import annotations

import ast
from pathlib import Path

import dumpsafe
from dumpsafe.context import ServiceContext
from dumpsafe.service import BackupService

SRC = Path(dumpsafe.__file__).parent
FLOWS = ("restore.py", "verify.py", "restore_selective.py", "export.py", "report.py", "history.py")
NAMES = {"svc", "service"}  # the parameter, or self.svc / self.service


def _declared() -> set[str]:
    return {n for n in dir(ServiceContext) if not n.startswith("_")} | set(ServiceContext.__annotations__)


def _uses(tree: ast.AST) -> set[str]:
    used = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in NAMES:
            used.add(node.attr)
        elif isinstance(base, ast.Attribute) and base.attr in NAMES and isinstance(base.value, ast.Name) and base.value.id == "self":
            used.add(node.attr)
    return used


def _service_params(tree: ast.AST) -> list[tuple[str, str | None]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for a in node.args.args + node.args.kwonlyargs:
                if a.arg in NAMES:
                    out.append((f"{node.name}({a.arg})", ast.unparse(a.annotation) if a.annotation else None))
    return out


def test_flows_take_the_typed_context_and_use_only_what_it_declares():
    declared = _declared()
    for name in FLOWS:
        tree = ast.parse((SRC / name).read_text())
        params = _service_params(tree)
        assert params, f"{name} takes no service"
        assert all(ann == "ServiceContext" for _, ann in params), (name, params)
        assert _uses(tree) <= declared, f"{name} uses {_uses(tree) - declared} of the service, not declared in ServiceContext"


def test_the_service_provides_the_context(env):
    svc = env.service()
    assert isinstance(svc, ServiceContext)
    for name in _declared():
        assert hasattr(BackupService, name) or hasattr(svc, name), name
