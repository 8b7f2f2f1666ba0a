"""Which SQL an analyst may run: decided on ClickHouse's own parse tree, not on the text.

`ClickHouseStore.query_readonly` asks ClickHouse to format the statement (``formatQuery``,
which parses exactly one statement) and to print its tree (``EXPLAIN AST``); this module
reads that tree and allows only a single ``SELECT`` / ``WITH … SELECT`` / ``SHOW TABLES`` /
``SHOW CREATE TABLE`` / ``DESCRIBE`` over wattpay's tables and ``system.tables`` /
``system.columns``, calling only the functions of `store.sqlfunctions`: no table functions,
no ``SETTINGS``, no ``FORMAT``, no ``INTO OUTFILE``, no query parameters.

``EXPLAIN AST`` prints one node per line: indentation, node type, name or value, an optional
``(alias …)`` and ``(children N)``. Only identifiers can carry raw newlines or a fake
``(children N)`` into that text, so `check_identifiers` first refuses quoted identifiers with
escapes or parentheses (seen in the formatted statement); the tree is then read by its child
counts, and any line that does not fit refuses the query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.errors import OperatorError
from store import schema
from store.sqlfunctions import allowed_function

SYSTEM_TABLES = frozenset({"system.tables", "system.columns"})
WATTPAY_TABLES = frozenset(t.name for t in (*schema.TABLES, schema.SCHEMA_MIGRATIONS))
MAX_SQL_CHARS = 20_000

# Node types allowed anywhere below an allowed statement.
_NODES = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "SelectQuery",
        "ExpressionList",
        "Function",
        "Identifier",
        "Literal",
        "Asterisk",
        "QualifiedAsterisk",
        "ColumnsRegexpMatcher",
        "ColumnsListMatcher",
        "QualifiedColumnsRegexpMatcher",
        "QualifiedColumnsListMatcher",
        "ColumnsTransformerList",
        "ColumnsExceptTransformer",
        "ColumnsReplaceTransformer",
        "Replacement",
        "TablesInSelectQuery",
        "TablesInSelectQueryElement",
        "TableExpression",
        "TableIdentifier",
        "TableJoin",
        "ArrayJoin",
        "Subquery",
        "WithElement",
        "OrderByElement",
        "WindowDefinition",
        "WindowListElement",
        "SampleRatio",
        "InterpolateElement",
        "DataType",
    }
)
_STATEMENTS = frozenset(
    {"SelectWithUnionQuery", "ShowTables", "DescribeQuery", "ShowCreateTableQuery"}
)
_IN_FUNCTIONS = frozenset(
    {"in", "notin", "nullin", "notnullin", "globalin", "globalnotin", "globalnullin"}
)
# The FORMAT clickhouse-connect itself appends to every query it sends.
_DRIVER_FORMAT = "Native"
_SHOW_LISTS = re.compile(r"SHOW (?:FULL )?(?:TABLES|DATABASES)(?:\s|$)")
_CHILDREN = re.compile(r" \(children (\d+)\)$")
_ALIAS = re.compile(r" \(alias [^()]*\)$")
_TYPE = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class QueryLimits:
    """Bounds on an analyst's query, so none holds the (one, shared) client for long."""

    max_seconds: int = 10
    max_result_rows: int = 100_000
    max_result_bytes: int = 200_000_000
    max_memory_bytes: int = 1_000_000_000

    def settings(self) -> dict[str, Any]:
        """Per-query ClickHouse settings; ``readonly`` last (after it nothing may be set)."""
        return {
            "max_execution_time": self.max_seconds,
            "timeout_overflow_mode": "throw",
            # ``limit`` stops the result at one row past the bound, so the bound always trips
            # (``max_result_rows`` alone lets a first huge block through).
            "limit": self.max_result_rows + 1,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_bytes,
            "readonly": 1,
        }


class RefusedQuery(OperatorError, ValueError):
    """A statement that may not run on the read-only query path, with the reason."""


@dataclass
class Node:
    """One node of ``EXPLAIN AST`` output."""

    type: str
    rest: str
    children: list[Node] = field(default_factory=list)

    def walk(self) -> Iterable[Node]:
        """Every node from this one down, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


def check_size(sql: str) -> None:
    """Refuse empty statements and statements too long to be an analyst's query."""
    if not sql.strip():
        raise RefusedQuery("empty query: give one SELECT, SHOW or DESCRIBE statement")
    if len(sql) > MAX_SQL_CHARS:
        raise RefusedQuery(f"query longer than {MAX_SQL_CHARS} characters")


def check_identifiers(formatted: str) -> None:
    """Refuse quoted identifiers with escapes or parentheses in ClickHouse's formatted text.

    In ``formatQuery`` output a string literal is ``'…'`` with backslash escapes and a quoted
    identifier is ```…```; such identifiers would print ambiguously in ``EXPLAIN AST``.
    """
    i, n = 0, len(formatted)
    while i < n:
        ch = formatted[i]
        if ch == "'":
            i += 1
            while i < n and formatted[i] != "'":
                i += 2 if formatted[i] == "\\" else 1
        elif ch in '`"':
            close = formatted.find(ch, i + 1)
            name = formatted[i + 1 : close] if close > 0 else formatted[i + 1 :]
            if close < 0 or any(c in name for c in "\\()") or not name.isprintable():
                raise RefusedQuery(f"identifier {formatted[i : i + 40]!r}… is not allowed here")
            i = close
        i += 1


