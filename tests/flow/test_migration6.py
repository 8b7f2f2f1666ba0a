"""Migration 6 re-keys ``intervals`` by (account_id, start, tier) in place (real chdb)."""

import datetime as dt
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from store import schema
from store.clickhouse import ClickHouseError, ClickHouseStore

SHANGHAI = ZoneInfo("Asia/Shanghai")

# ``intervals`` as migration 1 made it before migration 6: a text id leads the key.
OLD_INTERVALS = """CREATE TABLE IF NOT EXISTS `intervals`
(
    `interval_id` String,
    `account_id` String,
    `meter_id` String,
    `start` DateTime64(3, 'Asia/Shanghai'),
    `end` DateTime64(3, 'Asia/Shanghai'),
    `kwh` Decimal(18, 3),
    `period` LowCardinality(String),
    `tier` UInt8,
    `price` Decimal(18, 4),
    `cost` Decimal(38, 7)
)
ENGINE = ReplacingMergeTree
ORDER BY (`account_id`, `interval_id`)"""
T0 = dt.datetime(2026, 3, 1, 0, 0, tzinfo=SHANGHAI)
T1 = T0 + dt.timedelta(minutes=15)
# (id, account, start, end, kWh, tier, cost): a tier crossing gives two rows of one start,
# and a row written twice (a replay) is one row under FINAL.
OLD_ROWS = [
    ("A1:2026-03-01T00:00:00+08:00:1", "A1", T0, T1, "0.250", 1, "0.1345000"),
    ("A1:2026-03-01T00:15:00+08:00:1", "A1", T1, T1 + (T1 - T0), "0.100", 1, "0.0538000"),
    ("A1:2026-03-01T00:15:00+08:00:2", "A1", T1, T1 + (T1 - T0), "0.300", 2, "0.1764000"),
    ("A2:2026-03-01T00:00:00+08:00:1", "A2", T0, T1, "1.000", 1, "0.5380000"),
]
EXPECTED = sorted(
    (account, start, tier, Decimal(kwh), Decimal(cost))
    for _, account, start, _, kwh, tier, cost in OLD_ROWS
)


def _old_database(store: ClickHouseStore) -> None:
    """Migrations 1–5 applied, ``intervals`` in its old layout holding ``OLD_ROWS`` (twice)."""
    store.command(schema.create_table_sql(schema.SCHEMA_MIGRATIONS))
    for table in schema.TABLES:
        sql = OLD_INTERVALS if table.name == "intervals" else schema.create_table_sql(table)
        store.command(sql)
    now = dt.datetime(2026, 1, 1, tzinfo=SHANGHAI)
    store.insert_rows(
        "schema_migrations",
        [{"version": v, "description": f"v{v}", "applied_at": now} for v in range(1, 6)],
    )
    for _ in range(2):  # the second write of every row is what a replay makes
        values = ", ".join(
            f"('{iid}', '{account}', 'M', '{start:%Y-%m-%d %H:%M:%S}', '{end:%Y-%m-%d %H:%M:%S}',"
            f" {kwh}, 'flat', {tier}, 0.5380, {cost})"
            for iid, account, start, end, kwh, tier, cost in OLD_ROWS
        )
        store.command(f"INSERT INTO intervals VALUES {values}")


def _layout(store: ClickHouseStore) -> tuple[str, list[str], set[str]]:
    _, key = store.query(
        "SELECT sorting_key FROM system.tables"
        " WHERE database = currentDatabase() AND name = 'intervals'"
    )
    _, cols = store.query(
        "SELECT name FROM system.columns WHERE table = 'intervals'"
        " AND database = currentDatabase() ORDER BY position"
    )
    _, tables = store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
    return key[0][0], [c[0] for c in cols], {t[0] for t in tables}


def _assert_rebuilt(store: ClickHouseStore) -> None:
    """``intervals`` has the new key and every old row, and no staging table is left."""
    key, _, tables = _layout(store)
    assert key == "account_id, start, tier"
    assert "intervals__rebuild" not in tables
    assert _rows(store) == EXPECTED


def _rows(store: ClickHouseStore) -> list[tuple[object, ...]]:
    _, rows = store.query(
        "SELECT account_id, start, tier, kwh, cost FROM intervals FINAL"
        " ORDER BY account_id, start, tier"
    )
    return rows


def test_migration_6_rekeys_intervals_and_keeps_their_rows(tmp_path: Path) -> None:
    with ClickHouseStore(f"chdb://{tmp_path / 'ch'}") as store:
        _old_database(store)
        assert _layout(store)[0] == "account_id, interval_id"
        assert store.migrate() == [6, 7]  # 7 finds the tables partitioned already
        key, columns, tables = _layout(store)
        assert key == "account_id, start, tier"
        assert columns == schema.table_spec("intervals").column_names
        assert "intervals__rebuild" not in tables
        assert _rows(store) == EXPECTED
        # Written again after the upgrade (a replay), the same parts collapse under FINAL.
        store.insert_rows(
            "intervals",
            [
                {
                    "account_id": account,
                    "meter_id": "M",
                    "start": start,
                    "end": end,
                    "kwh": Decimal(kwh),
                    "period": "flat",
                    "tier": tier,
                    "price": Decimal("0.5380"),
                    "cost": Decimal(cost),
                }
                for _, account, start, end, kwh, tier, cost in OLD_ROWS
            ],
        )
        assert _rows(store) == EXPECTED
        assert store.migrate() == []


