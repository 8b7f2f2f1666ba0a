"""The JSON API and pages of ``wattpay web`` (S17.4, S17.5) on a real uvicorn and real chdb.

A replayed example month is the database; the tests compare what the API answers with what
analysts read from the same tables (``FINAL``) before the server opened them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
from markupsafe import escape

from billing.clock import LOCAL_ZONE
from store.clickhouse import ClickHouseStore
from tests.browser import Browser
from tests.live_harness import WATTPAY
from tests.web_harness import WebProcess, get


@dataclass
class Database:
    dsn: str
    work: Path
    accounts: dict[str, dict] = field(default_factory=dict)
    daily: dict[str, list[dict]] = field(default_factory=dict)
    landlords: dict[str, list[str]] = field(default_factory=dict)
    closed: str = ""
    closed_data: dict = field(default_factory=dict)
    last_charges: list[Decimal] = field(default_factory=list)
    closed_ledger: list[dict] = field(default_factory=list)
    before_migration: dict = field(default_factory=dict)
    with_events: dict = field(default_factory=dict)
    final_kwh: str | None = None
    operations: dict = field(default_factory=dict)
    accrued: dict[str, dict[date, Decimal]] = field(default_factory=dict)
    analysis: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    expiries: list[dict] = field(default_factory=list)
    opens: list[dict] = field(default_factory=list)
    bills: list[dict] = field(default_factory=list)
    relay_failed: dict[str, str] = field(default_factory=dict)


def rows(store: ClickHouseStore, sql: str) -> list[dict]:
    columns, values = store.query(sql)
    return [dict(zip(columns, row, strict=True)) for row in values]


def simulate_landlord_migration(store: ClickHouseStore, landlords: dict[str, str]) -> None:
    """What the S8 migration adding accounts.landlord_id leaves: the column, filled."""
    store.command("ALTER TABLE accounts ADD COLUMN IF NOT EXISTS landlord_id String")
    for account_id, landlord_id in landlords.items():
        store.command(
            f"ALTER TABLE accounts UPDATE landlord_id = '{landlord_id}' "
            f"WHERE account_id = '{account_id}' SETTINGS mutations_sync = 1"
        )


def add_account_events(store: ClickHouseStore, events: list[dict]) -> None:
    """The S8 ``account_events`` table with the applied open and close events."""
    store.command(
        "CREATE TABLE IF NOT EXISTS account_events (event_id String, account_id String, "
        "ts DateTime64(3, 'Asia/Shanghai'), type LowCardinality(String), meter_id String, "
        "plan String, payload String) ENGINE = ReplacingMergeTree ORDER BY (account_id, event_id)"
    )
    values = ", ".join(
        f"('{e['type']}:{e['account_id']}:{e['ts']}', '{e['account_id']}', "
        f"parseDateTime64BestEffort('{e['ts']}', 3), '{e['type']}', '{e.get('meter_id', '')}', "
        f"'{e.get('plan', '')}', '{json.dumps(e, ensure_ascii=False)}')"
        for e in events
    )
    store.command(f"INSERT INTO account_events VALUES {values}")


def make_old(store: ClickHouseStore) -> None:
    """The database as it was before migration 3: no landlords, no account events, no bills."""
    store.command("ALTER TABLE accounts DROP COLUMN landlord_id")
    for table in ("account_events", "bills", "usage_analysis", "invoices"):
        store.command(f"DROP TABLE {table}")
    store.command(
        "ALTER TABLE schema_migrations DELETE WHERE version >= 3 SETTINGS mutations_sync = 1"
    )


def bill_month(dsn: str, work: Path, account_id: str) -> None:
    """The monthly job (S15) for the first month of the set: bills, invoices and documents."""
    with ClickHouseStore(dsn) as store:
        ((month,),) = store.query("SELECT toStartOfMonth(min(day)) FROM daily_usage FINAL")[1]
    subprocess.run(
        [
            *WATTPAY,
            "bills",
            "--month",
            f"{month:%Y-%m}",
            "--account",
            account_id,
            "--clickhouse",
            dsn,
            "--out",
            str(work / "documents"),
            "--quiet",
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    work = tmp_path_factory.mktemp("web")
    inputs = work / "input"
    subprocess.run(
        [*WATTPAY, "example", str(inputs), "--households", "40", "--days", "20", "--seed", "3"],
        check=True,
        capture_output=True,
    )
    dsn = f"chdb://{work / 'clickhouse'}"
    subprocess.run([*WATTPAY, "replay", str(inputs), "--clickhouse", dsn, "--quiet"], check=True)
    events = []
    for line in (inputs / "accounts.jsonl").read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the example's deliberately bad lines
        if isinstance(event, dict) and event.get("type") in ("open", "close"):
            events.append(event)
    opens = [e for e in events if e["type"] == "open" and e.get("landlord_id")]
    db = Database(dsn, work)
    db.opens = opens
    with ClickHouseStore(dsn) as store:
        make_old(store)
        for row in rows(store, "SELECT * FROM accounts FINAL ORDER BY account_id"):
            db.accounts[row["account_id"]] = row
        for row in rows(store, "SELECT * FROM daily_usage FINAL ORDER BY account_id, day"):
            db.daily.setdefault(row["account_id"], []).append(row)
        (db.operations,) = rows(
            store,
            "WITH (SELECT toDate(max(ts), 'Asia/Shanghai') FROM readings) AS today "
            "SELECT today, sumIf(kwh, toDate(start, 'Asia/Shanghai') = today) AS kwh_today, "
            "sumIf(kwh, toDate(start, 'Asia/Shanghai') = today - 1) AS kwh_yesterday "
            "FROM intervals FINAL",
        )
        for row in rows(
            store,
            "SELECT account_id, toDate(start, 'Asia/Shanghai') AS day, sum(cost) AS cost "
            "FROM intervals FINAL GROUP BY account_id, day",
        ):
            db.accrued.setdefault(row["account_id"], {})[row["day"]] = row["cost"]
        db.closed = next(a for a, row in db.accounts.items() if row["status"] == "closed")
        (event,) = rows(
            store,
            f"SELECT data FROM events FINAL WHERE type = 'account_closed' "
            f"AND account_id = '{db.closed}'",
        )
        db.closed_data = json.loads(event["data"])
        db.closed_ledger = rows(
            store, f"SELECT * FROM ledger FINAL WHERE account_id = '{db.closed}' ORDER BY seq"
        )
        db.last_charges = [
            -r["amount"]
            for r in rows(
                store,
                f"SELECT amount FROM ledger FINAL WHERE account_id = '{db.closed}' "
                "AND kind = 'charge' ORDER BY seq DESC LIMIT 3",
            )
        ]
    # Before the landlord migration: the API says it cannot tell.
    with WebProcess(dsn, work) as web:
        db.before_migration = get(web.url + "/api/landlords/L015").json()
    # With the applied account events (S8) only: landlords, locales and districts from them.
    applied = {}
    for event in events:  # the first open of an id and its close are the applied ones
        applied.setdefault((event["type"], event["account_id"]), event)
    with ClickHouseStore(dsn) as store:
        add_account_events(store, list(applied.values()))
    close = applied.get(("close", db.closed), {})
    db.final_kwh = close.get("final_kwh")
    with WebProcess(dsn, work) as web:
        db.with_events = {
            "landlord": get(web.url + "/api/landlords/L015").json(),
            "page": get(web.url + "/accounts/A0014").text,
            "operations": get(web.url + "/api/operations").json(),
        }
    landlord_of = {o["account_id"]: o["landlord_id"] for o in opens}
    landlord_of[db.closed] = landlord_of.get(db.closed, "L900")
    for account_id, landlord_id in landlord_of.items():
        db.landlords.setdefault(landlord_id, []).append(account_id)
    subprocess.run([*WATTPAY, "migrate", "--clickhouse", dsn], check=True, capture_output=True)
    bill_month(dsn, work, "A0014")
    with ClickHouseStore(dsn) as store:
        simulate_landlord_migration(store, landlord_of)
        db.bills = rows(store, "SELECT * FROM bills FINAL WHERE account_id = 'A0014'")
        db.analysis = rows(store, "SELECT * FROM usage_analysis FINAL WHERE account_id = 'A0014'")
        # A relay that failed, as the billing records one (S14.16): the latest command's.
        (command,) = rows(
            store,
            "SELECT event_id, account_id, meter_id, ts FROM events FINAL "
            "WHERE type IN ('disconnect', 'reconnect') ORDER BY ts DESC, event_id LIMIT 1",
        )
        failure = {"reason": "relay_failed", "command_id": command["event_id"]}
        failure.update(meter_id=command["meter_id"], error="coil read back 0")
        store.insert_rows(
            "events",
            [
                {
                    "event_id": f"meter_anomaly:{command['event_id']}",
                    "account_id": command["account_id"],
                    "meter_id": command["meter_id"],
                    "ts": command["ts"] + timedelta(seconds=5),
                    "type": "meter_anomaly",
                    "data": json.dumps(failure),
                }
            ],
        )
        db.relay_failed = {command["event_id"]: "coil read back 0"}
        db.events = rows(store, "SELECT event_id, account_id, ts, type, data FROM events FINAL")
        db.expiries = rows(
            store, "SELECT account_id, ts, points FROM points_ledger FINAL WHERE kind = 'expiry'"
        )
        store.insert_rows(
            "rejected",
            [
                {
                    "rejection_id": "arrived-now",
                    "topic": "readings",
                    "key": "M0001",
                    "payload": "{not json",
                    "payload_base64": 0,
                    "reason": "malformed",
                    "detail": "not JSON",
                    "received_at": datetime.now(LOCAL_ZONE),
                },
                {  # stamped ahead of the page's clock: not in its last hour
                    "rejection_id": "arrives-tomorrow",
                    "topic": "readings",
                    "key": "M0002",
                    "payload": "{not json",
                    "payload_base64": 0,
                    "reason": "malformed",
                    "detail": "not JSON",
                    "received_at": datetime.now(LOCAL_ZONE) + timedelta(days=1),
                },
            ],
        )
    yield db


TOU_NAMES = {"zh-CN": "峰谷分时示例电价", "en": "Example time-of-use"}


@pytest.fixture(scope="module")
def web(database: Database) -> Iterator[WebProcess]:
    config = database.work / "wattpay.toml"  # display names for a built-in plan
    config.write_text(
        f'[plans.zhejiang-tou]\nname_zh = "{TOU_NAMES["zh-CN"]}"\nname_en = "{TOU_NAMES["en"]}"\n',
        encoding="utf-8",
    )
    server = WebProcess(
        database.dsn,
        database.work,
        "--documents",
        str(database.work / "documents"),
        env={"WATTPAY_CONFIG": str(config)},
    ).start()
    yield server
    server.stop()


def test_operations_figures_are_the_analysts_figures(web: WebProcess, database: Database) -> None:
    got = get(web.url + "/api/operations").json()
    assert got["now"].startswith(str(database.operations["today"]))
    assert Decimal(got["kwh_today"]) == database.operations["kwh_today"]
    assert Decimal(got["kwh_yesterday"]) == database.operations["kwh_yesterday"]
    hourly = got["hourly"]
    assert sum(Decimal(v) for v in hourly["yesterday"]) == database.operations["kwh_yesterday"]
    statuses = {}
    for row in database.accounts.values():
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    assert {k: v for k, v in got["statuses"].items() if v} == statuses
    assert Decimal(got["fleet_kw"]) > 0
    commands = got["commands"]
    assert commands and {c["type"] for c in commands} <= {"disconnect", "reconnect"}
    assert commands == sorted(commands, key=lambda c: c["ts"], reverse=True)
    # A replay's rejections carry their messages' times (April); only the one that arrived
    # just now is in the last hour of the wall clock.
    assert got["rejected"] == [{"topic": "readings", "reason": "malformed", "n": 1}]


def test_openapi_describes_every_api_route(web: WebProcess) -> None:
    reply = get(web.url + "/api/openapi.json")
    assert reply.status == 200
    spec = reply.json()
    assert spec["openapi"].startswith("3.")
    assert {
        "/api/accounts/{account_id}",
        "/api/accounts/{account_id}/daily",
        "/api/accounts/{account_id}/bills",
        "/api/accounts/{account_id}/analysis",
        "/api/landlords/{landlord_id}",
        "/api/search",
        "/api/lists/{name}",
    } <= set(spec["paths"])


def test_account_is_what_accounts_final_holds(web: WebProcess, database: Database) -> None:
    for account_id, row in list(database.accounts.items())[:8]:
        got = get(f"{web.url}/api/accounts/{account_id}").json()
        for name in ("balance", "available", "overdraft_limit", "ytd_kwh"):
            assert Decimal(got[name]) == row[name], (account_id, name)
        assert got["status"] == row["status"]
        assert got["points"] == row["points"]
        assert got["points_detail"]["balance"] == row["points"]
        assert sum(lot["points"] for lot in got["points_detail"]["lots"]) == row["points"]
        days = database.daily.get(account_id, [])
        charges = [d["charge"] for d in days][-7:]
        if charges and sum(charges) > 0:
            expected = max(int(row["available"] * len(charges) / sum(charges)), 0)
            assert got["days_left"] == expected, account_id


def test_month_to_date_cost_is_what_the_bill_will_say(web: WebProcess, database: Database) -> None:
    """Closed days' posted charges plus the open day's accrued cost, rounded once (S3, S5)."""
    for account_id in database.accounts:
        got = get(f"{web.url}/api/accounts/{account_id}").json()
        today = date.fromisoformat(got["today"])
        month = today.replace(day=1)
        closed = {d["day"]: d["charge"] for d in database.daily.get(account_id, [])}
        expected = sum((c for d, c in closed.items() if month <= d <= today), Decimal("0.00"))
        for day, cost in database.accrued.get(account_id, {}).items():
            if month <= day <= today and day not in closed:
                expected += cost.quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert Decimal(got["month"]["cost"]) == expected, account_id


def test_a_closed_accounts_last_day_is_in_its_charts(web: WebProcess, database: Database) -> None:
    last = database.daily[database.closed][-1]
    got = get(f"{web.url}/api/accounts/{database.closed}/daily").json()
    assert got["days"][-1]["day"] == str(last["day"])
    assert Decimal(got["days"][-1]["charge"]) == last["charge"]
    landlord_id = next(k for k, v in database.landlords.items() if database.closed in v)
    landlord = get(f"{web.url}/api/landlords/{landlord_id}").json()
    (tenant,) = [t for t in landlord["tenants"] if t["account_id"] == database.closed]
    assert tenant["daily"][-1]["day"] == str(last["day"])
    assert tenant["chart"][-1]["day"] == str(last["day"])
    page = get(f"{web.url}/accounts/{database.closed}?lang=en").text
    assert f'data-label="{last["day"]}" data-value="{last["kwh"]}"' in page


def test_daily_usage_range(web: WebProcess, database: Database) -> None:
    account_id = "A0014"
    days = database.daily[account_id]
    first, last = days[3]["day"], days[9]["day"]
    got = get(f"{web.url}/api/accounts/{account_id}/daily?from={first}&to={last}").json()
    assert [d["day"] for d in got["days"]] == [str(d["day"]) for d in days[3:10]]
    assert [Decimal(d["kwh"]) for d in got["days"]] == [d["kwh"] for d in days[3:10]]
    assert [Decimal(d["charge"]) for d in got["days"]] == [d["charge"] for d in days[3:10]]
    default = get(f"{web.url}/api/accounts/{account_id}/daily").json()
    assert date.fromisoformat(default["to"]) - date.fromisoformat(default["from"]) == timedelta(
        days=29
    )


def test_bad_requests_are_refused_with_a_reason(web: WebProcess) -> None:
    base = web.url + "/api/accounts"
    assert get(f"{base}/A0014/daily?from=2026-13-01").status == 400
    assert get(f"{base}/A0014/daily?from=2026-04-10&to=2026-04-01").status == 400
    assert get(f"{base}/A0014/daily?from=2020-01-01&to=2026-04-01").status == 400
    injected = get(f"{base}/A0014'%20OR%20'1'='1")
    assert injected.status == 400 and "invalid account id" in injected.json()["error"]
    assert get(f"{base}/NOSUCH").status == 404
    assert get(f"{base}/NOSUCH/bills").status == 404


ROUTES = (
    "/",
    "/fragments/operations",
    "/accounts/A0014",
    "/fragments/accounts/A0014",
    "/landlords/L015",
    "/api/operations",
    "/api/openapi.json",
    "/api/accounts/A0014",
    "/api/accounts/A0014/daily",
    "/api/accounts/A0014/bills",
    "/api/accounts/A0014/analysis",
    "/api/landlords/L015",
    "/lists/arrears",
    "/api/lists/relay",
    "/api/lists/pending_cut",
)
BAD_DAYS = (
    "",
    "0001-01-01",
    "1969-12-31",
    "2149-06-07",
    "9999-12-31",
    "20261201",
    "2026-W49-1",
    "2026-339",
    "2026-12-01T00:00:00",
    "2026-12-1",
    " 2026-12-01",
    "2026-12-01 ",
    "+2026-12-01",
    "２０２６-１２-０１",
    "2026-02-30",
    "-001-01-01",
    "%00",
    "%FF%FE",
    "2026-12-01%00",
    "'; DROP TABLE accounts; --",
    "9" * 5000,
)
HOSTILE_IDS = (
    "A0014'%20OR%20'1'='1",
    "..",
    "%2E%2E",
    "A" * 65,
    "-A0014",
    "A0014%00",
    "%FF",
    "%E4%B8%AD",
    "A0014%0d%0aX-Injected:%201",
    "{account_id}",
)


def clean_refusal(reply, status: int | None = None) -> bool:
    """A 4xx (``status`` if given) that shows no traceback or internals."""
    body = reply.body.decode("utf-8", "replace")
    ok = 400 <= reply.status < 500 if status is None else reply.status == status
    return ok and "Traceback" not in body and "Error:" not in body.split("\n")[0]


def test_every_query_parameter_is_checked(web: WebProcess) -> None:
    daily = f"{web.url}/api/accounts/A0014/daily"
    for name in ("from", "to"):
        for value in BAD_DAYS:
            reply = get(f"{daily}?{name}={quote(value, safe='%')}")
            assert clean_refusal(reply, 400), (name, value, reply.status, reply.text[:200])
            assert reply.json()["error"].startswith(f"{name} must be a date YYYY-MM-DD")
    assert get(f"{daily}?to=0001-01-01").status == 400  # was a 500 (date arithmetic overflow)
    assert get(f"{daily}?to=1970-01-10").status == 200  # the window starts no earlier than 1970
    for route in ROUTES:  # every other parameter is ignored or falls back, never fails
        for query in ("lang=%FF", "lang=" + "x" * 5000, "lang=en&lang=zh", "x=%00", "lang="):
            reply = get(f"{web.url}{route}?{query}")
            assert reply.status == 200 and "Traceback" not in reply.text, (route, query)


def test_hostile_ids_and_methods_are_refused(web: WebProcess) -> None:
    for route in ROUTES:
        if "A0014" not in route and "L015" not in route:
            continue
        for bad in HOSTILE_IDS:
            url = web.url + route.replace("A0014", bad).replace("L015", bad)
            reply = get(url)
            assert clean_refusal(reply), (url, reply.status, reply.text[:200])
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert clean_refusal(get(web.url + route, method=method), 405), (route, method)
    for path in ("/accounts", "/api/accounts/", "/documents/", "/static/../web/app.py", "/%FF"):
        assert clean_refusal(get(web.url + path)), path
    for host in ("attacker.example", "127.0.0.1.attacker.example", "[::1", "%00"):
        assert clean_refusal(get(web.url + "/api/operations", {"Host": host}), 400), host


def test_a_bad_id_is_called_a_bad_request_not_a_missing_page(web: WebProcess) -> None:
    for lang, title, missing in (
        ("zh-CN", "请求有误", "未找到"),
        ("en", "Bad request", "Not found"),
    ):
        reply = get(f"{web.url}/accounts/A0014'%20OR%201?lang={lang}")
        assert reply.status == 400
        assert f"<h1>{title}</h1>" in reply.text and missing not in reply.text
        absent = get(f"{web.url}/accounts/NOSUCH?lang={lang}")
        assert absent.status == 404 and f"<h1>{missing}</h1>" in absent.text


def test_bills_link_their_invoice_documents(web: WebProcess, database: Database) -> None:
    bills = get(f"{web.url}/api/accounts/A0014/bills").json()["bills"]
    assert [b["bill_id"] for b in bills] == [b["bill_id"] for b in database.bills]
    (bill,) = database.bills
    number = bill["invoice_no"]
    assert number and bills[0]["invoice"]["invoice_no"] == number  # A0014 was charged
    assert Decimal(bills[0]["charge"]) == bill["charge"]
    assert get(f"{web.url}/api/accounts/A0015/bills").json()["bills"] == []  # not billed
    page = get(f"{web.url}/accounts/A0014?lang=en").text
    assert f'href="/documents/{number}.pdf"' in page
    pdf = get(f"{web.url}/documents/{number}.pdf")
    assert pdf.status == 200 and pdf.body.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    xml = get(f"{web.url}/documents/{number}.xml")
    assert xml.status == 200 and number.encode() in xml.body
    assert get(f"{web.url}/documents/{'9' * 20}.pdf").status == 404
    assert get(f"{web.url}/documents/..%2F..%2Fetc%2Fpasswd.pdf").status == 404


def test_an_invoice_pdf_not_rendered_by_the_job_is_rendered_on_demand_and_kept(
    web: WebProcess, database: Database
) -> None:
    (bill,) = database.bills
    number = bill["invoice_no"]
    batch = get(f"{web.url}/documents/{number}.pdf").body  # rendered by `wattpay bills`
    (kept,) = (database.work / "documents").rglob(f"*{number}.pdf")
    kept.unlink()  # as after `wattpay bills --no-documents`
    on_demand = get(f"{web.url}/documents/{number}.pdf")
    assert on_demand.status == 200 and on_demand.headers["content-type"] == "application/pdf"
    assert on_demand.body == batch  # from the row in ClickHouse: the same invoice, byte for byte
    assert kept.read_bytes() == batch  # kept where the job would have put it
    assert get(f"{web.url}/documents/{number}.pdf").body == batch
    assert not list((database.work / "documents").rglob("*.part"))


def test_landlord_before_and_after_the_column_exists(web: WebProcess, database: Database) -> None:
    before = database.before_migration
    assert before["known"] is False and "landlord_id" in before["reason"]
    for landlord_id, accounts in database.landlords.items():
        got = get(f"{web.url}/api/landlords/{landlord_id}").json()
        assert got["known"] is True
        assert [t["account_id"] for t in got["tenants"]] == sorted(accounts)
        for tenant in got["tenants"]:
            row = database.accounts[tenant["account_id"]]
            assert Decimal(tenant["available"]) == row["available"]
    assert get(f"{web.url}/api/landlords/NOBODY").json() == {
        "landlord_id": "NOBODY",
        "known": True,
        "reason": None,
        "tenants": [],
    }


def test_account_events_give_landlords_locales_and_districts(database: Database) -> None:
    seen = database.with_events
    assert seen["landlord"]["known"] is True
    assert [t["account_id"] for t in seen["landlord"]["tenants"]] == sorted(
        database.landlords["L015"]
    )
    assert '<html lang="en">' in seen["page"]  # A0014 opened with locale en-US
    districts = seen["operations"]["districts"]
    assert districts and any(d["district"] is not None for d in districts)
    assert all(d["district"] != "—" for d in districts)
    total = sum(Decimal(d["kwh"]) for d in districts)
    assert total == Decimal(seen["operations"]["kwh_today"])


def test_move_out_settlement(web: WebProcess, database: Database) -> None:
    landlord_id = next(k for k, v in database.landlords.items() if database.closed in v)
    got = get(f"{web.url}/api/landlords/{landlord_id}").json()
    (tenant,) = [t for t in got["tenants"] if t["account_id"] == database.closed]
    settlement = tenant["settlement"]
    assert settlement is not None and settlement["closed_at"]
    if "refund" in database.closed_data:
        assert Decimal(settlement["refund"]) == Decimal(database.closed_data["refund"])
    else:
        assert Decimal(settlement["owed"]) == Decimal(database.closed_data["owed"])
    assert [Decimal(c["amount"]) for c in settlement["last_charges"]] == database.last_charges
    text = settlement["final_reading"]["energy_kwh"]
    assert len(text.partition(".")[2]) == 3, text  # kWh with 3 decimals, as everywhere
    final = Decimal(text)
    assert final == Decimal(database.final_kwh) if database.final_kwh else final > 0
    page = get(f"{web.url}/landlords/{landlord_id}?lang=en").text
    assert "Move-out settlement" in page and database.closed in page
    # The refund as the ledger posted it at the close, and what it is made of (S5 close).
    ledger = database.closed_ledger
    at_close = [e for e in ledger if e["ref"] == "close"]
    before = [e for e in ledger if e["ref"] != "close"][-1]["balance_after"]
    assert Decimal(settlement["balance_at_move_out"]) == before
    assert Decimal(settlement["balance_now"]) == ledger[-1]["balance_after"]
    redeemed = sum((e["amount"] for e in at_close if e["kind"] == "points_redemption"), Decimal(0))
    assert Decimal(settlement["points_redeemed_yuan"]) == redeemed
    refunds = [-e["amount"] for e in at_close if e["kind"] == "refund"]
    if settlement["refund"] is not None:
        assert refunds == [Decimal(settlement["refund"])] == [before + redeemed]
        assert ledger[-1]["balance_after"] == 0
    else:
        assert refunds == [] and Decimal(settlement["owed"]) == -(before + redeemed)


def test_pages_in_both_languages(web: WebProcess, database: Database) -> None:
    english = get(f"{web.url}/accounts/A0014?lang=en")
    chinese = get(f"{web.url}/accounts/A0014?lang=zh-CN")
    assert english.status == chinese.status == 200
    assert '<html lang="en">' in english.text and "Available balance" in english.text
    assert '<html lang="zh-CN">' in chinese.text and "可用余额" in chinese.text
    assert f"¥{database.accounts['A0014']['available']}" in english.text
    assert get(f"{web.url}/accounts/NOSUCH").status == 404
    hero = get(f"{web.url}/fragments/accounts/A0014?lang=en")
    assert f'data-value="{database.accounts["A0014"]["available"]}"' in hero.text
    assert "<html" not in hero.text
    assert get(f"{web.url}/fragments/accounts/NOSUCH").status == 404
    assert get(f"{web.url}/").status == 200
    assert get(f"{web.url}/fragments/operations?lang=en").status == 200


def test_nothing_writes_and_the_host_is_checked(web: WebProcess) -> None:
    for method in ("POST", "PUT", "DELETE"):
        assert get(f"{web.url}/api/accounts/A0014", method=method).status == 405
    assert get(f"{web.url}/", {"Host": "attacker.example"}).status == 400
    assert get(f"{web.url}/", {"Host": f"localhost:{web.port}"}).status == 200
    reply = get(f"{web.url}/")
    assert "default-src 'self'" in reply.headers["content-security-policy"]


def test_a_non_loopback_bind_needs_the_token(tmp_path: Path) -> None:
    """127.0.0.2 with --require-token stands in for a network address (tests use loopback)."""
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    subprocess.run([*WATTPAY, "migrate", "--clickhouse", dsn], check=True, capture_output=True)
    refused = subprocess.run(
        [*WATTPAY, "web", "--clickhouse", dsn, "--host", "127.0.0.2", "--require-token"],
        capture_output=True,
        text=True,
        env={**os.environ, "WATTPAY_WEB_TOKEN": ""},
        timeout=60,
    )
    assert refused.returncode == 2 and "token" in refused.stderr
    secret = "s3cret-token-for-tests"
    bearer = {"Authorization": f"Bearer {secret}"}
    web = WebProcess(
        dsn, tmp_path, "--require-token", host="127.0.0.2", env={"WATTPAY_WEB_TOKEN": secret}
    )
    with web.start(ready_headers=bearer):
        for path in ("/", "/accounts/A1", "/landlords/L1", "/api/accounts/A1", "/api/operations"):
            assert get(web.url + path).status == 401, path
            assert get(web.url + path, {"Authorization": "Bearer wrong"}).status == 401, path
        assert get(web.url + "/api/operations", bearer).status == 200
        first = get(web.url + "/?token=" + secret)
        assert first.status == 200
        cookie = first.headers["set-cookie"].split(";")[0]
        assert get(web.url + "/fragments/operations", {"Cookie": cookie}).status == 200
        assert secret not in web.read_log()


def test_the_read_path_binds_values_and_writes_nothing(tmp_path: Path) -> None:
    from store.clickhouse import ClickHouseError

    with ClickHouseStore(f"chdb://{tmp_path / 'clickhouse'}") as store:
        store.migrate()
        hostile = "A1' OR '1'='1"
        columns, values = store.read(
            "SELECT {id:String} AS id, count() AS n FROM accounts FINAL "
            "WHERE account_id = {id:String}",
            {"id": hostile},
        )
        assert values == [(hostile, 0)]
        for statement in (
            "INSERT INTO rejected (rejection_id) VALUES ('x')",
            "CREATE TABLE t (a String) ENGINE = Memory",
            "DROP TABLE accounts",
        ):
            with pytest.raises(ClickHouseError):
                store.read(statement)
        assert store.read("SELECT count() FROM accounts")[1] == [(0,)]


# The Zhejiang prices of SPEC S4 (yuan/kWh), by plan, period and tier.
PRICES = {
    "zhejiang-tiered": {"flat": ("0.538", "0.588", "0.838")},
    "zhejiang-tou": {"peak": ("0.568", "0.618", "0.868"), "valley": ("0.288", "0.338", "0.588")},
}
PLAN_NAMES = {
    "en": {"zhejiang-tiered": "Zhejiang residential, tiered"},
    "zh-CN": {"zhejiang-tiered": "浙江居民阶梯电价"},
}


def test_price_now_plan_name_and_units(web: WebProcess, database: Database) -> None:
    for account_id, row in database.accounts.items():
        got = get(f"{web.url}/api/accounts/{account_id}?lang=en").json()
        ytd = row["ytd_kwh"]
        tier = 1 if ytd < 2760 else 2 if ytd < 4800 else 3
        hour = row["updated_at"].astimezone(LOCAL_ZONE).hour
        period = (
            "flat" if row["plan"] == "zhejiang-tiered" else "peak" if 8 <= hour < 22 else "valley"
        )
        price = got["price_now"]
        assert (price["tier"], price["period"]) == (tier, period), account_id
        assert Decimal(price["price"]) == Decimal(PRICES[row["plan"]][period][tier - 1])
        assert got["plan_name"] != row["plan"]
        if row["plan"] == "zhejiang-tou":  # named in the server's configuration
            assert got["plan_name"] == TOU_NAMES["en"]
    tou = next(a for a, r in database.accounts.items() if r["plan"] == "zhejiang-tou")
    for lang, name in TOU_NAMES.items():
        assert get(f"{web.url}/api/accounts/{tou}?lang={lang}").json()["plan_name"] == name
        page = get(f"{web.url}/accounts/{tou}?lang={lang}").text
        assert f'data-plan="zhejiang-tou">{name}</span>' in page
    account_id = next(a for a, r in database.accounts.items() if r["plan"] == "zhejiang-tiered")
    for lang, names in PLAN_NAMES.items():
        page = get(f"{web.url}/accounts/{account_id}?lang={lang}").text
        assert f'data-plan="zhejiang-tiered">{names["zhejiang-tiered"]}</span>' in page
        assert ">zhejiang-tiered<" not in page
    got = get(f"{web.url}/api/accounts/A0014").json()
    zh = get(f"{web.url}/accounts/A0014?lang=zh-CN").text
    if got["days_left"] is not None:
        assert f">{got['days_left']} 天</strong>" in zh
    ytd = database.accounts["A0014"]["ytd_kwh"]
    assert f"本年已用 {ytd} kWh" in zh and 'id="tier-bar"' in zh


def expected_history(database: Database, account_id: str, today: date) -> list[tuple]:
    """(ts, type) of the account's notifications and point expiries, 90 days, newest first."""
    kinds = set(HISTORY_KINDS)
    since = today - timedelta(days=89)
    entries = [
        (e["ts"], e["type"])
        for e in database.events
        if e["account_id"] == account_id
        and e["type"] in kinds
        and e["ts"].astimezone(LOCAL_ZONE).date() >= since
    ]
    entries += [
        (x["ts"], "points_expired")
        for x in database.expiries
        if x["account_id"] == account_id and x["ts"].astimezone(LOCAL_ZONE).date() >= since
    ]
    return sorted(entries, key=lambda e: e[0], reverse=True)


