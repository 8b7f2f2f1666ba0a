"""Integration tests against the real embedded ClickHouse (chdb), one directory per test."""

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sinks import schema
from sinks.clickhouse import (
    BatchWriter,
    ClickHouseError,
    ClickHouseStore,
    check_readonly_sql,
    mask_dsn,
    normalize_dsn,
)
from tests.paths import REPO

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = dt.UTC
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    # chdb hosts one directory per process, so every store is closed before the next test.
    s = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def migrated(store: ClickHouseStore) -> ClickHouseStore:
    store.migrate()
    return store


# One row per table, with edge values: signed and maximal decimals, integer extremes, and
# timestamps in several zones (they must come back as the same instants).
SAMPLE_ROWS: dict[str, dict[str, object]] = {
    "readings": {
        "meter_id": "M-001",
        "account_id": "A-001",
        "ts": dt.datetime(2024, 3, 1, 23, 59, 59, 999000, tzinfo=SHANGHAI),
        "energy_kwh": Decimal("999999999999999.999"),
        "source": "modbus",
    },
    "rejected": {
        "rejection_id": "rej-1",
        "topic": "wattpay.readings",
        "key": "M-001",
        "payload": '{"energy_kwh": "NaN", "note": "引号\\"\\n"}',
        "reason": "malformed",
        "detail": "energy_kwh is NaN",
        "received_at": dt.datetime(2024, 3, 1, 0, 0, 0, 1000, tzinfo=UTC),
    },
    "intervals": {
        "interval_id": "iv-1",
        "account_id": "A-001",
        "meter_id": "M-001",
        "start": dt.datetime(2024, 3, 1, 7, 45, tzinfo=SHANGHAI),
        "end": dt.datetime(2024, 3, 1, 2, 30, tzinfo=IST),
        "kwh": Decimal("0.001"),
        "period": "peak",
        "tier": 255,
        "price": Decimal("-0.0001"),
        "cost": Decimal("9999999999999999999999999999999.9999999"),
    },
    "daily_usage": {
        "account_id": "A-001",
        "day": dt.date(2024, 2, 29),
        "kwh": Decimal("12.345"),
        "kwh_peak": Decimal("5.000"),
        "kwh_valley": Decimal("7.345"),
        "kwh_tier1": Decimal("12.345"),
        "kwh_tier2": Decimal("0"),
        "kwh_tier3": Decimal("0.000"),
        "charge": Decimal("6.52"),
        "ytd_kwh": Decimal("345.678"),
        "closing_balance": Decimal("-999999999999999.99"),
    },
    "ledger": {
        "entry_id": "led-1",
        "account_id": "A-001",
        "seq": 2**64 - 1,
        "ts": dt.datetime(2024, 3, 1, 8, 0, 0, 123000, tzinfo=UTC),
        "kind": "topup",
        "amount": Decimal("100.00"),
        "balance_after": Decimal("93.48"),
        "ref": "pay-1",
    },
    "points_ledger": {
        "entry_id": "pts-1",
        "account_id": "A-001",
        "seq": 0,
        "ts": dt.datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
        "kind": "redemption",
        "points": -(2**63),
        "balance_after": 2**63 - 1,
    },
    "events": {
        "event_id": "ev-1",
        "account_id": "A-001",
        "meter_id": "M-001",
        "ts": dt.datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
        "type": "low_balance",
        "data": '{"available": "9.50"}',
    },
    "accounts": {
        "account_id": "A-001",
        "meter_id": "M-001",
        "plan": "residential_tiered_tou",
        "status": "active",
        "balance": Decimal("93.48"),
        "available": Decimal("143.48"),
        "overdraft_limit": Decimal("50.00"),
        "points": 120,
        "ytd_kwh": Decimal("345.678"),
        "updated_at": dt.datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
        "version": 7,
    },
    "deliveries": {
        "delivery_id": "low_balance:A-001:c|sms|2|2024-03-01T08:00:01.250000+00:00",
        "event_id": "low_balance:A-001:c",
        "type": "low_balance",
        "account_id": "A-001",
        "channel": "sms",
        "attempt": 2,
        "status": "delivered",
        "error": "",
        "segments": 1,
        "ts": dt.datetime(2024, 3, 1, 8, 0, 1, 250000, tzinfo=UTC),
    },
}


