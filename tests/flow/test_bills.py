"""Monthly bills, invoices, notices and usage analysis over a real replay into chdb (S15.1–4).

Every expected value is computed by hand in the comments (flat tariff 0.538 / 0.588 yuan/kWh
in tiers 1 / 2; tier 1 ends at 2760 kWh of the calendar year).
"""

import json
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from config.settings import load_settings
from jobs.bills import invoice_number
from jobs.monthly import run_monthly
from store.clickhouse import ClickHouseStore

WATTPAY = [sys.executable, "-m", "wattpay.cli"]
D = Decimal


def _open(aid: str, meter: str, ts: str, balance: str, **extra: str) -> dict:
    return {
        "type": "open",
        "account_id": aid,
        "meter_id": meter,
        "plan": "zhejiang-tiered",
        "ts": ts,
        "opening_balance": balance,
        **extra,
    }


def _reading(meter: str, ts: str, kwh: str) -> dict:
    return {"meter_id": meter, "ts": ts, "energy_kwh": kwh}


ACCOUNTS = [
    # A3: Dec → Jan tier reset, opened with 2750 kWh already used this year.
    _open("A3", "M3", "2025-12-30T00:00:00+08:00", "1000.00", ytd_kwh="2750"),
    # A4: points earned in 2025 expire when Dec 31 2026 closes.
    _open("A4", "M4", "2025-12-31T00:00:00+08:00", "500.00", locale="en", phone="13800000004"),
    # A1: opened mid-month, a top-up with rebate mid-month.
    _open("A1", "M1", "2026-03-10T00:00:00+08:00", "100.00", landlord_id="L1"),
    # A2: moves out with a refund.
    _open("A2", "M2", "2026-04-01T00:00:00+08:00", "50.00"),
    {"type": "close", "account_id": "A2", "ts": "2026-04-02T12:00:00+08:00", "final_kwh": "115"},
]
PAYMENTS = [
    {
        "type": "topup",
        "payment_id": "P1",
        "account_id": "A1",
        "amount": "500.00",
        "channel": "app",
        "ts": "2026-03-11T12:00:00+08:00",
    },
    {
        "type": "topup",
        "payment_id": "P2",
        "account_id": "A2",
        "amount": "100.00",
        "channel": "counter",
        "ts": "2026-04-01T08:00:00+08:00",
    },
    # A1 pays in May, when its meter no longer reports: a bill without a day in the month.
    {
        "type": "topup",
        "payment_id": "P3",
        "account_id": "A1",
        "amount": "100.00",
        "channel": "counter",
        "ts": "2026-05-05T09:00:00+08:00",
    },
]
READINGS = [
    _reading("M3", "2025-12-30T00:00:00+08:00", "0"),
    _reading("M4", "2025-12-31T00:00:00+08:00", "0"),
    _reading("M3", "2025-12-31T00:00:00+08:00", "20"),
    _reading("M3", "2026-01-01T00:00:00+08:00", "30"),
    _reading("M3", "2026-01-02T00:00:00+08:00", "40"),
    _reading("M1", "2026-03-10T00:00:00+08:00", "0"),
    _reading("M1", "2026-03-11T00:00:00+08:00", "10"),
    _reading("M1", "2026-03-12T00:00:00+08:00", "30"),
    _reading("M2", "2026-04-01T00:00:00+08:00", "100"),
    _reading("M2", "2026-04-02T00:00:00+08:00", "110"),
    _reading("M4", "2026-12-31T00:00:00+08:00", "0"),
    _reading("M4", "2027-01-01T00:00:00+08:00", "0"),
]


def _jsonl(path: Path, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: r["ts"])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    base = tmp_path_factory.mktemp("bills")
    inputs = base / "input"
    inputs.mkdir()
    _jsonl(inputs / "accounts.jsonl", ACCOUNTS)
    _jsonl(inputs / "payments.jsonl", PAYMENTS)
    _jsonl(inputs / "readings.jsonl", READINGS)
    dsn = f"chdb://{base / 'clickhouse'}"
    subprocess.run([*WATTPAY, "replay", str(inputs), "--clickhouse", dsn, "--quiet"], check=True)
    return dsn, base / "jobs"


