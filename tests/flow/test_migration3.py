"""Migration 3 upgrades a database built by the earlier migrations in place (real chdb)."""

import datetime as dt
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from store import schema
from store.clickhouse import ClickHouseStore

SHANGHAI = ZoneInfo("Asia/Shanghai")

# Migration 1 as it was shipped, before the accounts columns and the job tables existed.
OLD_ACCOUNTS = """CREATE TABLE IF NOT EXISTS `accounts`
(
    `account_id` String,
    `meter_id` String,
    `plan` String,
    `status` LowCardinality(String),
    `balance` Decimal(18, 2),
    `available` Decimal(18, 2),
    `overdraft_limit` Decimal(18, 2),
    `points` Int64,
    `ytd_kwh` Decimal(18, 3),
    `updated_at` DateTime64(3, 'Asia/Shanghai'),
    `version` UInt64
)
ENGINE = ReplacingMergeTree(`version`)
ORDER BY `account_id`"""
NEW_TABLES = ("account_events", "bills", "usage_analysis", "invoices")


def _old_database(store: ClickHouseStore) -> None:
    store.command(schema.create_table_sql(schema.SCHEMA_MIGRATIONS))
    for table in schema.TABLES:
        if table.name == "accounts":
            store.command(OLD_ACCOUNTS)
        elif table.name not in NEW_TABLES:
            store.command(schema.create_table_sql(table))
    now = dt.datetime(2026, 1, 1, tzinfo=SHANGHAI)
    store.insert_rows(
        "schema_migrations", [{"version": 1, "description": "initial tables", "applied_at": now}]
    )
    store.insert_values(
        "readings", [("M1", "A1", now, Decimal("1.000"), "modbus")]
    )  # untouched by the upgrade
    store.command(
        "INSERT INTO accounts VALUES ('A1','M1','zhejiang-tiered','active',5.00,5.00,10.00,0,"
        "1.000,'2026-01-01 00:00:00',1)"
    )


def test_migration_3_upgrades_in_place(tmp_path: Path) -> None:
    with ClickHouseStore(f"chdb://{tmp_path / 'ch'}") as store:
        _old_database(store)
        assert store.applied_migrations() == [1]
        assert store.migrate() == [2, 3, 4, 5, 6, 7]
        assert store.applied_migrations() == [1, 2, 3, 4, 5, 6, 7]
        assert store.migrate() == []
        _, rows = store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
        names = {r[0] for r in rows}
        assert set(NEW_TABLES) <= names
        for table in ("accounts", *NEW_TABLES):
            _, cols = store.query(
                f"SELECT name FROM system.columns WHERE table = '{table}' "
                "AND database = currentDatabase() ORDER BY position"
            )
            assert [c[0] for c in cols] == schema.table_spec(table).column_names, table
        _, rows = store.query(
            "SELECT account_id, balance, opening_balance, landlord_id FROM accounts FINAL"
        )
        assert rows == [("A1", Decimal("5.00"), Decimal("0.00"), "")]
        _, rows = store.query("SELECT count() FROM readings")
        assert rows == [(1,)]


def test_fresh_database_gets_everything_from_migration_1(tmp_path: Path) -> None:
    with ClickHouseStore(f"chdb://{tmp_path / 'ch'}") as store:
        assert store.migrate() == [1, 2, 3, 4, 5, 6, 7]
        _, cols = store.query(
            "SELECT name FROM system.columns WHERE table = 'bills' "
            "AND database = currentDatabase() ORDER BY position"
        )
        assert [c[0] for c in cols] == schema.table_spec("bills").column_names
