"""Integration tests against the real embedded ClickHouse (chdb), one directory per test."""

import datetime as dt
import gc
import os
import socket
import subprocess
import sys
import weakref
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from store import schema
from store.clickhouse import (
    BatchWriter,
    ClickHouseError,
    ClickHouseStore,
    encode_columns,
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
        "payload_base64": 0,
        "reason": "malformed",
        "detail": "energy_kwh is NaN",
        "received_at": dt.datetime(2024, 3, 1, 0, 0, 0, 1000, tzinfo=UTC),
    },
    "intervals": {
        "meter_id": "M-001",
        "account_id": "A-001",
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
        "opening_balance": Decimal("-12.50"),
        "landlord_id": "房东-1",
    },
    "account_events": {
        "event_id": "A-001:open@2024-03-01T08:00:00+08:00:abc",
        "account_id": "A-001",
        "ts": dt.datetime(2024, 3, 1, 8, 0, tzinfo=SHANGHAI),
        "type": "open",
        "meter_id": "M-001",
        "plan": "zhejiang-tou",
        "payload": '{"type": "open", "ytd_kwh": "12.345"}',
    },
    "bills": {
        "bill_id": "A-001:2024-02",
        "account_id": "A-001",
        "month": dt.date(2024, 2, 1),
        "meter_id": "M-001",
        "plan": "zhejiang-tou",
        "days": 29,
        "kwh": Decimal("300.001"),
        "kwh_peak": Decimal("200.000"),
        "kwh_valley": Decimal("100.001"),
        "kwh_tier1": Decimal("300.001"),
        "kwh_tier2": Decimal("0.000"),
        "kwh_tier3": Decimal("0.000"),
        "charge": Decimal("142.42"),
        "topups": Decimal("500.00"),
        "topup_count": 1,
        "rebates": Decimal("30.00"),
        "points_redeemed_yuan": Decimal("1.00"),
        "refund": Decimal("0.00"),
        "opening_balance": Decimal("-3.00"),
        "closing_balance": Decimal("385.58"),
        "points_opening": 0,
        "points_earned": 503,
        "points_redeemed": 100,
        "points_expired": 0,
        "points_closing": 403,
        "ytd_kwh": Decimal("645.679"),
        "tier": 1,
        "kwh_to_next_tier": Decimal("2114.321"),
        "avg_price": Decimal("0.4747"),
        "kwh_prev_month": None,
        "kwh_same_month_last_year": Decimal("280.500"),
        "disconnections": 0,
        "invoice_no": "20240200000000000001",
        "generated_at": dt.datetime(2024, 3, 1, 0, 0, tzinfo=SHANGHAI),
    },
    "usage_analysis": {
        "account_id": "A-001",
        "month": dt.date(2024, 2, 1),
        "kwh": Decimal("300.001"),
        "hourly_kwh": [Decimal("0.431")] * 23 + [Decimal("0.000")],
        "peak_share": Decimal("0.6667"),
        "base_load_w": 312,
        "kwh_change_prev_month": None,
        "anomaly_days": 2,
        "plan": "zhejiang-tou",
        "charge": Decimal("142.42"),
        "alt_plan": "zhejiang-tiered",
        "alt_charge": Decimal("161.40"),
        "forecast_kwh": None,
        "forecast_charge": None,
        "generated_at": dt.datetime(2024, 3, 1, 0, 0, tzinfo=SHANGHAI),
    },
    "invoices": {
        "invoice_no": "20240200000000000001",
        "bill_id": "A-001:2024-02",
        "account_id": "A-001",
        "month": dt.date(2024, 2, 1),
        "issued_at": dt.datetime(2024, 3, 1, 0, 0, tzinfo=SHANGHAI),
        "amount": Decimal("142.42"),
        "amount_excl_tax": Decimal("126.04"),
        "tax": Decimal("16.38"),
        "tax_rate": Decimal("0.13"),
        "item": "*供电*电费",
        "unit": "kWh",
        "quantity_kwh": Decimal("300.001"),
        "unit_price": Decimal("0.4747"),
        "seller_name": "国网示例供电有限公司",
        "seller_tax_id": "91330000000000000X",
        "buyer_name": "A-001",
        "pdf_path": "invoices/2024-02/A-001.pdf",
        "xml_path": "invoices/2024-02/A-001.xml",
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
    "tariff_scenarios": {
        "scenario_id": "3f2a9c0d1e4b5a67",
        "account_id": "A-001",
        "period_from": dt.date(2024, 1, 1),
        "period_to": dt.date(2024, 12, 31),
        "plan": "zhejiang-tou",
        "kwh": Decimal("3120.456"),
        "current": Decimal("1502.33"),
        "proposed": Decimal("1498.01"),
        "change": Decimal("-4.32"),
        "generated_at": dt.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
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


def test_migration_2_adds_payload_base64_to_an_old_rejected_table(store: ClickHouseStore) -> None:
    # A database at schema version 1, as released: `rejected` without payload_base64.
    store.command(schema.create_table_sql(schema.SCHEMA_MIGRATIONS))
    columns = [c for c in schema.table_spec("rejected").columns if c.name != "payload_base64"]
    old = schema.TableSpec("rejected", tuple(columns), ("rejection_id",))
    store.command(schema.create_table_sql(old))
    for table in schema.TABLES:  # the other tables as migration 1 made them
        if table.name != "rejected":
            store.command(schema.create_table_sql(table))
    store.command("INSERT INTO schema_migrations VALUES (1, 'initial tables', now64(3))")
    store.command(
        "INSERT INTO rejected VALUES"
        " ('r:1', 'wattpay.readings', '', 'x', 'malformed', '', now64(3))"
    )
    assert store.migrate() == [m.version for m in schema.MIGRATIONS if m.version > 1]
    _, rows = store.query("SELECT payload, payload_base64 FROM rejected FINAL")
    assert rows == [("x", 0)]
    store.insert_rows("rejected", [{**SAMPLE_ROWS["rejected"], "payload_base64": 1}])
    _, rows = store.query("SELECT payload_base64 FROM rejected FINAL WHERE rejection_id = 'rej-1'")
    assert rows == [(1,)]


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


class _Column(list):  # type: ignore[type-arg]
    """A column a weak reference can follow (a plain list cannot have one)."""


def test_an_insert_lets_its_columns_go_without_a_collection(migrated: ClickHouseStore) -> None:
    # The driver's insert context is in a reference cycle; the columns it held waited for a
    # full collection, and a replay's peak memory grew with rarer collections.
    row = SAMPLE_ROWS["readings"]
    columns = [_Column(column) for column in encode_columns("readings", [tuple(row.values())])]
    alive = [weakref.ref(column) for column in columns]
    gc.disable()
    try:
        migrated.insert_columns("readings", columns)
        del columns
        assert [ref() for ref in alive] == [None] * len(alive)
    finally:
        gc.enable()
    assert select_final(migrated, "readings") == [tuple(row.values())]


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
        "from store.clickhouse import ClickHouseStore, ClickHouseError\n"
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


def test_mask_dsn_hides_the_password_and_token_parameters() -> None:
    assert mask_dsn("https://user:secret@ch:8443/db") == "https://user:***@ch:8443/db"
    assert mask_dsn("https://ch:8443/db?access_token=t0k&compress=1") == (
        "https://ch:8443/db?access_token=***&compress=1"
    )
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


def test_the_replay_sink_writes_on_its_thread_and_a_failed_write_fails_the_next_call(
    tmp_path: Path,
) -> None:
    from billing.outputs import Row
    from pipelines.clickhouse_sink import ClickHouseSink

    dsn = f"chdb://{tmp_path / 'ch'}"
    with ClickHouseStore(dsn) as store:
        store.migrate()
    sink = ClickHouseSink(dsn, max_rows=1, max_seconds=3600)
    part = sink.build_part("rows", "clickhouse-0", None)
    row = SAMPLE_ROWS["readings"]
    part.write_batch([[Row("readings", row)]])  # due at once: written on the sink's thread
    part.write_batch([[Row("readings", {**row, "meter_id": "M-002"})]])
    part._written()  # noqa: SLF001 - wait for the thread
    assert len(select_final(part._store, "readings")) == 2  # noqa: SLF001

    def refuse(table: str, columns: object) -> None:
        raise ClickHouseError("the server went away")

    part._store.insert_columns = refuse  # type: ignore[method-assign] # noqa: SLF001
    part.write_batch([[Row("readings", {**row, "meter_id": "M-003"})]])  # handed to the thread
    with pytest.raises(ClickHouseError, match="went away"):
        part.write_batch([[Row("readings", {**row, "meter_id": "M-004"})]])
    # Bytewax closes the partition while it unwinds from that error: a second one there
    # would abort the process, so the rows still buffered are left unwritten, silently.
    part.close()
    with ClickHouseStore(dsn) as store:
        assert len(select_final(store, "readings")) == 2


def test_the_replay_sink_writes_nothing_before_its_tables_are_ready(tmp_path: Path) -> None:
    from concurrent.futures import Future

    from billing.outputs import Row
    from pipelines.clickhouse_sink import ClickHouseSink
    from store.clickhouse import open_migrated

    dsn = f"chdb://{tmp_path / 'ch'}"
    ready: Future[ClickHouseStore] = Future()
    part = ClickHouseSink(dsn, max_rows=1, max_seconds=3600, ready=ready).build_part(
        "rows", "clickhouse-0", None
    )
    row = SAMPLE_ROWS["readings"]
    part.write_batch([[Row("readings", row)]])  # due: handed to the thread, which waits
    assert part._in_flight is not None and not part._in_flight.done()  # noqa: SLF001
    prepared = open_migrated(dsn)  # the tables, created on a thread of their own
    store = prepared.result(timeout=60)
    try:
        assert select_final(store, "readings") == []  # nothing was written before them
        ready.set_result(store)
        part.write_batch([[Row("readings", {**row, "meter_id": "M-002"})]])  # after the first
        part.close()
        assert [r[0] for r in select_final(store, "readings")] == ["M-001", "M-002"]
    finally:
        store.close()


def test_the_replay_sink_fails_with_what_preparing_its_tables_raised(tmp_path: Path) -> None:
    from billing.outputs import Row
    from pipelines.clickhouse_sink import ClickHouseSink
    from store.clickhouse import open_migrated

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    prepared = open_migrated(unreachable)
    with pytest.raises(ClickHouseError, match="cannot open ClickHouse"):
        prepared.result(timeout=60)
    sink = ClickHouseSink(f"chdb://{tmp_path / 'other'}", ready=prepared)
    part = sink.build_part("rows", "clickhouse-0", None)
    with pytest.raises(ClickHouseError, match="cannot open ClickHouse"):
        part.write_batch([[Row("readings", SAMPLE_ROWS["readings"])]])
    part.close()  # reported once: Bytewax closes the partition while it unwinds
    quiet = sink.build_part("rows", "clickhouse-0", None)  # a flow that wrote nothing
    with pytest.raises(ClickHouseError, match="cannot open ClickHouse"):
        quiet.close()