def _bills(dsn: str, out: Path, month: str, **kw) -> dict[str, dict]:
    settings = load_settings(clickhouse_dsn=dsn, env={})
    result = run_monthly(settings, date.fromisoformat(month + "-01"), out, documents=False, **kw)
    return {b["account_id"]: b for b in result.bills}


def test_month_with_mid_month_open_topup_and_rebate(replayed: tuple[str, Path]) -> None:
    dsn, out = replayed
    bills = _bills(dsn, out, "2026-03")
    assert set(bills) == {"A1", "A4"}  # A4 earns daily points every day of 2026
    b = bills["A1"]
    # Days Mar 10 (10 kWh), Mar 11 (20 kWh) and Mar 12 (0, closed at the end of the replay).
    assert (b["days"], b["kwh"], b["kwh_tier1"], b["kwh_tier2"]) == (
        3,
        D("30.000"),
        D("30.000"),
        D("0.000"),
    )
    # 10 × 0.538 = 5.38; 20 × 0.538 = 10.76.
    assert b["charge"] == D("16.14")
    assert (b["topups"], b["topup_count"], b["rebates"]) == (D("500.00"), 1, D("30.00"))
    assert (b["points_redeemed_yuan"], b["refund"]) == (D("0.00"), D("0.00"))
    # Opening 100.00; closing 100 + 500 + 30 − 16.14 = 613.86.
    assert (b["opening_balance"], b["closing_balance"]) == (D("100.00"), D("613.86"))
    # Basic 500; daily: Mar 10 closes at 94.62 → 0, Mar 11 at 613.86 → 6, Mar 12 at the end
    # of the replay, after May's top-up, at 713.86 → 7.
    assert (b["points_opening"], b["points_earned"], b["points_closing"]) == (0, 513, 513)
    assert (b["ytd_kwh"], b["tier"], b["kwh_to_next_tier"]) == (D("30.000"), 1, D("2730.000"))
    assert b["avg_price"] == D("0.5380")  # 16.14 ÷ 30
    assert b["kwh_prev_month"] is None and b["kwh_same_month_last_year"] is None
    assert b["invoice_no"] == invoice_number("A1", date(2026, 3, 1))
    assert len(b["invoice_no"]) == 20 and b["invoice_no"].startswith("202603")
    assert b["bill_id"] == "A1:2026-03" and b["disconnections"] == 0


def test_a_month_without_a_day_takes_the_ytd_of_the_last_one(replayed: tuple[str, Path]) -> None:
    dsn, out = replayed
    b = _bills(dsn, out, "2026-05", account="A1")["A1"]
    assert (b["days"], b["kwh"], b["charge"], b["invoice_no"]) == (0, D("0.000"), D("0.00"), None)
    # Its last day (12 March) ended at 30 kWh for the year: tier 1, 2730 kWh to tier 2.
    assert (b["ytd_kwh"], b["tier"], b["kwh_to_next_tier"]) == (D("30.000"), 1, D("2730.000"))
    # March closed at 613.86; no entry in April; a 100.00 top-up at the counter (no rebate).
    assert (b["opening_balance"], b["topups"], b["closing_balance"]) == (
        D("613.86"),
        D("100.00"),
        D("713.86"),
    )
    assert b["kwh_prev_month"] is None  # no bill in April


def test_close_with_refund(replayed: tuple[str, Path]) -> None:
    dsn, out = replayed
    b = _bills(dsn, out, "2026-04", account="A2")["A2"]
    # Apr 1: 10 kWh → 5.38; Apr 2 (closed at 12:00 with final 115): 5 kWh → 2.69.
    assert (b["days"], b["kwh"], b["charge"]) == (2, D("15.000"), D("8.07"))
    # Basic 100 (counter: no rebate); daily 1 + 1 (144.62 and 141.93 held); all 102 redeemed
    # at the close (1.02); refund 50 + 100 − 8.07 + 1.02 = 142.95.
    assert (b["topups"], b["rebates"], b["points_redeemed_yuan"]) == (
        D("100.00"),
        D("0.00"),
        D("1.02"),
    )
    assert b["refund"] == D("142.95")
    assert (b["opening_balance"], b["closing_balance"]) == (D("50.00"), D("0.00"))
    assert (b["points_earned"], b["points_redeemed"], b["points_closing"]) == (102, 102, 0)


