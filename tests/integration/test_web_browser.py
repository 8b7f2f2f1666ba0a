"""The pages of a running ``wattpay up --simulate`` as a person sees them, in real Chromium.

The operations page refreshes by itself and its numbers move with the simulated day; the
household page shows the balance ``accounts FINAL`` holds and a chart with the last 30 days;
screenshots are kept as test artifacts (their directory is printed).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from billing.clock import LOCAL_ZONE
from tests.browser import Browser
from tests.live_harness import WATTPAY, Instance, wait_until
from tests.tools import require_tool
from tests.web_harness import get

pytestmark = pytest.mark.live
METERS = 4
HOUSEHOLD = "H0004"  # the comfortable household: never cut, days close every simulated day


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    require_tool("chromium")
    instance = Instance(tmp_path_factory.mktemp("web-up"))
    instance.start("--simulate", str(METERS), "--speed", "1440")
    instance.web = f"http://127.0.0.1:{instance.ports['web']}"
    wait_until(lambda: _answers(instance.web), 60, "the web app of wattpay up")
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    chromium = Browser(tmp_path_factory.mktemp("chromium"))
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    """A directory the screenshots outlive the test run in (pytest prunes its own)."""
    directory = Path(tempfile.mkdtemp(prefix="wattpay-web-screenshots-"))
    print(f"\nscreenshots of the web pages: {directory}")
    return directory


def _answers(url: str) -> bool:
    try:
        return get(url + "/health").status == 200
    except OSError:
        return False


def sql(instance: Instance, query: str) -> list[dict]:
    return instance.sql(query)


def test_chromium_dumps_the_operations_page(running: Instance, tmp_path: Path) -> None:
    """The plain ``--dump-dom`` view: the panels are there before any script runs."""
    chromium = require_tool("chromium")
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            running.web + "/?lang=en",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for panel in ('id="fleet-kw"', 'id="kwh-today"', 'id="statuses"', 'id="hourly"'):
        assert panel in dom
    assert 'id="pending-cuts"' in dom and 'id="commands"' in dom and 'id="rejected"' in dom


def test_operations_page_refreshes_and_its_numbers_move(
    running: Instance, browser: Browser, shots: Path
) -> None:
    wait_until(
        lambda: sql(running, "SELECT count() AS n FROM intervals")[0]["n"] > 0,
        120,
        "rated consumption",
    )
    browser.open(running.web + "/?lang=en")
    # The first paint may come from figures computed before the first interval was loaded
    # (they are cached for a moment); the first refresh reads the data.
    browser.wait_for("Number(document.querySelector('#panels').dataset.refreshes) >= 1", 60)
    first = browser.evaluate(
        "({now: document.querySelector('#event-now').getAttribute('datetime'),"
        " kwh: document.querySelector('#kwh-today').dataset.value})"
    )
    # The page fetches its panels again every few seconds; the simulated day moves on.
    now = "document.querySelector('#event-now').getAttribute('datetime')"
    moved = f"{now} !== {json.dumps(first['now'])}"
    browser.wait_for(
        f"Number(document.querySelector('#panels').dataset.refreshes) >= 3 && {moved}", 90
    )
    later = browser.evaluate(
        "({now: document.querySelector('#event-now').getAttribute('datetime'),"
        " accounts: document.querySelector('#accounts-total').textContent.trim(),"
        " statuses: [...document.querySelectorAll('#statuses [data-status]')]"
        "   .map(r => [r.dataset.status, Number(r.dataset.count)]),"
        " lines: document.querySelectorAll('#hourly polyline').length,"
        " messages: Number(document.querySelector('#messages').dataset.in)})"
    )
    assert datetime.fromisoformat(later["now"]) > datetime.fromisoformat(first["now"])
    assert later["accounts"] == str(METERS)
    assert sum(n for _, n in later["statuses"]) == METERS
    assert later["lines"] == 2  # today and yesterday
    assert later["messages"] > 0  # from the billing process's metrics
    browser.screenshot(shots / "operations.png")


def test_household_page_shows_accounts_final(
    running: Instance, browser: Browser, shots: Path
) -> None:
    wait_until(
        lambda: (
            sql(
                running,
                f"SELECT count() AS n FROM daily_usage FINAL WHERE account_id = '{HOUSEHOLD}'",
            )[0]["n"]
            >= 2
        ),
        240,
        "two closed days",
    )
    # The balance moves with every reading and the page follows it: compare the refreshed
    # page with accounts FINAL at the same account version (its updated_at), and look again
    # after the next refresh when a reading came in between.
    browser.open(f"{running.web}/accounts/{HOUSEHOLD}?lang=en")
    refreshes = "Number(document.querySelector('#hero').dataset.refreshes)"
    for _ in range(40):
        seen = browser.wait_for(f"{refreshes} >= 1 && {refreshes}", 60)
        shown = browser.evaluate(
            "({available: document.querySelector('#available').dataset.value,"
            " balance: document.querySelector('#balance').dataset.value,"
            " status: document.querySelector('#status').dataset.status,"
            " asOf: document.querySelector('#as-of').getAttribute('datetime'),"
            " price: {...document.querySelector('#price-now').dataset},"
            " plan: document.querySelector('#plan').textContent.trim(),"
            " days: document.querySelector('#days-left').textContent.trim()})"
        )
        (row,) = sql(
            running,
            "SELECT available, balance, status, updated_at, plan, ytd_kwh FROM accounts FINAL "
            f"WHERE account_id = '{HOUSEHOLD}'",
        )
        if datetime.fromisoformat(row["updated_at"]) == datetime.fromisoformat(shown["asOf"]):
            break
        browser.wait_for(f"{refreshes} > {seen}", 60)
    else:
        pytest.fail("the account changed between every page load and query")
    assert Decimal(shown["available"]) == Decimal(row["available"])
    assert Decimal(shown["balance"]) == Decimal(row["balance"])
    assert shown["status"] == row["status"]
    # The price of the next kWh at the account's clock, from the S4 table by hand.
    ytd, moment = Decimal(row["ytd_kwh"]), datetime.fromisoformat(row["updated_at"])
    tier = 1 if ytd < 2760 else 2 if ytd < 4800 else 3
    flat = row["plan"] == "zhejiang-tiered"
    period = (
        "flat" if flat else "peak" if 8 <= moment.astimezone(LOCAL_ZONE).hour < 22 else "valley"
    )
    prices = {
        "flat": "0.538 0.588 0.838",
        "peak": "0.568 0.618 0.868",
        "valley": "0.288 0.338 0.588",
    }
    assert shown["price"] == {
        "value": prices[period].split()[tier - 1],
        "tier": str(tier),
        "period": period,
    }
    assert shown["plan"].startswith("Zhejiang residential")
    assert shown["days"] == "—" or re.fullmatch(r"\d+ days", shown["days"]), shown["days"]
    bars = browser.evaluate(
        "[...document.querySelectorAll('#daily svg [data-label]')]"
        ".map(e => [e.dataset.label, e.dataset.value || null])"
    )
    days = [date.fromisoformat(label) for label, _ in bars]
    last = datetime.fromisoformat(shown["asOf"]).date() - timedelta(days=1)
    assert days == [last - timedelta(days=29 - i) for i in range(30)]
    closed = {
        r["day"]: Decimal(r["kwh"])
        for r in sql(
            running,
            f"SELECT day, kwh FROM daily_usage FINAL WHERE account_id = '{HOUSEHOLD}'",
        )
    }
    drawn = {label: Decimal(value) for label, value in bars if value is not None}
    assert drawn and all(closed[label] == kwh for label, kwh in drawn.items())
    browser.screenshot(shots / "household.png")
    browser.open(f"{running.web}/accounts/{HOUSEHOLD}?lang=zh-CN")
    assert browser.evaluate("document.documentElement.lang") == "zh-CN"
    assert "可用余额" in browser.evaluate("document.body.innerText")
    browser.screenshot(shots / "household-zh.png")


def test_landlord_page_loads(running: Instance, browser: Browser, shots: Path) -> None:
    tenants = "SELECT count() AS n FROM accounts FINAL WHERE landlord_id = 'L001'"
    # Run alone, this test may come before the simulated accounts are opened.
    wait_until(lambda: sql(running, tenants)[0]["n"] > 0, 120, "L001's tenants")
    browser.open(f"{running.web}/landlords/L001?lang=en")
    text = browser.evaluate("document.body.innerText")
    assert "Landlord L001" in text
    # A tenant's chart keeps its drawn proportions however wide its panel is (one tenant).
    widths = browser.evaluate(
        "[...document.querySelectorAll('.tenant svg.chart')]"
        ".map(e => e.getBoundingClientRect().width)"
    )
    assert widths and all(0 < w <= 560 for w in widths), widths
    browser.screenshot(shots / "landlord.png")


def test_relay_confirmations_are_followed_with_the_broker(
    running: Instance, browser: Browser
) -> None:
    """``wattpay up`` reads the relay results topic: no command's outcome is "unknown"."""
    for lang in ("en", "zh-CN"):
        got = get(f"{running.web}/api/lists/relay?lang={lang}").json()
        assert got["relay_results_followed"] is True
        assert {a["outcome"] for a in got["accounts"]} <= {"failed", "unconfirmed"}
        browser.open(f"{running.web}/lists/relay?lang={lang}")
        assert browser.evaluate("document.querySelector('#relay-not-followed') === null")
        assert browser.evaluate("document.querySelector('td.outcome.unknown') === null")
    assert "relay-not-followed" not in get(running.web + "/fragments/operations").text


def test_wattpay_sql_still_reads_the_running_instance(running: Instance) -> None:
    done = subprocess.run(
        [*WATTPAY, "sql", "SELECT count() AS n FROM accounts FINAL", "--format", "json"],
        cwd=running.work,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout)[0]["n"] == METERS