def select_final(store: ClickHouseStore, table: str) -> list[tuple[object, ...]]:
    columns = ", ".join(f"`{c}`" for c in schema.insert_columns(table))
    order = ", ".join(f"`{k}`" for k in schema.table_spec(table).order_by)
    _, rows = store.query(f"SELECT {columns} FROM `{table}` FINAL ORDER BY {order}")
    return rows


def test_sample_rows_cover_every_table() -> None:
    assert sorted(SAMPLE_ROWS) == sorted(t.name for t in schema.TABLES)
    for name, row in SAMPLE_ROWS.items():
        assert list(row) == schema.insert_columns(name)


def test_migrate_is_idempotent_and_records_versions(store: ClickHouseStore) -> None:
    assert store.migrate() == [m.version for m in schema.MIGRATIONS]
    assert store.migrate() == []
    assert store.applied_migrations() == [m.version for m in schema.MIGRATIONS]
    _, rows = store.query(
        "SELECT version, description, applied_at FROM schema_migrations FINAL ORDER BY version"
    )
    assert rows[0][:2] == (1, "initial tables")
    assert rows[0][2].tzinfo is not None


def test_migrate_builds_the_declared_columns_and_engines(migrated: ClickHouseStore) -> None:
    for table in schema.TABLES:
        _, rows = migrated.query(
            "SELECT name, type FROM system.columns"
            " WHERE database = currentDatabase() AND table = {t:String} ORDER BY position",
            {"t": table.name},
        )
        assert rows == [(c.name, c.type) for c in table.columns]
        _, engine = migrated.query(
            "SELECT engine_full FROM system.tables"
            " WHERE database = currentDatabase() AND name = {t:String}",
            {"t": table.name},
        )
        expected = "ReplacingMergeTree(version)" if table.version_column else "ReplacingMergeTree "
        assert str(engine[0][0]).startswith(expected)


@pytest.mark.parametrize("table", sorted(SAMPLE_ROWS))
def test_insert_round_trips_every_column_exactly(migrated: ClickHouseStore, table: str) -> None:
    row = SAMPLE_ROWS[table]
    migrated.insert_rows(table, [row])
    (got,) = select_final(migrated, table)
    assert got == tuple(row.values())
    columns = schema.table_spec(table).columns
    for column, value, original in zip(columns, got, row.values(), strict=True):
        assert type(value) is type(original), column.name
        if isinstance(value, dt.datetime):
            # DateTime64(3, 'Asia/Shanghai') comes back aware, in the column's zone.
            assert value.tzinfo == SHANGHAI
            assert value.utcoffset() == dt.timedelta(hours=8)
        if isinstance(value, Decimal):
            # Decimals come back carrying the column's scale: Decimal("0") -> Decimal("0.000").
            scale = int(column.type.rstrip(")").split(",")[1])
            assert value.as_tuple().exponent == -scale, column.name


def test_repeated_insert_counts_once_under_final(migrated: ClickHouseStore) -> None:
    for table, row in SAMPLE_ROWS.items():
        migrated.insert_rows(table, [row])
        migrated.insert_rows(table, [row, row])
        _, raw = migrated.query(f"SELECT count() FROM `{table}`")
        _, final = migrated.query(f"SELECT count() FROM `{table}` FINAL")
        # Two parts are stored (optimize_on_insert already merges duplicates within one
        # insert); FINAL collapses them to one row.
        assert (raw[0][0], final[0][0]) == (2, 1), table


def test_accounts_keep_the_highest_version_whatever_the_write_order(
    migrated: ClickHouseStore,
) -> None:
    newer = {**SAMPLE_ROWS["accounts"], "version": 9, "balance": Decimal("10.00")}
    migrated.insert_rows("accounts", [newer])
    migrated.insert_rows("accounts", [SAMPLE_ROWS["accounts"]])
    _, rows = migrated.query("SELECT version, balance FROM accounts FINAL")
    assert rows == [(9, Decimal("10.00"))]


def test_insert_rows_refuses_a_bad_batch_whole(migrated: ClickHouseStore) -> None:
    good = SAMPLE_ROWS["ledger"]
    bad = {**good, "entry_id": "led-2", "amount": Decimal("1.005")}
    with pytest.raises(ValueError, match="more than 2 decimal places"):
        migrated.insert_rows("ledger", [good, bad])
    assert select_final(migrated, "ledger") == []