def test_december_to_january_tier_reset(replayed: tuple[str, Path]) -> None:
    dsn, out = replayed
    dec = _bills(dsn, out, "2025-12", account="A3")["A3"]
    # Dec 30: 20 kWh from 2750: 10 in tier 1 (5.38) + 10 in tier 2 (5.88); Dec 31: 10 in tier 2.
    assert (dec["kwh_tier1"], dec["kwh_tier2"], dec["charge"]) == (
        D("10.000"),
        D("20.000"),
        D("17.14"),
    )
    assert (dec["ytd_kwh"], dec["tier"], dec["kwh_to_next_tier"]) == (
        D("2780.000"),
        2,
        D("2020.000"),
    )
    assert dec["avg_price"] == D("0.5713")  # 17.14 ÷ 30 = 0.571333…
    # Daily points 9 + 9 (988.74 and 982.86 held); the Dec 31 points are posted Jan 1 00:00.
    assert dec["points_earned"] == 18
    jan = _bills(dsn, out, "2026-01", account="A3")["A3"]
    # Jan 1: 10 kWh back in tier 1 (5.38); Jan 2 closes empty at the end of the replay.
    assert (jan["days"], jan["kwh_tier1"], jan["kwh_tier2"], jan["charge"]) == (
        2,
        D("10.000"),
        D("0.000"),
        D("5.38"),
    )
    assert (jan["ytd_kwh"], jan["tier"], jan["kwh_to_next_tier"]) == (D("10.000"), 1, D("2750.000"))
    assert (jan["opening_balance"], jan["closing_balance"]) == (D("982.86"), D("977.48"))
    assert (jan["points_opening"], jan["points_earned"], jan["points_closing"]) == (18, 18, 36)
    assert jan["kwh_prev_month"] == D("30.000")


def test_points_expire_on_december_31(replayed: tuple[str, Path]) -> None:
    dsn, out = replayed
    b = _bills(dsn, out, "2026-12", account="A4")["A4"]
    # 500.00 held: 5 points a day. Opening: Dec 31 2025 + Jan 1 … Nov 30 2026 (334 days).
    assert b["points_opening"] == 5 + 334 * 5
    # Dec 1 … Dec 31 earn 31 × 5; closing Dec 31 then expires the 5 points of 2025.
    assert (b["points_earned"], b["points_expired"]) == (155, 5)
    assert b["points_closing"] == 1675 + 155 - 5
    assert (b["charge"], b["invoice_no"], b["avg_price"]) == (D("0.00"), None, None)
    assert b["kwh_same_month_last_year"] == D("0.000")  # Dec 2025 had a bill, with no kWh


