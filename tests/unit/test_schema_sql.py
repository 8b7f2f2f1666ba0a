import datetime as dt
from decimal import Decimal

import pytest

from store import schema

READINGS_SQL = """\
CREATE TABLE IF NOT EXISTS `readings`
(
    `meter_id` String,
    `account_id` String,
    `ts` DateTime64(3, 'Asia/Shanghai'),
    `energy_kwh` Decimal(18, 3),
    `source` String
)
ENGINE = ReplacingMergeTree
ORDER BY (`meter_id`, `ts`)"""

ACCOUNTS_SQL = """\
CREATE TABLE IF NOT EXISTS `accounts`
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
    `version` UInt64,
    `opening_balance` Decimal(18, 2),
    `landlord_id` String
)
ENGINE = ReplacingMergeTree(`version`)
ORDER BY `account_id`"""

REJECTED_SQL = """\
CREATE TABLE IF NOT EXISTS `rejected`
(
    `rejection_id` String,
    `topic` LowCardinality(String),
    `key` String,
    `payload` String,
    `payload_base64` UInt8,
    `reason` LowCardinality(String),
    `detail` String,
    `received_at` DateTime64(3, 'Asia/Shanghai')
)
ENGINE = ReplacingMergeTree
ORDER BY `rejection_id`"""

SCHEMA_MIGRATIONS_SQL = """\
CREATE TABLE IF NOT EXISTS `schema_migrations`
(
    `version` UInt32,
    `description` String,
    `applied_at` DateTime64(3, 'Asia/Shanghai')
)
ENGINE = ReplacingMergeTree
ORDER BY `version`"""

ALL_TABLES = [
    "readings",
    "rejected",
    "intervals",
    "daily_usage",
    "ledger",
    "points_ledger",
    "events",
    "accounts",
    "account_events",
    "bills",
    "usage_analysis",
    "invoices",
    "deliveries",
    "tariff_scenarios",
]


def test_create_table_sql_readings() -> None:
    assert schema.create_table_sql(schema.table_spec("readings")) == READINGS_SQL


def test_create_table_sql_accounts_uses_version_column() -> None:
    assert schema.create_table_sql(schema.table_spec("accounts")) == ACCOUNTS_SQL


def test_create_table_sql_single_key_has_no_parentheses() -> None:
    assert schema.create_table_sql(schema.table_spec("rejected")) == REJECTED_SQL


def test_create_table_sql_quotes_keyword_columns() -> None:
    sql = schema.create_table_sql(schema.table_spec("intervals"))
    assert "    `start` DateTime64(3, 'Asia/Shanghai'),\n" in sql
    assert "    `end` DateTime64(3, 'Asia/Shanghai'),\n" in sql
    assert "    `cost` Decimal(38, 7)\n)" in sql
    assert sql.endswith("ORDER BY (`account_id`, `start`, `tier`)")


def test_migration_statements_create_record_table_then_every_table() -> None:
    statements = schema.migration_statements()
    assert statements[0] == SCHEMA_MIGRATIONS_SQL
    assert statements[1] == READINGS_SQL
    creates = [schema.create_table_sql(schema.table_spec(t)) for t in ALL_TABLES]
    upgrade_2 = [
        "ALTER TABLE `rejected` ADD COLUMN IF NOT EXISTS `payload_base64` UInt8 AFTER `payload`"
    ]
    upgrade_3 = [
        schema.add_column_sql("accounts", "opening_balance"),
        schema.add_column_sql("accounts", "landlord_id"),
        *creates[-6:-2],
    ]
    upgrade_4_5 = creates[-2:]  # deliveries, tariff_scenarios
    assert statements[1:] == creates + upgrade_2 + upgrade_3 + upgrade_4_5
    assert all(
        s.startswith(
            (
                "CREATE TABLE IF NOT EXISTS ",
                "ALTER TABLE `accounts` ADD COLUMN IF NOT ",
                "ALTER TABLE `rejected` ADD COLUMN IF NOT ",
            )
        )
        for s in statements
    )


