"""Layers point one way: billing ← config ← connectors and flows ← services ← command line.

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

# Lower numbers are lower layers; a module may import its own layer and those below it.
LAYERS = {
    "billing": 0,
    "config": 1,
    "sinks": 2,
    "ingest": 2,
    "simulate": 2,
    "pipelines": 2,
    "jobs": 2,
    "web": 3,
    "notify": 3,
    "wattpay": 3,
    "wattpay.cli": 4,
    "bench": 5,
}
PACKAGES = (
    "billing",
    "config",
    "sinks",
    "ingest",
    "simulate",
    "pipelines",
    "jobs",
    "web",
    "notify",
    "wattpay",
)
# Each fast-moving library is called from one module only.
ONLY_IN = {
    "confluent_kafka": {"sinks/kafka.py"},
    "clickhouse_connect": {"sinks/clickhouse.py"},
    "chdb": {"sinks/clickhouse.py"},
    "pymodbus": {"ingest/modbus.py"},
}
NOT_IN_CORE = {"bytewax", "confluent_kafka", "clickhouse_connect", "chdb", "pymodbus", "polars"}


def layer(module: str) -> int | None:
    """The layer of a project module (``wattpay.cli`` apart from the other services)."""
    if module == "wattpay.cli" or module.startswith("wattpay.cli."):
        return LAYERS["wattpay.cli"]
    return LAYERS.get(module.split(".", 1)[0])


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
    """The imports of module ``own`` that reach a higher layer."""
    mine = layer(own)
    return [
        f"{own}:{line} imports {imported}"
        for line, imported in found
        if mine is not None and (layer(imported) or 0) > mine
    ]


def sources() -> list[Path]:
    files = [p for name in (*PACKAGES, "bench") for p in sorted((REPO / name).rglob("*.py"))]
    # bench/data holds generated inputs and baseline trees extracted by the benchmarks.
    generated = REPO / "bench" / "data"
    return [p for p in files if ".venv" not in p.parts and not p.is_relative_to(generated)]


SOURCES = sources()


def test_the_source_tree_is_found() -> None:
    names = {module_name(p) for p in SOURCES}
    assert {"billing.engine", "config.settings", "sinks.kafka", "wattpay.cli"} <= names


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


def test_connectors_and_flows_import_no_service() -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {imported}"
        for path in SOURCES
        if layer(module_name(path)) is not None and layer(module_name(path)) <= 2
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


def test_the_check_sees_a_violation() -> None:
    """A core module reaching a connector, lazily or relatively, is reported."""
    source = (
        "from billing.clock import LOCAL_ZONE\n"
        "from ..sinks import kafka\n"
        "def later():\n"
        "    import wattpay.cli\n"
    )
    found = list(parsed_imports(source, "billing"))  # as in billing/rules.py
    assert found == [(1, "billing.clock"), (2, "sinks"), (4, "wattpay.cli")]
    assert upward("billing.rules", iter(found)) == [
        "billing.rules:2 imports sinks",
        "billing.rules:4 imports wattpay.cli",
    ]
    assert upward("wattpay.up", iter([(1, "wattpay.cli.common")])) == [
        "wattpay.up:1 imports wattpay.cli.common"
    ]