def test_a_rebuild_stopped_before_or_after_its_exchange_completes_when_run_again(
    tmp_path: Path,
) -> None:
    with ClickHouseStore(f"chdb://{tmp_path / 'ch'}") as store:
        _old_database(store)
        # Stopped during the copy: a staging table with part of the rows is started over.
        staging = schema.create_table_sql(schema.table_spec("intervals"), "intervals__rebuild")
        store.command(staging)
        store.command(
            "INSERT INTO intervals__rebuild (account_id, meter_id, start, `end`, kwh, period,"
            " tier, price, cost) SELECT account_id, meter_id, start, `end`, kwh, period, tier,"
            " price, cost FROM intervals WHERE account_id = 'A2'"
        )
        store.rebuild("intervals")
        assert _layout(store)[0] == "account_id, start, tier"
        assert _rows(store) == EXPECTED
        # Stopped after the exchange: only the old table is left to drop.
        store.command(staging)
        store.rebuild("intervals")
        _assert_rebuilt(store)


def test_a_fresh_database_has_the_new_key_from_migration_1(tmp_path: Path) -> None:
    with ClickHouseStore(f"chdb://{tmp_path / 'ch'}") as store:
        store.migrate()
        key, columns, tables = _layout(store)
        assert key == "account_id, start, tier"
        assert "interval_id" not in columns
        assert "intervals__rebuild" not in tables


def test_rows_written_during_the_copy_are_kept(tmp_path: Path) -> None:
    late = ("A3:2026-03-01T00:00:00+08:00:1", "A3", T0, T1, "2.000", 1, "1.0760000")

    class Writer(ClickHouseStore):
        """A loader writing into the old table while the rebuild copies it."""

        def command(self, sql: str) -> None:
            super().command(sql)
            if sql.startswith("INSERT INTO `intervals__rebuild`"):
                iid, account, start, end, kwh, tier, cost = late
                super().command(
                    f"INSERT INTO intervals VALUES ('{iid}', '{account}', 'M',"
                    f" '{start:%Y-%m-%d %H:%M:%S}', '{end:%Y-%m-%d %H:%M:%S}', {kwh}, 'flat',"
                    f" {tier}, 0.5380, {cost})"
                )

    with Writer(f"chdb://{tmp_path / 'ch'}") as store:
        _old_database(store)
        assert store.migrate() == [6, 7]  # 7 finds the tables partitioned already
        _, _, start, _, kwh, tier, cost = late
        assert _rows(store) == sorted([*EXPECTED, ("A3", start, tier, Decimal(kwh), Decimal(cost))])


def test_an_exchange_undone_by_a_second_migration_is_raised_and_completed_next_time(
    tmp_path: Path,
) -> None:
    class Raced(ClickHouseStore):
        """Another migration exchanges the same two tables right after this one."""

        def command(self, sql: str) -> None:
            super().command(sql)
            if sql.startswith("EXCHANGE TABLES"):
                super().command(sql)

    with Raced(f"chdb://{tmp_path / 'ch'}") as store:
        _old_database(store)
        with pytest.raises(ClickHouseError, match="another migration"):
            store.migrate()
        assert store.applied_migrations() == [1, 2, 3, 4, 5]
        assert _layout(store)[0] == "account_id, interval_id"  # swapped back, nothing lost
    with ClickHouseStore(f"chdb://{tmp_path / 'ch'}") as store:
        assert store.migrate() == [6, 7]  # 7 finds the tables partitioned already
        _assert_rebuilt(store)


def test_a_table_this_store_did_not_make_is_never_rebuilt(tmp_path: Path) -> None:
    """A ``MergeTree`` (not Replacing) ``intervals``: refused, nothing changed, not recorded."""
    with ClickHouseStore(f"chdb://{tmp_path / 'ch'}") as store:
        _old_database(store)
        store.command("DROP TABLE intervals")
        store.command(OLD_INTERVALS.replace("ReplacingMergeTree", "MergeTree"))
        with pytest.raises(ClickHouseError, match="MergeTree table, which this migration does"):
            store.migrate()
        key, columns, tables = _layout(store)
        assert key == "account_id, interval_id" and "interval_id" in columns
        assert "intervals__rebuild" not in tables
        assert 6 not in store.applied_migrations()


class _ClusterNode(ClickHouseStore):
    """A server of a cluster: ``intervals`` reported as the Distributed table it is there.

    The embedded engine has no cluster to put a Distributed table on; everything else, the
    shard's ``intervals_local`` included, is a real table of this chdb.
    """

    def _engine(self, table: str) -> str | None:
        return "Distributed" if table == "intervals" else super()._engine(table)


def test_a_cluster_table_is_left_to_its_operators(tmp_path: Path) -> None:
    with _ClusterNode(f"chdb://{tmp_path / 'ch'}") as store:
        _old_database(store)
        store.command(OLD_INTERVALS.replace("`intervals`", "`intervals_local`"))
        # The shard's table still has the old key: refused, before anything is copied.
        with pytest.raises(ClickHouseError, match="give intervals_local on every shard the key"):
            store.migrate()
        assert _layout(store)[0] == "account_id, interval_id"
        assert 6 not in store.applied_migrations()
        # Rebuilt by the operators: the migration passes and changes nothing here.
        store.command("DROP TABLE intervals_local")
        new = schema.create_table_sql(schema.table_spec("intervals"), "intervals_local")
        store.command(new)
        assert store.migrate() == [6, 7]  # 7 finds the tables partitioned already
        assert _layout(store)[0] == "account_id, interval_id"  # this store's own table untouched
        assert _rows(store) == EXPECTED
