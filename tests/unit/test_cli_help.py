"""The command line explains itself: every option has help, every command has examples."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from wattpay.cli import build_parser


def commands(
    parser: argparse.ArgumentParser, name: str = "wattpay"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and every subcommand parser below it, with their command lines."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from commands(sub, f"{name} {sub_name}")


def help_texts(parser: argparse.ArgumentParser) -> Iterator[str]:
    """Every text ``--help`` can show for this parser."""
    yield parser.description or ""
    yield parser.epilog or ""
    for action in parser._actions:
        yield action.help or ""
        if isinstance(action, argparse._SubParsersAction):
            yield from (choice.help or "" for choice in action._choices_actions)


ALL = list(commands(build_parser()))


def test_there_are_commands_to_check() -> None:
    names = {name for name, _ in ALL}
    assert {
        "wattpay replay",
        "wattpay up",
        "wattpay account open",
        "wattpay ingest modbus",
    } <= names


@pytest.mark.parametrize(("name", "parser"), ALL, ids=[name for name, _ in ALL])
def test_every_option_and_command_has_help(name: str, parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"{name} {choice.dest} has no help line"


@pytest.mark.parametrize(("name", "parser"), ALL, ids=[name for name, _ in ALL])
def test_every_command_shows_examples(name: str, parser: argparse.ArgumentParser) -> None:
    assert parser.formatter_class is argparse.RawDescriptionHelpFormatter, name
    assert (parser.epilog or "").startswith("examples:\n"), f"{name} has no examples"
    examples = parser.epilog.splitlines()[1:]
    assert examples and all("wattpay " in line for line in examples), name
    assert parser.description, f"{name} has no description"


@pytest.mark.parametrize(("name", "parser"), ALL, ids=[name for name, _ in ALL])
def test_help_speaks_plainly(name: str, parser: argparse.ArgumentParser) -> None:
    """No references to documents behind the program and no reStructuredText markup."""
    for text in help_texts(parser):
        assert "SPEC" not in text, f"{name}: {text!r}"
        assert re.search(r"\bS\d+(\.\d+)?\b", text) is None, f"{name}: {text!r}"
        assert "``" not in text, f"{name}: {text!r}"


@pytest.mark.parametrize(("name", "parser"), ALL, ids=[name for name, _ in ALL])
def test_help_renders(name: str, parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert "examples:" in text and "%(" not in text, name


@pytest.mark.parametrize(("name", "parser"), ALL, ids=[name for name, _ in ALL])
def test_command_lists_read_alike(name: str, parser: argparse.ArgumentParser) -> None:
    """Every line of a command list starts in lower case and ends without a full stop."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                line = choice.help or ""
                assert line[:1].islower() and not line.endswith("."), f"{name}: {line!r}"
