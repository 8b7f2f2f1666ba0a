"""``wattpay backup`` and ``wattpay restore``: copy an installation and bring it up elsewhere."""

from __future__ import annotations

import argparse
from pathlib import Path

from wattpay.cli.common import add_command
from wattpay.cli.common import settings_from_args as _settings


def cmd_backup(args: argparse.Namespace) -> int:
    """Take a consistent copy of an installation, running or stopped."""
    from wattpay.backup import take_backup

    settings = _settings(args)
    report = take_backup(Path(args.state_dir), Path(args.directory), settings.clickhouse_dsn)
    how = f"running, stopped for {report.frozen_seconds:.2f}s" if report.running else "not running"
    print(
        f"backup of {Path(args.state_dir).resolve()} ({how}) in {report.target}: "
        f"{report.files} files, {report.bytes / 1e6:.1f} MB"
        + ("" if report.clickhouse != "server" else "; ClickHouse is a server, not copied"),
        flush=True,
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Bring a backup up in a new state directory."""
    from wattpay.backup import restore_backup

    state_dir = Path(args.state_dir)
    clickhouse = Path(args.clickhouse_dir) if args.clickhouse_dir else state_dir / "clickhouse"
    manifest = restore_backup(Path(args.directory), state_dir, clickhouse)
    dsn = f"chdb://{clickhouse.resolve()}" if manifest["clickhouse"] != "server" else "DSN"
    print(
        f"restored the backup taken at {manifest['taken_at']} into {state_dir.resolve()}; "
        f"start it with: wattpay up --state-dir {state_dir} --clickhouse {dsn}",
        flush=True,
    )
    return 0


def add_backup_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``backup`` and ``restore``."""
    backup = add_command(
        commands,
        "backup",
        "take a consistent copy of an installation, running or not",
        """
        wattpay backup /var/backups/wattpay-2026-12-05    # of the wattpay up in .wattpay/
        wattpay backup copy --state-dir /srv/wattpay --clickhouse chdb:///srv/wattpay-ch
        """,
        description="Copy the broker's store (topics and committed offsets), the recovery "
        "snapshots and the embedded ClickHouse of an installation into a new directory. A "
        "running wattpay up is copied while it runs, then once more, only what changed, with "
        "its processes stopped for that moment: the copy is what a crash at that instant would "
        "leave, which wattpay recovers from with nothing lost or billed twice.",
    )
    backup.add_argument("directory", help="a new (or empty) directory for the copy")
    backup.add_argument(
        "--state-dir",
        default=".wattpay",
        metavar="DIR",
        help="state directory of the installation (default: %(default)s)",
    )
    backup.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="its ClickHouse when it is not running (a running wattpay up names its own)",
    )
    backup.set_defaults(handler=cmd_backup)

    restore = add_command(
        commands,
        "restore",
        "bring a backup up in a new state directory",
        """
        wattpay restore /var/backups/wattpay-2026-12-05 --state-dir /srv/wattpay
        wattpay restore copy --state-dir new/.wattpay --clickhouse-dir new/clickhouse
        """,
        description="Copy a backup into a new state directory (and ClickHouse directory). "
        "wattpay up on them carries on where the installation was: billing resumes from its "
        "snapshot and re-reads the inputs after it, the loader from its committed offsets.",
    )
    restore.add_argument("directory", help="a directory written by wattpay backup")
    restore.add_argument(
        "--state-dir", required=True, metavar="DIR", help="the new state directory (new or empty)"
    )
    restore.add_argument(
        "--clickhouse-dir",
        metavar="DIR",
        help="the new embedded ClickHouse directory (default: STATE_DIR/clickhouse)",
    )
    restore.set_defaults(handler=cmd_restore)
