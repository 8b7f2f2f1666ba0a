"""Shared pieces of the ``wattpay`` subcommands."""

from __future__ import annotations

import argparse
import os

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