HISTORY_KINDS = (
    "low_balance",
    "arrears",
    "disconnect_scheduled",
    "disconnected",
    "reconnected",
    "topup_received",
    "points_expiring",
    "account_closed",
    "consumption_while_disconnected",
    "meter_anomaly",
    "monthly_bill",
)


def test_account_history_in_the_households_words(web: WebProcess, database: Database) -> None:
    from notify.texts import render

    cut = {e["account_id"] for e in database.events if e["type"] == "disconnected"}
    back = {e["account_id"] for e in database.events if e["type"] == "reconnected"}
    assert cut & back, "the example needs an account cut and reconnected"
    for account_id in sorted(cut & back)[:2] + [database.closed, "A0014"]:
        for lang, signature in (("zh-CN", "国网示例供电"), ("en", "State Grid Example")):
            got = get(f"{web.url}/api/accounts/{account_id}?lang={lang}").json()
            today = date.fromisoformat(got["today"])
            want = expected_history(database, account_id, today)
            seen = [(datetime.fromisoformat(e["ts"]), e["type"]) for e in got["history"]]
            assert sorted(seen) == sorted(want), account_id
            assert [ts for ts, _ in seen] == sorted((ts for ts, _ in seen), reverse=True)
            for entry in got["history"]:
                if entry["type"] == "points_expired":
                    continue
                notification = {**entry, "account_id": account_id}
                text = render(notification, signature, LOCAL_ZONE, lang).text
                assert entry["text"] == text
            page = get(f"{web.url}/accounts/{account_id}?lang={lang}").text
            section = page.split('id="history"')[1].split("</section>")[0]
            assert section.count("<tr ") == len(want)
            for entry in got["history"][:5]:
                assert escape(entry["text"]) in section


