"""Shared pieces of the ``wattpay`` subcommands."""

from __future__ import annotations

import argparse
import os
import textwrap

from config.settings import Settings, load_settings


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from ``--config``, ``--clickhouse`` and ``--brokers``.

    A command that talks to Kafka and names no brokers uses a ``wattpay up`` running from
    this directory, when there is one.
    """
    brokers = getattr(args, "brokers", None)
    if hasattr(args, "brokers") and not brokers and not os.environ.get("WATTPAY_BROKERS"):
        from wattpay.instance import running_instance

        instance = running_instance()  # publish to the local `wattpay up` when one runs
        brokers = str(instance["brokers"]) if instance else None
    return load_settings(
        args.config,
        clickhouse_dsn=getattr(args, "clickhouse", None),
        brokers=brokers,
    )


def add_command(
    commands: argparse._SubParsersAction,
    name: str,
    summary: str,
    examples: str,
    *,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` shows its summary (or description) and an examples list.

    ``examples`` is one example a line, each optionally followed by ``#`` and what it does.
    """
    return commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description or summary[:1].upper() + summary[1:] + ".", 88),
        epilog=examples_epilog(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def examples_epilog(examples: str) -> str:
    """The ``examples:`` section of a help text, lines kept as written."""
    lines = textwrap.dedent(examples).strip().splitlines()
    return "examples:\n" + "\n".join("  " + line.rstrip() for line in lines)