def parse_ast(lines: Sequence[str]) -> Node:
    """The tree of ``EXPLAIN AST`` lines; RefusedQuery if any line does not fit the tree."""
    position = 0

    def node(depth: int) -> Node:
        nonlocal position
        if position >= len(lines):
            raise RefusedQuery("unexpected parse tree (it ended early)")
        line = lines[position]
        text = line.lstrip(" ")
        if len(line) - len(text) != depth:
            raise RefusedQuery(f"unexpected parse tree line {line!r}")
        position += 1
        children = _CHILDREN.search(text)
        if children is not None:
            text = text[: children.start()]
        alias = _ALIAS.search(text)
        if alias is not None:
            text = text[: alias.start()]
        kind, _, rest = text.partition(" ")
        if not _TYPE.fullmatch(kind):
            raise RefusedQuery(f"unexpected parse tree line {line!r}")
        current = Node(kind, rest)
        for _ in range(int(children[1]) if children else 0):
            current.children.append(node(depth + 1))
        return current

    root = node(0)
    if position != len(lines):
        raise RefusedQuery(f"unexpected parse tree line {lines[position]!r}")
    return root


def check_tree(root: Node, formatted: str) -> None:
    """Refuse anything but one allowed read statement over allowed tables and functions.

    ``formatted`` is ClickHouse's own formatting of the statement: the tree prints every
    ``SHOW …`` list (tables, settings, clusters, merges…) as the same ``ShowTables`` node,
    so which list it is comes from that canonical text.
    """
    if root.type not in _STATEMENTS:
        raise RefusedQuery(
            "only SELECT, WITH … SELECT, SHOW TABLES, SHOW CREATE TABLE or DESCRIBE may run "
            f"here, not {root.type}"
        )
    body = _strip_driver_format(root)
    if root.type == "SelectWithUnionQuery":
        _check_select_top(body)
    elif root.type == "ShowCreateTableQuery":
        names = [c.rest for c in body]
        if any(c.type != "Identifier" for c in body) or not names:
            raise RefusedQuery("unexpected SHOW CREATE TABLE form")
        _check_table(".".join(names), with_clause=False)
        return
    elif root.type == "ShowTables":
        if _SHOW_LISTS.match(formatted) is None:
            raise RefusedQuery("of the SHOW lists only SHOW TABLES and SHOW DATABASES may run here")
        return
    with_clause = any(n.type == "WithElement" for n in root.walk())
    for node in body:
        _check_nodes(node, with_clause)


def _strip_driver_format(root: Node) -> list[Node]:
    """The statement's children without the ``FORMAT Native`` the driver appends."""
    children = list(root.children)
    if children and children[-1].type == "Identifier" and children[-1].rest == _DRIVER_FORMAT:
        children.pop()
    return children


def _check_select_top(body: list[Node]) -> None:
    """A SELECT's top level holds its union list only: no OUTFILE, FORMAT or SETTINGS."""
    for extra in body[1:]:
        if extra.type == "Literal":
            raise RefusedQuery("INTO OUTFILE is not allowed here")
        if extra.type == "Identifier":
            raise RefusedQuery("a FORMAT clause is not allowed here (use --format)")
        if extra.type == "Set":
            raise RefusedQuery("SETTINGS are not allowed here")
        raise RefusedQuery(f"unexpected {extra.type} in the statement")


def _check_nodes(node: Node, with_clause: bool) -> None:
    """Check one node and everything below it."""
    if node.type == "Set":
        raise RefusedQuery("SETTINGS are not allowed here")
    if node.type not in _NODES:
        raise RefusedQuery(f"{node.type} is not allowed here")
    if node.type == "TableExpression":
        for child in node.children:
            if child.type == "Function":
                raise RefusedQuery(f"table function {child.rest}() is not allowed here")
    elif node.type == "TableIdentifier":
        _check_table(node.rest, with_clause)
    elif node.type == "Identifier":
        _check_column(node.rest)
    elif node.type == "Function":
        if not allowed_function(node.rest):
            raise RefusedQuery(f"function {node.rest}() is not allowed here")
        if node.rest.lower() in _IN_FUNCTIONS:
            _check_in_operand(node, with_clause)
    for child in node.children:
        _check_nodes(child, with_clause)


def _check_in_operand(node: Node, with_clause: bool) -> None:
    """``x IN name`` reads the table ``name``: it must be one an analyst may read."""
    arguments = node.children[0].children if node.children else []
    if len(arguments) == 2 and arguments[1].type == "Identifier":
        _check_table(arguments[1].rest, with_clause)


def _check_table(name: str, with_clause: bool) -> None:
    """Wattpay's tables, system.tables and system.columns; other names only as CTEs."""
    if name in WATTPAY_TABLES or name in SYSTEM_TABLES:
        return
    if "." not in name and with_clause:
        return  # a name from the WITH clause (or, failing that, wattpay's own database)
    raise RefusedQuery(
        f"table {name} is not allowed here: wattpay's tables, system.tables and system.columns"
    )


def _check_column(name: str) -> None:
    """A column may be qualified by a table alias, never by another database's table."""
    first = name.split(".", 1)[0]
    if "." in name and first.lower() in {"system", "information_schema"}:
        if not any(name.startswith(f"{table}.") or name == table for table in SYSTEM_TABLES):
            raise RefusedQuery(f"{name} is not allowed here")