def test_monthly_bill_pdf_is_linked_and_served(web: WebProcess, database: Database) -> None:
    (bill,) = database.bills
    month = f"{bill['month']:%Y-%m}"
    link = f"/accounts/A0014/bills/{month}.pdf"
    (got,) = get(f"{web.url}/api/accounts/A0014/bills").json()["bills"]
    assert got["bill_pdf"] == link
    assert f'href="{link}"' in get(f"{web.url}/accounts/A0014?lang=en").text
    pdf = get(web.url + link)
    assert pdf.status == 200 and pdf.body.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    (written,) = (database.work / "documents" / "bills" / month).glob("A0014.pdf")
    assert pdf.body == written.read_bytes()
    for bad in ("2026-13", "1999-01", "2026-4", "..%2F..", "%2e%2e", "2026-04%00"):
        assert clean_refusal(get(f"{web.url}/accounts/A0014/bills/{bad}.pdf"), 404), bad
    assert clean_refusal(get(f"{web.url}/accounts/A0015/bills/{month}.pdf"), 404)
    assert clean_refusal(get(f"{web.url}/accounts/A0014'/bills/{month}.pdf"), 400)


def test_a_bill_pdf_not_rendered_by_the_job_is_rendered_on_demand_and_kept(
    web: WebProcess, database: Database
) -> None:
    (bill,) = database.bills
    month = f"{bill['month']:%Y-%m}"
    link = f"/accounts/A0014/bills/{month}.pdf"
    kept = database.work / "documents" / "bills" / month / "A0014.pdf"
    batch = kept.read_bytes()  # rendered by `wattpay bills` in its own process
    kept.unlink()  # as after `wattpay bills --no-documents`
    (got,) = get(f"{web.url}/api/accounts/A0014/bills").json()["bills"]
    assert got["bill_pdf"] == link  # linked before it is rendered
    assert f'href="{link}"' in get(f"{web.url}/accounts/A0014?lang=zh-CN").text
    on_demand = get(web.url + link)
    assert on_demand.status == 200 and on_demand.headers["content-type"] == "application/pdf"
    assert on_demand.body == batch  # from the rows in ClickHouse: the same bill, byte for byte
    assert kept.read_bytes() == batch  # kept where the job would have put it
    assert get(web.url + link).body == batch
    assert not list((database.work / "documents").rglob("*.part"))
    for other in ("A0015", database.closed):  # not billed: nothing rendered, nothing kept
        assert clean_refusal(get(f"{web.url}/accounts/{other}/bills/{month}.pdf"), 404)
    for bad in ("0000-01", "1969-12", "2149-06", "9999-12"):
        assert clean_refusal(get(f"{web.url}/accounts/A0014/bills/{bad}.pdf"), 404), bad
    assert sorted(p.name for p in kept.parent.iterdir()) == ["A0014.pdf"]


