"""The cluster DDL of ``wattpay migrate --cluster``, checked against the exact expected text."""

import subprocess
import sys

import pytest

from store.cluster import cluster_statements
from store.schema import TABLES


def test_accounts_are_replicated_with_their_version_and_sharded_by_account() -> None:
    statements = cluster_statements("province", "wattpay")
    local = next(s for s in statements if "`accounts_local` ON CLUSTER" in s and "Replicated" in s)
    assert local.endswith(
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/wattpay/accounts', "
        "'{replica}', `version`)\nORDER BY `account_id`"
    )
    head = "CREATE TABLE IF NOT EXISTS `wattpay`.`accounts` "
    distributed = next(s for s in statements if s.startswith(head))
    assert distributed == (
        "CREATE TABLE IF NOT EXISTS `wattpay`.`accounts` ON CLUSTER `province`\n"
        "AS `wattpay`.`accounts_local`\n"
        "ENGINE = Distributed(`province`, `wattpay`, `accounts_local`, cityHash64(`account_id`))"
    )


def test_time_tables_are_partitioned_by_month() -> None:
    statements = cluster_statements("c1")
    daily = next(s for s in statements if "`daily_usage_local`" in s and "ENGINE = Replicated" in s)
    assert "PARTITION BY toYYYYMM(`day`)\nORDER BY (`account_id`, `day`)" in daily
    ledger = next(s for s in statements if "`ledger_local`" in s and "ENGINE = Replicated" in s)
    assert "PARTITION BY toYYYYMM(`ts`)" in ledger


def test_every_table_gets_a_local_and_a_distributed_table() -> None:
    statements = cluster_statements("c1")
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS `wattpay` ON CLUSTER `c1`"
    assert len(statements) == 1 + 2 * len(TABLES)
    for table in TABLES:
        assert sum(f"`{table.name}_local`" in s and "Replicated" in s for s in statements) == 1
        engine = f"Distributed(`c1`, `wattpay`, `{table.name}_local`"
        assert sum(engine in s for s in statements) == 1


def test_names_are_quoted_so_a_cluster_name_cannot_inject_sql() -> None:
    statements = cluster_statements("c`; DROP TABLE x; --")
    assert all("ON CLUSTER `c\\`; DROP TABLE x; --`" in s for s in statements)
    with pytest.raises(ValueError):
        cluster_statements("")


def test_migrate_cluster_prints_the_statements() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wattpay.cli", "migrate", "--cluster", "province"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ON CLUSTER `province`") == 1 + 2 * len(TABLES)
    assert "ReplicatedReplacingMergeTree" in done.stdout
