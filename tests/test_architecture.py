"""The import rules of ARCHITECTURE.md, checked on the source (no module is imported).

A layer that reaches upwards (the rule language importing the engine, the store importing
the CLI) is how a codebase stops being changeable one place at a time.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

#: package prefix -> prefixes of segsync modules it must not import.
FORBIDDEN = {
    "segment_rules": ("connectors", "sync"),
    "connectors": ("sync",),
    "sync.store": ("sync.engine", "sync.app", "sync.cli", "sync.compute", "sync.apply",
                   "sync.resolve", "sync.pull", "sync.report", "sync.output"),
    "sync.engine": ("sync.cli", "sync.app"),
    "sync.app": ("sync.cli",),
}
#: Concrete connectors are built through the registry, never imported by the engine.
CONCRETE = ("connectors.hubspot", "connectors.salesforce", "connectors.csvfile")


def modules() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for top in ("segment_rules", "connectors", "sync"):
        for path in (REPO / top).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            name = name.removesuffix(".__init__")
            imported: set[str] = set()
            for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imported.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imported.add(node.module)
            found[name] = imported
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_no_layer_imports_the_layers_above_it() -> None:
    problems = [
        f"{module} imports {target}"
        for module, imported in modules().items()
        for layer, banned in FORBIDDEN.items() if _under(module, layer)
        for target in imported if any(_under(target, b) for b in banned)
    ]
    assert problems == []


def test_the_engine_never_imports_a_concrete_connector() -> None:
    problems = [
        f"{module} imports {target}"
        for module, imported in modules().items() if _under(module, "sync")
        for target in imported if any(_under(target, c) for c in CONCRETE)
    ]
    assert problems == []


def test_only_the_store_package_opens_duckdb() -> None:
    users = {m for m, imported in modules().items() if "duckdb" in imported}
    allowed = {m for m in users if _under(m, "sync.store") or _under(m, "segment_rules")}
    assert users - allowed == set()