def test_usage_analysis_is_on_the_page(web: WebProcess, database: Database) -> None:
    (row,) = database.analysis
    (bill,) = database.bills
    got = get(f"{web.url}/api/accounts/A0014/analysis").json()["analysis"]
    assert Decimal(got["kwh"]) == row["kwh"] == bill["kwh"]
    assert Decimal(got["peak_share_percent"]) == row["peak_share"] * 100
    assert Decimal(got["kwh_peak"]) == bill["kwh_peak"]
    assert Decimal(got["charge"]) == row["charge"]
    assert got["alt_plan"] == row["alt_plan"] and Decimal(got["alt_charge"]) == row["alt_charge"]
    assert Decimal(got["alt_difference"]) == row["alt_charge"] - row["charge"]
    prev = bill["kwh_prev_month"]
    if prev:
        change = ((bill["kwh"] - prev) * 100 / prev).quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert Decimal(got["change_prev_month_percent"]) == change
    else:
        assert got["change_prev_month_percent"] is None
    for lang in ("en", "zh-CN"):
        page = get(f"{web.url}/accounts/A0014?lang={lang}").text
        section = page.split('id="analysis"')[1].split("</section>")[0]
        assert f'id="analysis-kwh">{row["kwh"]}<' in section
        assert f'data-value="{(row["peak_share"] * 100).quantize(Decimal("0.01"))}"' in section
        assert (
            f'id="what-if" data-plan="{row["alt_plan"]}" data-value="{row["alt_charge"]}"'
            in section
        )
    assert get(f"{web.url}/api/accounts/A0015/analysis").json()["analysis"] is None