def test_rerun_rewrites_the_same_rows_and_notices(replayed: tuple[str, Path]) -> None:
    dsn, out = replayed
    _bills(dsn, out, "2026-03")
    _bills(dsn, out, "2026-03")
    with ClickHouseStore(dsn) as store:
        _, raw = store.query("SELECT count() FROM bills FINAL WHERE month = '2026-03-01'")
        _, inv = store.query(
            "SELECT invoice_no, amount, amount_excl_tax, tax FROM invoices FINAL "
            "WHERE bill_id = 'A1:2026-03'"
        )
        _, events = store.query(
            "SELECT count() FROM events FINAL WHERE type = 'monthly_bill' "
            "AND event_id = 'monthly_bill:A1:2026-03'"
        )
        _, analysis = store.query(
            "SELECT alt_plan, alt_charge, charge FROM usage_analysis FINAL "
            "WHERE account_id = 'A1' AND month = '2026-03-01'"
        )
        columns, usage = store.query(
            "SELECT hourly_kwh, peak_share, base_load_w, kwh_change_prev_month, anomaly_days,"
            " forecast_kwh FROM usage_analysis FINAL WHERE account_id = 'A1'"
        )
    assert raw == [(2,)]
    # 16.14 ÷ 1.13 = 14.283… → 14.28; tax 1.86.
    assert inv == [(invoice_number("A1", date(2026, 3, 1)), D("16.14"), D("14.28"), D("1.86"))]
    assert events == [(1,)]
    # On TOU, Mar 10 spreads 10 kWh evenly; cumulative 3.333 at 08:00 and 9.167 at 22:00:
    # valley 3.333 + 0.833, peak 5.834. Mar 11 (20 kWh): 6.667 and 18.333: valley 6.667 +
    # 1.667, peak 11.666.
    # Mar 10: 4.166 × 0.288 + 5.834 × 0.568 = 1.199808 + 3.313712 = 4.51352 → 4.51
    # Mar 11: 8.334 × 0.288 + 11.666 × 0.568 = 2.400192 + 6.626288 = 9.02648 → 9.03
    assert analysis == [("zhejiang-tou", D("13.54"), D("16.14"))]
    hourly, peak_share, base_load, change, anomalies, forecast = usage[0]
    # One interval a day, starting 00:00: 30 kWh in hour 0 over 3 days.
    assert hourly == [D("10.000")] + [D("0.000")] * 23
    assert peak_share == D("0.0000")
    # Lowest mean power of the night: 10 kWh / 24 h = 417 W, 20 kWh / 24 h = 833 W → median 625.
    assert base_load == 625
    assert (change, anomalies, forecast) == (None, 0, None)  # days 10, 20, 0: none > 2 × 10
    lines = (out / "out" / "wattpay.notifications.jsonl").read_text(encoding="utf-8").splitlines()
    notices = [json.loads(line) for line in lines]
    ids = [n["event_id"] for n in notices]
    assert len(ids) == len(set(ids))
    (a1,) = [n for n in notices if n["event_id"] == "monthly_bill:A1:2026-03"]
    assert a1["data"] == {
        "month": "2026-03",
        "kwh": "30.000",
        "charge": "16.14",
        "closing_balance": "613.86",
        "invoice_no": a1["data"]["invoice_no"],
    }
    (a4,) = [n for n in notices if n["event_id"] == "monthly_bill:A4:2026-03"]
    assert (a4["locale"], a4["phone"], a4["data"]["invoice_no"]) == ("en", "13800000004", None)


def test_account_events_and_account_columns(replayed: tuple[str, Path]) -> None:
    dsn, _ = replayed
    with ClickHouseStore(dsn) as store:
        _, events = store.query(
            "SELECT account_id, type FROM account_events FINAL ORDER BY account_id, ts"
        )
        _, accounts = store.query(
            "SELECT account_id, opening_balance, landlord_id "
            "FROM accounts FINAL ORDER BY account_id"
        )
    assert events == [
        ("A1", "open"),
        ("A2", "open"),
        ("A2", "close"),
        ("A3", "open"),
        ("A4", "open"),
    ]
    assert accounts[0] == ("A1", D("100.00"), "L1")
    assert accounts[1][:2] == ("A2", D("50.00"))


def test_up_scheduler_bills_the_month_that_just_ended_once(replayed: tuple[str, Path]) -> None:
    import threading
    import time

    from jobs.schedule import due_month, monthly_scheduler, request_bills

    assert due_month(date(2026, 4, 2), set()) is None
    assert due_month(date(2027, 1, 1), set()) == date(2026, 12, 1)
    assert due_month(date(2026, 4, 1), {date(2026, 3, 1)}) is None
    dsn, out = replayed
    stop = threading.Event()
    settings = load_settings(clickhouse_dsn=dsn, env={})
    body = monthly_scheduler(
        settings, {}, out / "up", stop, every_seconds=0.05, today=lambda: date(2026, 4, 1)
    )
    answer = request_bills(out / "up", date(2026, 4, 1))  # as `wattpay bills --now` does
    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    marker = out / "up" / ".billed-2026-03"
    for _ in range(600):
        if marker.exists() and answer.exists():
            break
        time.sleep(0.1)
    stop.set()
    thread.join(30)
    assert marker.read_text() == "2\n"  # A1 and A4
    assert answer.read_text() == "2\n"  # A2 and A4
    assert not (out / "up" / ".request-2026-04").exists()
    assert list((out / "up" / "invoices" / "2026-03").glob("A1-*.xml"))
    assert (out / "up" / "bills" / "2026-03" / "A1.pdf").exists()


