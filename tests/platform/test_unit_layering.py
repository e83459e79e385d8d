"""Imports point one way: server -> console -> sync -> reconcile -> domain; Starlette only in domain's api.py
modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RANK = {"domain": 0, "reconcile": 1, "sync": 2, "console": 3, "server": 4}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    found = []
    package = module.rsplit(".", 1)[0] if "." in module else module
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def violations(module: str, source: str) -> list[str]:
    """Every backward arrow (and every Starlette import in a domain module not named api) in one module."""
    layer = module.split(".")[0]
    if layer not in RANK:
        return []
    problems = []
    for line, target in imported_modules(source, module):
        top = target.split(".")[0]
        if top in RANK and RANK[top] > RANK[layer]:
            problems.append(f"{module}:{line} imports {target} ({layer} may not depend on {top})")
        if top == "starlette" and layer == "domain" and module.split(".")[-1] != "api":
            problems.append(f"{module}:{line} imports {target} (Starlette belongs in api.py modules only)")
    return problems


def project_modules() -> list[tuple[str, str]]:
    files = [ROOT / "server.py"]
    for package in ("domain", "reconcile", "sync", "console"):
        files.extend(sorted((ROOT / package).rglob("*.py")))
    return [(module_name(p), p.read_text()) for p in files]


def test_the_import_graph_points_one_way() -> None:
    modules = project_modules()
    assert len(modules) > 20, "the walk should see the whole project"
    problems = [problem for module, source in modules for problem in violations(module, source)]
    assert problems == []


def test_the_checker_catches_backward_arrows_and_misplaced_starlette() -> None:
    assert violations("domain.sales.services", "from sync.codec import decode") != []
    assert violations("domain.sales.services", "import reconcile.replay") != []
    assert violations("reconcile.batch", "from sync import models") != []
    assert violations("sync.push", "import server") != []
    assert violations("domain.sales.services", "from starlette.requests import Request") != []
    assert violations("domain.sales.api", "from starlette.requests import Request") == []
    assert violations("sync.push", "from reconcile.batch import apply") == []
    assert violations("reconcile.batch", "from domain.db import Database") == []
    assert violations("domain.sales.services", "from ..logistics import stock") == []
    assert violations("sync.push", "from console.web import console_routes") != []
    assert violations("console.web", "from sync.push import replay_open_rejections") == []
    assert violations("console.web", "import server") != []