def test_search_by_account_meter_landlord_and_phone(web: WebProcess, database: Database) -> None:
    def found(q: str) -> dict:
        reply = get(f"{web.url}/api/search?q={quote(q)}")
        assert reply.status == 200, (q, reply.text)
        return reply.json()

    prefix = sorted(a for a in database.accounts if a.startswith("A001"))
    assert [a["account_id"] for a in found("a001")["accounts"]] == prefix
    row = database.accounts["A0014"]
    (hit,) = [a for a in found(row["meter_id"])["accounts"] if a["account_id"] == "A0014"]
    assert Decimal(hit["available"]) == row["available"] and hit["status"] == row["status"]
    by_landlord = found("L015")
    assert "L015" in by_landlord["landlords"]
    assert set(database.landlords["L015"]) <= {a["account_id"] for a in by_landlord["accounts"]}
    phones = {o["account_id"]: o["phone"] for o in database.opens if o.get("phone")}
    assert phones, "the example opens accounts with phone numbers"
    account_id, phone = sorted(phones.items())[0]
    suffix = phone[-6:]
    want = {a for a, p in phones.items() if p.endswith(suffix)}
    assert want <= {a["account_id"] for a in found(suffix)["accounts"]}
    assert account_id in {a["account_id"] for a in found(suffix)["accounts"]}
    assert found("NOSUCH-ZZZ")["accounts"] == []
    for lang, none in (("en", "Nothing matches."), ("zh-CN", "没有匹配的账户。")):
        page = get(f"{web.url}/search?q=A0014&lang={lang}").text
        assert 'href="/accounts/A0014?lang=' in page
        assert none in get(f"{web.url}/search?q=NOSUCH-ZZZ&lang={lang}").text
    for bad in ("", "%20%20", "x" * 65, "%00", "a%0Ab", "%FF"):
        reply = get(f"{web.url}/api/search?q={bad}")
        assert clean_refusal(reply, 400), (bad, reply.status, reply.text[:200])
        assert clean_refusal(get(f"{web.url}/search?q={bad}"), 400), bad
    assert clean_refusal(get(f"{web.url}/api/search"), 400)
    for odd in ("'; DROP TABLE accounts; --", "%25", "_", "\\", "中文", "{q:String}"):
        assert get(f"{web.url}/api/search?q={quote(odd)}").status == 200, odd