def test_migrations_are_numbered_from_one_in_order() -> None:
    versions = [m.version for m in schema.MIGRATIONS]
    assert versions == list(range(1, max(versions) + 1))
    assert [m.version for m in schema.pending_migrations([])] == versions
    assert schema.pending_migrations(versions) == []


def test_every_table_is_replacing_merge_tree() -> None:
    for name in ALL_TABLES:
        assert "\nENGINE = ReplacingMergeTree" in schema.create_table_sql(schema.table_spec(name))


def test_insert_columns() -> None:
    assert schema.insert_columns("readings") == [
        "meter_id",
        "account_id",
        "ts",
        "energy_kwh",
        "source",
    ]
    assert schema.insert_columns("points_ledger") == [
        "entry_id",
        "account_id",
        "seq",
        "ts",
        "kind",
        "points",
        "balance_after",
    ]
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        schema.insert_columns("nope")


def test_add_column_sql() -> None:
    assert schema.add_column_sql("readings", "source") == (
        "ALTER TABLE `readings` ADD COLUMN IF NOT EXISTS `source` String AFTER `energy_kwh`"
    )
    assert schema.add_column_sql("readings", "meter_id") == (
        "ALTER TABLE `readings` ADD COLUMN IF NOT EXISTS `meter_id` String FIRST"
    )
    with pytest.raises(ValueError, match="no column"):
        schema.add_column_sql("readings", "quality")


TS = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
READING = {
    "meter_id": "M1",
    "account_id": "A1",
    "ts": TS,
    "energy_kwh": Decimal("1.250"),
    "source": "modbus",
}


def test_row_values_orders_by_insert_columns() -> None:
    shuffled = dict(reversed(list(READING.items())))
    assert schema.row_values("readings", shuffled) == ("M1", "A1", TS, Decimal("1.250"), "modbus")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("ts", dt.datetime(2024, 3, 1, 12, 0), "timezone-aware"),  # noqa: DTZ001
        ("ts", "2024-03-01T12:00:00+08:00", "timezone-aware"),
        ("energy_kwh", Decimal("1.0005"), "more than 3 decimal places"),
        ("energy_kwh", 1.25, "finite Decimal"),
        ("energy_kwh", Decimal("NaN"), "finite Decimal"),
        ("energy_kwh", Decimal("1E+15"), "out of range"),
        ("meter_id", 7, "expected str"),
    ],
)
def test_row_values_rejects_values_that_would_not_round_trip(
    column: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        schema.row_values("readings", {**READING, column: value})


def test_row_values_accepts_trailing_zeros_and_ints_for_decimals() -> None:
    row = {**READING, "energy_kwh": Decimal("2.50000")}
    assert schema.row_values("readings", row)[3] == Decimal("2.5")
    assert schema.row_values("readings", {**READING, "energy_kwh": 3})[3] == Decimal(3)


def test_row_values_checks_integer_ranges_and_dates() -> None:
    interval = {
        "account_id": "A1",
        "meter_id": "M1",
        "start": TS,
        "end": TS,
        "kwh": Decimal("1.000"),
        "period": "flat",
        "tier": 256,
        "price": Decimal("0.5283"),
        "cost": Decimal("0.5283000"),
    }
    with pytest.raises(ValueError, match=r"intervals\.tier \(UInt8\)"):
        schema.row_values("intervals", interval)
    with pytest.raises(ValueError, match="expected an int"):
        schema.row_values("intervals", {**interval, "tier": True})
    daily = dict.fromkeys(schema.insert_columns("daily_usage"), Decimal(0))
    daily |= {"account_id": "A1", "day": TS}
    with pytest.raises(ValueError, match="expected a date"):
        schema.row_values("daily_usage", daily)


def test_row_values_reports_missing_and_unknown_columns() -> None:
    row = {k: v for k, v in READING.items() if k != "source"} | {"extra": 1}
    with pytest.raises(
        ValueError, match=r"lacks columns \['source'\], has unknown columns \['extra'\]"
    ):
        schema.row_values("readings", row)
