"""Layers point one way: billing ← config ← {bus, store, meters} ← flows and services ← wattpay.

Every import in the source tree (module level or inside a function) is read with ``ast``
and checked against the layer order, so a shortcut through the layers fails here rather
than as an import cycle or a core that quietly depends on a broker.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import REPO

# Lower numbers are lower layers. A module may import its own package and any lower layer,
# never a higher one nor a sibling package of its own layer (``store`` does not reach ``bus``).
LAYERS = {
    "billing": 0,
    "config": 1,
    "bus": 2,
    "store": 2,
    "meters": 2,
    "pipelines": 3,
    "jobs": 3,
    "notify": 3,
    "web": 3,
    "simulate": 3,
    "wattpay": 4,
    "wattpay.cli": 5,
    "bench": 6,
}
PACKAGES = (
    *("billing", "config", "bus", "store", "meters"),
    *("pipelines", "jobs", "notify", "web", "simulate", "wattpay"),
)
# Each fast-moving library is called from one module only.
ONLY_IN = {
    "confluent_kafka": {"bus/kafka.py"},
    "clickhouse_connect": {"store/clickhouse.py"},
    "chdb": {"store/clickhouse.py"},
    "pymodbus": {"meters/modbus.py"},
}
# Every Bytewax import is in the flows' package.
ENGINE_ROOM = "pipelines"
NOT_IN_CORE = {"bytewax", "confluent_kafka", "clickhouse_connect", "chdb", "pymodbus", "polars"}


def package(module: str) -> str:
    """The package that places a module in a layer (``wattpay.cli`` apart from ``wattpay``)."""
    if module == "wattpay.cli" or module.startswith("wattpay.cli."):
        return "wattpay.cli"
    return module.split(".", 1)[0]


def layer(module: str) -> int | None:
    """The layer of a project module; ``None`` for the standard library and third parties."""
    return LAYERS.get(package(module))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, imported module)`` for every import statement in the file."""
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    yield from parsed_imports(path.read_text(encoding="utf-8"), package)


def parsed_imports(source: str, package: str) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every import in ``source``; relative ones resolved in ``package``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            else:
                yield node.lineno, node.module or ""


def upward(own: str, found: Iterator[tuple[int, str]]) -> list[str]:
    """The imports of module ``own`` that reach a higher layer or a sibling package of its own."""
    mine = layer(own)
    wrong = []
    for line, imported in found:
        theirs = layer(imported)
        if mine is None or theirs is None or theirs < mine:
            continue
        if theirs > mine:
            wrong.append(f"{own}:{line} imports {imported} (a higher layer)")
        elif package(imported) != package(own):
            wrong.append(f"{own}:{line} imports {imported} (a sibling package)")
    return wrong


def sources() -> list[Path]:
    files = [p for name in (*PACKAGES, "bench") for p in sorted((REPO / name).rglob("*.py"))]
    # bench/data holds generated inputs and baseline trees extracted by the benchmarks.
    generated = REPO / "bench" / "data"
    return [p for p in files if ".venv" not in p.parts and not p.is_relative_to(generated)]


SOURCES = sources()


def test_the_source_tree_is_found() -> None:
    names = {module_name(p) for p in SOURCES}
    assert {"billing.engine", "config.settings", "bus.kafka", "wattpay.cli"} <= names


def test_imports_point_down_the_layers() -> None:
    wrong = [w for path in SOURCES for w in upward(module_name(path), imports(path))]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_nothing_imports_the_command_line_but_itself() -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {imported}"
        for path in SOURCES
        if not module_name(path).startswith("wattpay.cli")
        for line, imported in imports(path)
        if imported == "wattpay.cli" or imported.startswith("wattpay.cli.")
    ]
    assert not wrong, "\n".join(wrong)


def test_nothing_below_wattpay_imports_it() -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {imported}"
        for path in SOURCES
        if layer(module_name(path)) is not None and layer(module_name(path)) <= LAYERS["pipelines"]
        for line, imported in imports(path)
        if imported.split(".", 1)[0] == "wattpay"
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("library", sorted(ONLY_IN))
def test_each_library_is_called_from_one_module(library: str) -> None:
    users = {
        str(path.relative_to(REPO))
        for path in SOURCES
        for _, imported in imports(path)
        if imported.split(".", 1)[0] == library
    }
    assert users <= ONLY_IN[library], sorted(users - ONLY_IN[library])


def test_the_billing_core_imports_no_infrastructure() -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {imported}"
        for path in SOURCES
        if module_name(path).split(".", 1)[0] == "billing"
        for line, imported in imports(path)
        if imported.split(".", 1)[0] in NOT_IN_CORE
    ]
    assert not wrong, "\n".join(wrong)


def test_bytewax_is_imported_in_the_flows_package_only() -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {imported}"
        for path in SOURCES
        if package(module_name(path)) not in (ENGINE_ROOM, "bench")
        for line, imported in imports(path)
        if imported.split(".", 1)[0] == "bytewax"
    ]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_violation() -> None:
    """A core module reaching a connector, lazily or relatively, is reported; so is a sibling."""
    source = (
        "from billing.clock import LOCAL_ZONE\n"
        "from ..bus import kafka\n"
        "def later():\n"
        "    import wattpay.cli\n"
    )
    found = list(parsed_imports(source, "billing"))  # as in billing/rules.py
    assert found == [(1, "billing.clock"), (2, "bus"), (4, "wattpay.cli")]
    assert upward("billing.rules", iter(found)) == [
        "billing.rules:2 imports bus (a higher layer)",
        "billing.rules:4 imports wattpay.cli (a higher layer)",
    ]
    assert upward("wattpay.up", iter([(1, "wattpay.cli.common")])) == [
        "wattpay.up:1 imports wattpay.cli.common (a higher layer)"
    ]
    sideways = [(3, "bus.kafka"), (4, "store.schema"), (5, "config.settings")]
    assert upward("store.loader", iter(sideways)) == [
        "store.loader:3 imports bus.kafka (a sibling package)"
    ]
    assert upward("web.app", iter([(7, "jobs.documents"), (8, "store.clickhouse")])) == [
        "web.app:7 imports jobs.documents (a sibling package)"
    ]