def latest(database: Database, account_id: str, kind: str) -> datetime | None:
    times = [
        e["ts"] for e in database.events if e["account_id"] == account_id and e["type"] == kind
    ]
    return max(times) if times else None


def test_operator_lists_with_balance_and_since(web: WebProcess, database: Database) -> None:
    for status in ("arrears", "disconnected"):
        want = sorted(a for a, r in database.accounts.items() if r["status"] == status)
        got = get(f"{web.url}/api/lists/{status}").json()
        assert got["total"] == len(want) and got["page"] == 1
        assert [a["account_id"] for a in got["accounts"]] == want[:50]
        for a in got["accounts"]:
            assert Decimal(a["available"]) == database.accounts[a["account_id"]]["available"]
            since = latest(database, a["account_id"], status)
            assert (a["since"] and datetime.fromisoformat(a["since"])) == since
    # Pending cuts: the latest cut event of the account is a scheduled cut.
    cut_kinds = ("disconnect_scheduled", "disconnected", "reconnected", "account_closed")
    pending = []
    for account_id in database.accounts:
        cuts = [
            e for e in database.events if e["account_id"] == account_id and e["type"] in cut_kinds
        ]
        if cuts and max(cuts, key=lambda e: e["ts"])["type"] == "disconnect_scheduled":
            pending.append(account_id)
    got = get(f"{web.url}/api/lists/pending_cut").json()
    assert sorted(a["account_id"] for a in got["accounts"]) == sorted(pending)
    # Relay commands: this server reads no results topic and ClickHouse holds only the
    # failures the billing recorded (meter_anomaly relay_failed), so every other command's
    # confirmation is unknown, not "unconfirmed".
    commanded = {
        e["account_id"] for e in database.events if e["type"] in ("disconnect", "reconnect")
    }
    got = get(f"{web.url}/api/lists/relay").json()
    assert got["total"] == len(commanded) > 0 and got["relay_results_followed"] is False
    for a in got["accounts"]:
        since = max(
            latest(database, a["account_id"], "disconnect") or datetime.min.replace(tzinfo=UTC),
            latest(database, a["account_id"], "reconnect") or datetime.min.replace(tzinfo=UTC),
        )
        assert datetime.fromisoformat(a["since"]) == since
        error = database.relay_failed.get(a["command_id"])
        assert (a["outcome"], a["error"]) == (("failed", error) if error else ("unknown", None))
        assert Decimal(a["available"]) == database.accounts[a["account_id"]]["available"]
    assert sum(a["outcome"] == "failed" for a in got["accounts"]) == 1
    (failed_id,) = database.relay_failed
    commands = get(f"{web.url}/api/operations").json()["commands"]
    assert {c["event_id"]: c["outcome"] for c in commands}[failed_id] == "coil read back 0"
    assert {c["outcome"] for c in commands if c["event_id"] != failed_id} == {None}
    for lang, unknown, note in (
        ("en", "unknown", "this server reads no relay results"),
        ("zh-CN", "未知", "本服务未读取开关执行结果"),
    ):
        for page in (f"/lists/relay?lang={lang}", f"/?lang={lang}"):
            text = get(web.url + page).text
            assert f'class="outcome unknown">{unknown}<' in text and note in text, page
            assert "not confirmed yet" not in text and "尚未确认" not in text, page
            assert 'class="outcome failed">' in text and "coil read back 0" in text, page
    for lang, title in (("en", "Accounts in arrears"), ("zh-CN", "欠费账户")):
        page = get(f"{web.url}/lists/arrears?lang={lang}").text
        assert f"<h2>{title}" in page
        ops = get(f"{web.url}/?lang={lang}").text
        assert f'href="/lists/arrears?lang={lang}"' in ops
    empty = get(f"{web.url}/api/lists/arrears?page=2").json()
    assert empty["accounts"] == [] and empty["page"] == 2
    for bad in ("0", "-1", "abc", "10001", "", "1.5", "%00", "99999999999999999999"):
        assert clean_refusal(get(f"{web.url}/api/lists/arrears?page={bad}"), 400), bad
    for name in ("nosuch", "ARREARS", "..", "%00"):
        assert clean_refusal(get(f"{web.url}/api/lists/{name}"), 404), name
        assert clean_refusal(get(f"{web.url}/lists/{name}"), 404), name