def test_batch_writer_flushes_on_size(migrated: ClickHouseStore) -> None:
    writer = BatchWriter(migrated, max_rows=3, max_seconds=3600)
    events = [{**SAMPLE_ROWS["events"], "event_id": f"ev-{i}"} for i in range(4)]
    writer.add("readings", SAMPLE_ROWS["readings"])
    writer.add_many("events", events[:2])
    assert select_final(migrated, "events") == []
    writer.add("events", events[2])  # the events buffer reaches 3: every buffer is written
    assert len(select_final(migrated, "events")) == 3
    assert len(select_final(migrated, "readings")) == 1
    writer.add("events", events[3])
    assert writer.pending == 1
    writer.close()
    assert len(select_final(migrated, "events")) == 4
    with pytest.raises(RuntimeError, match="closed"):
        writer.add("events", events[0])


def test_batch_writer_flushes_on_age_when_adding(migrated: ClickHouseStore) -> None:
    now = [100.0]
    writer = BatchWriter(migrated, max_rows=1000, max_seconds=1.0, clock=lambda: now[0])
    writer.add("ledger", SAMPLE_ROWS["ledger"])
    now[0] = 100.5
    writer.add("points_ledger", SAMPLE_ROWS["points_ledger"])
    assert writer.pending == 2
    assert not writer.flush_if_due()
    now[0] = 101.0  # the oldest row has waited max_seconds
    writer.add("events", SAMPLE_ROWS["events"])
    assert writer.pending == 0
    assert len(select_final(migrated, "ledger")) == 1
    assert len(select_final(migrated, "events")) == 1


def test_batch_writer_checks_rows_on_add(migrated: ClickHouseStore) -> None:
    writer = BatchWriter(migrated)
    naive = {**SAMPLE_ROWS["events"], "ts": dt.datetime(2024, 3, 1)}  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        writer.add("events", naive)
    with pytest.raises(ValueError, match="unknown table"):
        writer.add_many("nope", [])
    assert writer.pending == 0
    writer.close()


def test_batch_writer_keeps_rows_when_a_write_fails(store: ClickHouseStore) -> None:
    writer = BatchWriter(store)  # tables not created yet: the write fails
    writer.add("events", SAMPLE_ROWS["events"])
    with pytest.raises(ClickHouseError):
        writer.flush()
    assert writer.pending == 1
    store.migrate()
    writer.close()
    assert len(select_final(store, "events")) == 1


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO events (event_id) VALUES ('x')",
        "DROP TABLE events",
        "ALTER TABLE events DELETE WHERE 1",
        "SELECT 1; DROP TABLE events",
        "SELECT 1 INTO OUTFILE 'x.csv'",
        "",
    ],
)
def test_query_readonly_refuses_anything_but_one_read(migrated: ClickHouseStore, sql: str) -> None:
    with pytest.raises(ValueError, match="only|OUTFILE"):
        migrated.query_readonly(sql)
    _, rows = migrated.query(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'events'"
    )
    assert rows == [(1,)]


def test_query_readonly_runs_reads_with_readonly_setting(migrated: ClickHouseStore) -> None:
    migrated.insert_rows("events", [SAMPLE_ROWS["events"]])
    assert migrated.query_readonly("SELECT getSetting('readonly') AS ro;") == (["ro"], [(1,)])
    columns, rows = migrated.query_readonly(
        "WITH 'ev-1' AS id SELECT event_id, ts FROM events FINAL WHERE event_id = id"
    )
    assert columns == ["event_id", "ts"]
    assert rows == [("ev-1", SAMPLE_ROWS["events"]["ts"])]
    assert ("events",) in migrated.query_readonly("SHOW TABLES")[1]
    assert migrated.query_readonly("DESCRIBE TABLE events")[1][0][:2] == ("event_id", "String")
    assert migrated.query_readonly("EXPLAIN SELECT 1")[0] == ["explain"]
    # readonly=1 is enforced by the engine too, not only by the statement check.
    with pytest.raises(ClickHouseError, match="readonly"):
        migrated.query_readonly("SELECT * FROM file('x.csv', 'CSV', 'a String')")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select 1", "select 1"),
        ("  SELECT ';' AS s ;  -- done\n", "SELECT ';' AS s"),
        ("-- lead\n/* c; DROP */ WITH x AS (SELECT 1) SELECT * FROM x", None),
        ("SHOW TABLES;;", "SHOW TABLES"),
        ("DESC events", "DESC events"),
        ("SELECT \"a;b\", `c;d`, 'it\\'s;' FROM t", None),
    ],
)
def test_check_readonly_sql_accepts(sql: str, expected: str | None) -> None:
    assert check_readonly_sql(sql) == (expected or sql.strip())


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; SELECT 2",
        "SELECT 1; /* */ DROP TABLE t",
        "-- SELECT\nINSERT INTO t VALUES (1)",
        "SELECT 1 INTO /* x */ outfile 'f'",
        "OPTIMIZE TABLE t FINAL",
        "SET readonly = 0",
        "  ;  ",
    ],
)
def test_check_readonly_sql_refuses(sql: str) -> None:
    with pytest.raises(ValueError, match="only|OUTFILE"):
        check_readonly_sql(sql)