def test_cli_writes_documents_and_prints_a_summary(
    replayed: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wattpay.cli import main

    dsn, _ = replayed
    out = tmp_path / "docs"
    assert main(["bills", "--month", "2026-04", "--clickhouse", dsn, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["month"], summary["bills"], summary["invoices"]) == ("2026-04", 2, 1)
    assert "bills 2026-04 [" in captured.err and "2/2" in captured.err  # the progress bar
    assert (out / "bills" / "2026-04" / "A2.pdf").read_bytes().startswith(b"%PDF")
    (pdf,) = (out / "invoices" / "2026-04").glob("A2-*.pdf")  # named by the invoice number
    number = pdf.stem.removeprefix("A2-")
    assert len(number) == 20 and number.isdigit()
    assert pdf.read_bytes().startswith(b"%PDF")
    xml = (out / "invoices" / "2026-04" / f"A2-{number}.xml").read_bytes()
    assert b"<AmountIncludingTax>8.07<" in xml and number.encode() in xml
    assert not list((out / "invoices" / "2026-04").glob("A4*"))  # no charge, no invoice


def test_forecast_for_the_current_month(replayed: tuple[str, Path], tmp_path: Path) -> None:
    dsn, _ = replayed
    settings = load_settings(clickhouse_dsn=dsn, env={})
    result = run_monthly(
        settings,
        date(2026, 3, 1),
        tmp_path,
        account="A1",
        today=date(2026, 3, 12),
        documents=False,
    )
    (row,) = result.analysis
    # Days so far 10 + 20 + 0 kWh: mean 10.000 over the 3 days; Mar 13 … 31 are 19 days left:
    # 30 + 190 = 220 kWh; 190 × 0.538 (tier 1, flat) = 102.22; 16.14 + 102.22 = 118.36.
    assert (row["forecast_kwh"], row["forecast_charge"]) == (D("220.000"), D("118.36"))


def test_bills_chain_over_a_conformance_set(tmp_path: Path) -> None:
    """Each month's closing balance and points are the next month's opening, and the last
    month ends where the ledger does (sample2 runs from December into January)."""
    import shutil

    from tests.paths import CONFORMANCE

    work = tmp_path / "sample2"
    shutil.copytree(CONFORMANCE / "sample2", work)
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    subprocess.run([*WATTPAY, "replay", str(work), "--clickhouse", dsn, "--quiet"], check=True)
    with ClickHouseStore(dsn) as store:
        _, months = store.query(
            "SELECT DISTINCT toStartOfMonth(day) FROM daily_usage FINAL ORDER BY 1"
        )
        _, last = store.query(
            "SELECT account_id, argMax(balance_after, seq) FROM ledger FINAL GROUP BY account_id"
        )
        _, points = store.query(
            "SELECT account_id, argMax(balance_after, seq) FROM points_ledger FINAL "
            "GROUP BY account_id"
        )
        _, charged = store.query("SELECT sum(charge) FROM daily_usage FINAL")
    assert len(months) >= 2
    chain: dict[str, dict] = {}
    total = D("0.00")
    for (month,) in months:
        bills = _bills(dsn, tmp_path / "jobs", f"{month:%Y-%m}")
        for aid, bill in bills.items():
            if aid in chain:
                assert bill["opening_balance"] == chain[aid]["closing_balance"], (aid, month)
                assert bill["points_opening"] == chain[aid]["points_closing"], (aid, month)
            chain[aid] = bill
            total += bill["charge"]
    assert {aid: b["closing_balance"] for aid, b in chain.items()} == dict(last)
    held = dict(points)
    assert {aid: b["points_closing"] for aid, b in chain.items() if aid in held} == held
    assert total == charged[0][0]


def test_an_invoice_that_cannot_be_written_fails_the_run(
    replayed: tuple[str, Path], tmp_path: Path
) -> None:
    """The invoices' files are written beside the run, and the run waits for them."""
    dsn, _ = replayed
    blocked = tmp_path / "invoices" / "2026-03"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the month's folder goes", encoding="utf-8")
    with pytest.raises(OSError):
        _bills(dsn, tmp_path, "2026-03")
    written = _bills(dsn, tmp_path / "again", "2026-03")  # the same run, somewhere writable
    xml = sorted((tmp_path / "again" / "invoices" / "2026-03").glob("*.xml"))
    assert [p.name.split("-")[0] for p in xml] == ["A1"] and "A1" in written