def test_operations_names_what_it_shows(web: WebProcess, database: Database) -> None:
    for lang, unknown, malformed, no_district in (
        ("en", "unknown", "malformed", "(no district)"),
        ("zh-CN", "未知", "格式错误", "（未填写区域）"),
    ):
        page = get(f"{web.url}/?lang={lang}").text
        messages = page.split('id="messages"')[1].split("</span></div>")[0]
        assert f" {unknown} " in messages and ">0<" not in messages  # no metrics: not 0
        rejected = page.split('id="rejected"')[1].split("</section>")[0]
        assert 'data-reason="malformed"><th>' in rejected and f"<td>{malformed}</td>" in rejected
        districts = page.split('id="districts"')[1].split("</section>")[0]
        assert "<th>—</th>" not in districts
        ops = get(f"{web.url}/api/operations").json()
        if any(d["district"] is None for d in ops["districts"] or []):
            assert f"<th>{no_district}</th>" in districts


# In headless Chromium: the same server and database, one page load per page and locale;
# what a person sees is read from the rendered DOM and compared with the ClickHouse rows.

LOCALES = (("en", "State Grid Example"), ("zh-CN", "国网示例供电"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    chromium = Browser(tmp_path_factory.mktemp("chromium"))
    yield chromium
    chromium.close()


def expected_texts(
    database: Database, account_id: str, today: date, lang: str, signature: str
) -> list[tuple]:
    """(ts, type, text) of the account's 90-day history, from the events rows."""
    from notify.texts import render

    want = []
    for ts, kind in expected_history(database, account_id, today):
        if kind == "points_expired":
            points = [
                -x["points"]
                for x in database.expiries
                if x["account_id"] == account_id and x["ts"] == ts
            ]
            want.append((ts, kind, str(points[0])))
            continue
        (event,) = [
            e
            for e in database.events
            if e["account_id"] == account_id and e["ts"] == ts and e["type"] == kind
        ]
        notification = {"ts": ts, "type": kind, "data": json.loads(event["data"] or "{}")}
        notification.update(account_id=account_id, locale=lang)
        want.append((ts, kind, render(notification, signature, LOCAL_ZONE, lang).text))
    return want


def page_history(browser: Browser) -> list[tuple]:
    shown = browser.evaluate(
        "[...document.querySelectorAll('#history tr[data-type]')].map(r => "
        "[r.querySelector('time').getAttribute('datetime'), r.dataset.type, "
        "r.cells[1].textContent])"
    )
    return [(datetime.fromisoformat(ts), kind, text) for ts, kind, text in shown]


def test_household_history_analysis_and_bill_in_chromium(
    web: WebProcess, database: Database, browser: Browser
) -> None:
    cut = {e["account_id"] for e in database.events if e["type"] == "disconnected"}
    back = {e["account_id"] for e in database.events if e["type"] == "reconnected"}
    (row,) = database.analysis
    (bill,) = database.bills
    month = f"{bill['month']:%Y-%m}"
    written = database.work / "documents" / "bills" / month / "A0014.pdf"
    for lang, signature in LOCALES:
        for account_id in ("A0014", min(cut & back), database.closed):
            today = date.fromisoformat(get(f"{web.url}/api/accounts/{account_id}").json()["today"])
            browser.open(f"{web.url}/accounts/{account_id}?lang={lang}")
            assert browser.evaluate("document.documentElement.lang") == lang
            shown = page_history(browser)
            want = expected_texts(database, account_id, today, lang, signature)
            assert shown or account_id == "A0014", account_id  # a cut, a close: never empty
            assert [ts for ts, _, _ in shown] == sorted((ts for ts, _, _ in shown), reverse=True)
            for (ts, kind, text), (ts_w, kind_w, text_w) in zip(
                sorted(shown), sorted(want), strict=True
            ):
                assert (ts, kind) == (ts_w, kind_w), account_id
                if kind == "points_expired":
                    assert text_w in text, text  # the points, in the page's words
                else:
                    assert text == text_w, (account_id, lang)
            if account_id != "A0014":
                continue
            # The month's usage analysis, against usage_analysis and bills FINAL.
            analysis = browser.evaluate(
                "({kwh: document.querySelector('#analysis-kwh').textContent,"
                " share: document.querySelector('#peak-share td.num').dataset.value,"
                " shareText: document.querySelector('#peak-share td.num').textContent,"
                " prev: document.querySelector('#vs-prev-month td.num').dataset.value,"
                " year: document.querySelector('#vs-last-year td.num').dataset.value,"
                " whatIf: {...(document.querySelector('#what-if') || {dataset: {}}).dataset},"
                " whatIfText: (document.querySelector('#what-if') || {}).textContent || ''})"
            )
            assert Decimal(analysis["kwh"]) == row["kwh"] == bill["kwh"]
            share = (row["peak_share"] * 100).quantize(Decimal("0.01"))
            assert Decimal(analysis["share"]) == share
            assert f"({bill['kwh_peak']} / {bill['kwh_valley']} kWh)" in analysis["shareText"]
            for key, before in (("prev", "kwh_prev_month"), ("year", "kwh_same_month_last_year")):
                base = bill[before]
                if base:
                    change = ((bill["kwh"] - base) * 100 / base).quantize(
                        Decimal("0.01"), ROUND_HALF_UP
                    )
                    assert Decimal(analysis[key]) == change
                else:
                    assert analysis[key] == ""
            if row["alt_plan"]:
                assert analysis["whatIf"] == {
                    "plan": row["alt_plan"],
                    "value": str(row["alt_charge"]),
                }
                assert f"¥{row['alt_charge']}" in analysis["whatIfText"]
                difference = abs(row["alt_charge"] - row["charge"])
                if difference:
                    assert f"¥{difference}" in analysis["whatIfText"]
                assert row["alt_plan"] not in analysis["whatIfText"]  # named, not its id
                if row["alt_plan"] == "zhejiang-tou":
                    assert TOU_NAMES[lang] in analysis["whatIfText"]  # as configured
            # The bill's row and its PDF, fetched by the page as a click would.
            link = browser.evaluate("document.querySelector('#bills a.bill-pdf').href")
            assert link == f"{web.url}/accounts/A0014/bills/{month}.pdf"
            cells = browser.evaluate(
                "[...document.querySelector('#bills tr:nth-child(2)').cells]"
                ".map(c => c.textContent.trim())"
            )
            assert cells[:4] == [
                month,
                f"{bill['kwh']} kWh",
                f"¥{bill['charge']}",
                f"¥{bill['closing_balance']}",
            ]
            fetched = browser.evaluate(
                f"fetch({json.dumps(link)}).then(async r => ({{status: r.status,"
                " type: r.headers.get('content-type'),"
                " sha: [...new Uint8Array(await crypto.subtle.digest('SHA-256',"
                " await r.arrayBuffer()))].map(b => b.toString(16).padStart(2, '0')).join('')}))",
                wait=True,
            )
            assert fetched == {
                "status": 200,
                "type": "application/pdf",
                "sha": hashlib.sha256(written.read_bytes()).hexdigest(),
            }
            invoice = browser.evaluate(
                "[...document.querySelectorAll('#bills a[href^=\"/documents/\"]')]"
                ".map(a => a.getAttribute('href'))"
            )
            number = bill["invoice_no"]
            assert invoice == [f"/documents/{number}.pdf", f"/documents/{number}.xml"]


def page_accounts(browser: Browser) -> list[dict]:
    return browser.evaluate(
        "[...document.querySelectorAll('table.accounts tr[data-account]')].map(r => ({"
        " account: r.dataset.account, meter: r.cells[1].textContent,"
        " status: r.cells[2].textContent, available: r.cells[3].dataset.value,"
        " since: (r.querySelector('time') || {getAttribute: () => null})"
        "   .getAttribute('datetime'),"
        " outcome: (r.querySelector('td.outcome') || {className: ''}).className}))"
    )


def test_operator_lists_and_search_in_chromium(
    web: WebProcess, database: Database, browser: Browser
) -> None:
    cut_kinds = ("disconnect_scheduled", "disconnected", "reconnected", "account_closed")
    pending = {}
    for account_id in database.accounts:
        cuts = [
            e for e in database.events if e["account_id"] == account_id and e["type"] in cut_kinds
        ]
        latest_cut = max(cuts, key=lambda e: e["ts"]) if cuts else None
        if latest_cut and latest_cut["type"] == "disconnect_scheduled":
            pending[account_id] = latest_cut["ts"]
    commands, latest_command = {}, {}
    for e in sorted(database.events, key=lambda e: e["ts"]):
        if e["type"] in ("disconnect", "reconnect"):
            commands[e["account_id"]] = e["ts"]
            latest_command[e["account_id"]] = e["event_id"]
    since = {
        "arrears": {
            a: latest(database, a, "arrears")
            for a, r in database.accounts.items()
            if r["status"] == "arrears"
        },
        "disconnected": {
            a: latest(database, a, "disconnected")
            for a, r in database.accounts.items()
            if r["status"] == "disconnected"
        },
        "pending_cut": pending,
        "relay": commands,
    }
    assert since["relay"], "the example needs relay commands"
    for lang, _ in LOCALES:
        for name, want in since.items():
            browser.open(f"{web.url}/lists/{name}?lang={lang}")
            total = browser.evaluate("Number(document.querySelector('#list').dataset.total)")
            assert total == len(want), (name, lang)
            rows = page_accounts(browser)
            assert len(rows) == min(len(want), 50)
            if not want:
                assert browser.evaluate("document.querySelector('#list p.muted') !== null")
            for r in rows:
                account = database.accounts[r["account"]]
                assert Decimal(r["available"]) == account["available"], (name, r)
                assert r["meter"] == account["meter_id"]
                assert r["status"] and (lang == "en" or r["status"] != account["status"])
                assert datetime.fromisoformat(r["since"]) == want[r["account"]], (name, r)
                if name == "relay":
                    failed = latest_command[r["account"]] in database.relay_failed
                    assert r["outcome"] == f"outcome {'failed' if failed else 'unknown'}"
            if name == "relay":  # why "unknown": no relay results read here
                assert browser.evaluate("document.querySelector('#relay-not-followed') !== null")
        # Search from the form on the page, as an operator types it.
        phones = {o["account_id"]: o["phone"] for o in database.opens if o.get("phone")}
        account_id, phone = sorted(phones.items())[0]
        suffix = phone[-6:]
        browser.evaluate(
            "(() => { const f = document.querySelector('form.search');"
            f" f.querySelector('input[name=q]').value = {json.dumps(suffix)};"
            " f.submit(); })()"
        )
        browser.wait_for(
            "location.pathname === '/search' && document.readyState === 'complete'", 30
        )
        assert browser.evaluate("document.documentElement.lang") == lang
        found = {r["account"]: r for r in page_accounts(browser)}
        assert {a for a, p in phones.items() if p.endswith(suffix)} <= set(found)
        for a, r in found.items():
            assert Decimal(r["available"]) == database.accounts[a]["available"]
            assert r["meter"] == database.accounts[a]["meter_id"]


def test_landlord_settlement_in_chromium(
    web: WebProcess, database: Database, browser: Browser
) -> None:
    """The refund a landlord pays back at move-out, as the ledger posted it, in both languages."""
    landlord_id = next(k for k, v in database.landlords.items() if database.closed in v)
    ledger = database.closed_ledger
    before = [e for e in ledger if e["ref"] != "close"][-1]["balance_after"]
    redeemed = sum(
        (e["amount"] for e in ledger if e["ref"] == "close" and e["kind"] == "points_redemption"),
        Decimal(0),
    )
    refunds = [-e["amount"] for e in ledger if e["ref"] == "close" and e["kind"] == "refund"]
    for lang, title in (("en", "Refund to the tenant"), ("zh-CN", "应退还租户")):
        browser.open(f"{web.url}/landlords/{landlord_id}?lang={lang}")
        shown = browser.evaluate(
            "(() => { const t = document.querySelector("
            f"'.tenant[data-account=\"{database.closed}\"]');"
            " const v = s => (t.querySelector(s) || {dataset: {}}).dataset.value || null;"
            " return {head: v('p > strong'), headText: t.querySelector('p').textContent,"
            " before: v('tr.at-move-out td'), points: v('tr.points-redeemed td'),"
            " refund: v('tr.refund td'), owed: v('tr.owed td'), now: v('tr.balance-now td')}; })()"
        )
        assert Decimal(shown["before"]) == before
        assert Decimal(shown["points"]) == redeemed
        assert Decimal(shown["now"]) == ledger[-1]["balance_after"]
        if refunds:
            assert [Decimal(shown["refund"])] == refunds == [before + redeemed]
            assert Decimal(shown["head"]) == refunds[0] and title in shown["headText"]
            assert shown["owed"] is None
        else:
            assert Decimal(shown["owed"]) == Decimal(shown["head"]) == -(before + redeemed)
        for tenant in database.landlords[landlord_id]:
            if tenant == database.closed:
                continue
            available = browser.evaluate(
                f"document.querySelector('.tenant[data-account=\"{tenant}\"] strong.available')"
                ".dataset.value"
            )
            assert Decimal(available) == database.accounts[tenant]["available"]
