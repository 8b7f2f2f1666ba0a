"""The parse-tree reader of the analysts' query path, on ``EXPLAIN AST`` text."""

import pytest

from store.sqlfunctions import allowed_function
from store.sqlguard import RefusedQuery, check_identifiers, check_tree, parse_ast

SELECT_FILE = [
    "SelectWithUnionQuery (children 2)",
    " ExpressionList (children 1)",
    "  SelectQuery (children 1)",
    "   ExpressionList (children 1)",
    "    Function file (children 1)",
    "     ExpressionList (children 1)",
    "      Literal '/etc/shadow'",
    " Identifier Native",
]


def test_a_tree_is_read_by_its_child_counts() -> None:
    root = parse_ast(SELECT_FILE)
    assert [n.type for n in root.walk()][:5] == [
        "SelectWithUnionQuery",
        "ExpressionList",
        "SelectQuery",
        "ExpressionList",
        "Function",
    ]
    with pytest.raises(RefusedQuery, match=r"function file\(\)"):
        check_tree(root, "SELECT file('/etc/shadow')")


@pytest.mark.parametrize(
    "lines",
    [
        SELECT_FILE[:-1] + ["Identifier Native"],  # wrong depth
        SELECT_FILE + [" Identifier extra"],  # more lines than the counts say
        SELECT_FILE[:-2],  # fewer
        ["SelectWithUnionQuery (children 1)", " 1bad line"],
        ["SelectWithUnionQuery (children 1)", "b"],
    ],
)
def test_a_tree_that_does_not_fit_is_refused(lines: list[str]) -> None:
    with pytest.raises(RefusedQuery, match="parse tree"):
        parse_ast(lines)


@pytest.mark.parametrize(
    "formatted",
    ["SELECT `a\\nb`", "SELECT 1 AS `x (children 1)`", "SELECT `unterminated", 'SELECT "a\\tb"'],
)
def test_quoted_identifiers_that_could_print_ambiguously_are_refused(formatted: str) -> None:
    with pytest.raises(RefusedQuery, match="identifier"):
        check_identifiers(formatted)


def test_string_literals_may_hold_anything() -> None:
    check_identifiers("SELECT 'a`b(\\n\\'', `Total kWh`")


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("sum", True),
        ("sumIf", True),
        ("uniqExactIfOrNull", True),
        ("COUNT", True),
        ("toStartOfMonth", True),
        ("file", False),
        ("url", False),
        ("dictGet", False),
        ("joinGet", False),
        ("sleep", False),
        ("lowerIf", False),
    ],
)
def test_function_allow_list(name: str, allowed: bool) -> None:
    assert allowed_function(name) is allowed