def test_stores_with_one_dsn_share_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "shared"
    first = ClickHouseStore(f"chdb://{path}")
    second = ClickHouseStore(f"chdb://{path}/")  # another spelling of the same directory
    try:
        first.migrate()
        second.insert_rows("events", [SAMPLE_ROWS["events"]])
        first.close()
        assert len(select_final(second, "events")) == 1
    finally:
        first.close()
        second.close()
    # With the last store closed the engine is released, so another directory can open.
    with ClickHouseStore(f"chdb://{tmp_path / 'other'}") as other:
        assert other.query("SELECT 1 AS one") == (["one"], [(1,)])


def test_a_directory_open_here_cannot_be_opened_by_another_process(
    migrated: ClickHouseStore, tmp_path: Path
) -> None:
    script = (
        "import sys\n"
        "from sinks.clickhouse import ClickHouseStore, ClickHouseError\n"
        "try:\n"
        "    ClickHouseStore(sys.argv[1]).connect()\n"
        "except ClickHouseError as ex:\n"
        "    print(ex)\n"
        "    sys.exit(3)\n"
    )
    root = REPO
    result = subprocess.run(
        [sys.executable, "-c", script, migrated.dsn],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "is another process using it?" in result.stdout


def test_normalize_dsn_makes_chdb_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalize_dsn("chdb://./.wattpay/clickhouse") == f"chdb://{tmp_path}/.wattpay/clickhouse"
    assert (tmp_path / ".wattpay" / "clickhouse").is_dir()
    assert normalize_dsn("chdb://rel/dir") == f"chdb://{tmp_path}/rel/dir"
    assert normalize_dsn(f"chdb://{tmp_path}/abs/") == f"chdb://{tmp_path}/abs"
    assert normalize_dsn(f"chdb://{tmp_path}/q?x=1") == f"chdb://{tmp_path}/q?x=1"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert normalize_dsn("chdb://~/ch") == f"chdb://{tmp_path}/home/ch"


@pytest.mark.parametrize(
    "dsn",
    [
        "http://localhost:8123",
        "https://user:secret@ch.example.com:8443/wattpay",
        "HTTP://default@127.0.0.1:8123/db",
    ],
)
def test_normalize_dsn_passes_http_through(dsn: str) -> None:
    assert normalize_dsn(dsn) == dsn


@pytest.mark.parametrize(
    "dsn",
    ["clickhouse://u:secret@host:9000/db", "localhost:8123", "chdb://", "http:///db", ""],
)
def test_normalize_dsn_rejects_other_targets(dsn: str) -> None:
    with pytest.raises(ValueError, match="DSN") as info:
        normalize_dsn(dsn)
    assert "secret" not in str(info.value)


def test_mask_dsn_hides_the_password() -> None:
    assert mask_dsn("https://user:secret@ch:8443/db") == "https://user:***@ch:8443/db"
    assert mask_dsn("http://user@ch:8123/db") == "http://user@ch:8123/db"
    assert mask_dsn("chdb:///data/ch") == "chdb:///data/ch"


def test_migration_4_adds_deliveries_to_a_database_of_version_1(store: ClickHouseStore) -> None:
    store.applied_migrations()  # creates the record table
    for table in schema.TABLES:
        if table.name != "deliveries":
            store.command(schema.create_table_sql(table))
    store.insert_rows(
        "schema_migrations",
        [{"version": 1, "description": "initial tables", "applied_at": dt.datetime.now(UTC)}],
    )
    assert 4 in store.migrate()  # with any others numbered after 1
    row = SAMPLE_ROWS["deliveries"]
    store.insert_rows("deliveries", [row])
    assert select_final(store, "deliveries") == [tuple(row.values())]
