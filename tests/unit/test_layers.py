"""The package's layers, read from its import statements: the arrows of the design hold.

Each module of `streams` may import only what its layer allows (docs/architecture.md):
the rules stay pure, the engine knows nothing of banks or consents, what ships does
not depend on what tests, and no two modules import each other, even through others.
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "streams"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every `streams…` module the file imports (a `from streams import x` names x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "streams":
                found |= {f"streams.{alias.name}" for alias in node.names}
            elif node.module.startswith("streams."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("streams.")}
    return found - {"streams.__version__"}


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def _within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# (who, may import only these; anything of ours not listed is refused)
ONLY = [
    ("streams.rules", ("streams.rules", "streams.model", "streams.errors")),
    ("streams.model", ()),
    ("streams.errors", ()),
    ("streams.metrics", ()),
    ("streams.settings", ("streams.errors",)),
    ("streams.crypto", ("streams.errors", "streams.settings")),
    ("streams.codec", ("streams.model", "streams.errors")),
    ("streams.topic", ()),
    (
        "streams.catalog",
        ("streams.model", "streams.errors", "streams.settings", "streams.limits", "streams.topic"),
    ),
    (
        "streams.core",
        (
            "streams.core",
            "streams.kafka",
            "streams.settings",
            "streams.metrics",
            "streams.errors",
            "streams.logs",
            "streams.limits",
        ),
    ),
]
# (who, never these)
NEVER = [
    ("streams.agents", ("streams.tools", "streams.devkit", "streams.worker", "streams.app")),
    ("streams.tools", ("streams.agents", "streams.core", "streams.devkit", "streams.worker")),
    ("streams.kafka", ("streams.catalog",)),
    ("streams.app", ("streams.worker", "streams.cli")),
]


@pytest.mark.parametrize(("layer", "allowed"), ONLY, ids=[layer for layer, _ in ONLY])
def test_a_layer_imports_only_what_it_may(layer: str, allowed: tuple[str, ...]) -> None:
    """Every module of the layer imports only modules of the layers it may use."""
    wrong = {
        (module, imported)
        for module, imported_set in GRAPH.items()
        if _within(module, layer)
        for imported in imported_set
        if not _within(imported, *allowed)
    }
    assert wrong == set()


@pytest.mark.parametrize(("layer", "refused"), NEVER, ids=[layer for layer, _ in NEVER])
def test_a_layer_never_imports_what_sits_above_it(layer: str, refused: tuple[str, ...]) -> None:
    """What ships does not import what tests; the engine's users do not import the shell."""
    wrong = {
        (module, imported)
        for module, imported_set in GRAPH.items()
        if _within(module, layer)
        for imported in imported_set
        if _within(imported, *refused)
    }
    assert wrong == set()


def _resolve(name: str) -> str | None:
    """The module of ours an imported name is: itself, or the package or module it is in."""
    while name and name not in GRAPH:
        name = name.rpartition(".")[0]
    return name or None


def test_no_module_imports_itself_through_others() -> None:
    """The import graph has no cycle (a package's `__init__` importing its modules aside)."""
    edges = {
        m: {r for i in imported if (r := _resolve(i)) and r != m and not m.startswith(r + ".")}
        for m, imported in GRAPH.items()
    }
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_check_sees_a_planted_import(tmp_path: Path) -> None:
    """The reader is not blind: a rule module importing the engine is found as an import."""
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from streams.core.stage import Stage\n    return Stage\n")
    assert imports_of(planted) == {"streams.core.stage"}
    assert not _within("streams.core.stage", "streams.rules", "streams.model", "streams.errors")


def test_every_package_of_streams_ships_in_the_wheel() -> None:
    """pyproject lists its packages by name: each folder of `streams` with an __init__ is
    listed, so a new one cannot be left out of the wheel."""
    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert found == listed


MAX_MODULE_LINES = 320
"""About 300: a module a newcomer reads in one sitting. The CLI's parser is exempt."""


def test_no_module_of_streams_is_longer_than_one_sitting() -> None:
    """Every module of `streams` but the CLI's parser stays within MAX_MODULE_LINES: one
    that grows past it holds more than one idea and is split by idea."""
    long = {
        module_name(p): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES and p.name != "cli.py"
    }
    assert long == {}


def test_the_wheel_carries_every_schema_the_registry_names() -> None:
    """An installed wheel has no checkout beside it: pyproject's data-files ship
    registry.json and every schema file it names, where `streams.codec` looks."""
    from fnmatch import fnmatch

    root = PACKAGE.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())
    shipped = config["tool"]["setuptools"]["data-files"]["share/passerelle/schemas"]
    index = json.loads((root / "schemas" / "registry.json").read_text())
    wanted = ["schemas/registry.json", *(f"schemas/{e['file']}" for e in index["schemas"])]
    assert [w for w in wanted if not any(fnmatch(w, pattern) for pattern in shipped)] == []


def third_party_imports(paths: list[Path]) -> set[str]:
    """The top-level modules outside the standard library and `streams` these files import."""
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "streams"}


def normal(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements: list[str]) -> set[str]:
    return {normal(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in requirements}


@pytest.mark.parametrize(
    ("where", "extras"),
    [("the package but devkit", ()), ("devkit", ("dev",))],
)
def test_every_library_imported_is_a_declared_dependency(
    where: str, extras: tuple[str, ...]
) -> None:
    """What `streams` imports is in pyproject's dependencies (devkit: or the dev extra):
    a library that only arrives with another (or with the test tools) breaks a
    production install the day that other one drops it."""
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    allowed = declared(project["dependencies"])
    for extra in extras:
        allowed |= declared(project["optional-dependencies"][extra])
    devkit = PACKAGE / "devkit"
    files = [p for p in PACKAGE.rglob("*.py") if (devkit in p.parents) == (where == "devkit")]
    distributions = importlib.metadata.packages_distributions()
    missing = {
        module: distributions.get(module, [module])
        for module in third_party_imports(files)
        if not {normal(d) for d in distributions.get(module, [module])} & allowed
    }
    assert missing == {}, f"imported by {where}, not declared: {missing}"
