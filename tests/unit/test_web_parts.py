"""The web app's pure parts: charts, points lots, access rules, locales, metrics parsing."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from importlib.resources import files

import pytest

from billing.clock import LOCAL_ZONE
from web.access import _host_name, allowed_host_names, is_loopback
from web.app import WebOptions, duration
from web.charts import bar_chart, line_chart, nice_max
from web.documents import document_path
from web.household import chart_days, tier_position
from web.i18n import Translator, pick_locale
from web.landlord import energy
from web.operations import last_hour
from web.points import point_lots
from web.reads import valid_id
from web.sources import CommandOutcomes, parse_metrics


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LOCAL_ZONE)


@pytest.mark.parametrize(
    ("top", "expected"),
    [("0", "1"), ("0.7", "1"), ("1", "1"), ("1.2", "2"), ("4.9", "5"), ("17", "20"), ("51", "100")],
)
def test_axis_maximum_is_round(top: str, expected: str) -> None:
    assert nice_max(Decimal(top)) == Decimal(expected)


def test_bar_chart_escapes_text_and_keeps_empty_days() -> None:
    svg = bar_chart(
        ["<script>", "b"], [Decimal("2.5"), None], unit="kWh", label='x"y', ticks=["1", "2"]
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'data-value="2.5"' in svg
    assert '<g class="empty" data-label="b">' in svg
    assert 'aria-label="x&#34;y"' in svg


def test_line_chart_stops_where_the_hours_have_not_come() -> None:
    svg = line_chart(
        {"today": [Decimal(1), Decimal(2), None, None]},
        unit="kWh",
        label="t",
        names={"today": "Today"},
    )
    (points,) = [p for p in svg.split('points="')[1:]]
    assert len(points.split('"')[0].split()) == 2


def test_points_lots_spend_oldest_first_and_expire_by_year() -> None:
    entries = [
        {"ts": at("2025-03-01T10:00"), "kind": "basic", "points": 100},
        {"ts": at("2026-01-01T00:00"), "kind": "daily", "points": 3},  # for Dec 31, 2025
        {"ts": at("2026-02-01T10:00"), "kind": "basic", "points": 50},
        {"ts": at("2026-03-01T10:00"), "kind": "redemption", "points": -60},
    ]
    assert point_lots(entries) == [
        {"year": 2025, "points": 43, "expires_on": date(2026, 12, 31)},
        {"year": 2026, "points": 50, "expires_on": date(2027, 12, 31)},
    ]
    # Closing Dec 31, 2026 (posted 2027-01-01 00:00) expires what 2025 earned.
    expired = [*entries, {"ts": at("2027-01-01T00:00"), "kind": "expiry", "points": -43}]
    assert point_lots(expired) == [{"year": 2026, "points": 50, "expires_on": date(2027, 12, 31)}]


def test_tier_position_counts_tiers_from_one() -> None:
    first = tier_position("zhejiang-tiered", Decimal("208.450"))
    assert first["tier"] == 1 and first["kwh_to_next_tier"] == Decimal("2551.550")
    second = tier_position("zhejiang-tou", Decimal("2760"))
    assert second["tier"] == 2 and second["kwh_to_next_tier"] == Decimal(2040)
    top = tier_position("zhejiang-tiered", Decimal("5000"))
    assert top["tier"] == 3 and top["kwh_to_next_tier"] is None
    assert tier_position("no-such-plan", Decimal(1))["tier"] is None


def test_chart_has_every_day_of_the_window() -> None:
    rows = [{"day": date(2026, 4, 25), "kwh": Decimal("7.240")}]
    days = chart_days(rows, date(2026, 4, 25))
    assert len(days) == 30 and days[0]["day"] == date(2026, 3, 27)
    assert days[-1] == {"day": date(2026, 4, 25), "tick": "04-25", "kwh": Decimal("7.240")}
    assert all(d["kwh"] is None for d in days[:-1])


def test_loopback_and_host_names() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert not is_loopback("example.org")
    assert "localhost" in allowed_host_names("127.0.0.1")
    assert allowed_host_names("10.0.0.5", ["Billing.Example"]) == {"10.0.0.5", "billing.example"}
    assert _host_name("localhost:8080") == "localhost"
    assert _host_name("[::1]:8080") == "[::1]"
    assert WebOptions(host="127.0.0.1").token_required is False
    assert WebOptions(host="127.0.0.2", require_token=True).token_required is True
    assert WebOptions(host="0.0.0.0").token_required is True


@pytest.mark.parametrize("value", ["A0014", "H0001", "L015", "acct_1.2:3-x", "x" * 64])
def test_valid_ids(value: str) -> None:
    assert valid_id(value)


@pytest.mark.parametrize(
    "value", ["", "A' OR '1'='1", "a b", "../etc", "x" * 65, "{id:String}", "é", "-lead"]
)
def test_invalid_ids(value: str) -> None:
    assert not valid_id(value)


def test_locales_have_the_same_texts() -> None:
    en = json.loads(files("web").joinpath("locales/en.json").read_text("utf-8"))
    zh = json.loads(files("web").joinpath("locales/zh-CN.json").read_text("utf-8"))
    assert set(en) == set(zh)
    assert pick_locale("en-US", "zh-CN") == "en"
    assert pick_locale("zh", "en") == "zh-CN"
    assert pick_locale(None, "zh-CN") == "zh-CN"
    assert pick_locale("fr", "en") == "en"
    assert Translator("en")("to_next_tier", kwh=Decimal("1.5")) == "1.5 kWh until the next tier."
    assert Translator("en")("no-such-key") == "no-such-key"


def test_metrics_totals_from_an_exposition() -> None:
    text = (
        "# TYPE wattpay_messages_in counter\n"
        'wattpay_messages_in_total{topic="readings"} 10.0\n'
        'wattpay_messages_in_total{topic="payments"} 2.0\n'
        'wattpay_messages_in_created{topic="readings"} 1.7e9\n'
        "# TYPE wattpay_event_time_lag_seconds gauge\n"
        "wattpay_event_time_lag_seconds 3.5\n"
        "# TYPE wattpay_input_lag_messages gauge\n"
        'wattpay_input_lag_messages{topic="readings"} 40.0\n'
        'wattpay_input_lag_messages{topic="payments"} 2.0\n'
        "# TYPE other_metric gauge\n"
        "other_metric 1\n"
    )
    totals = parse_metrics(text)
    assert totals == {"messages_in": 12.0, "lag_seconds": 3.5, "input_lag": 42.0}


def test_durations_read_like_a_person_says_them() -> None:
    assert duration(4.25) == "4.2 s"
    assert duration(720) == "12 min"
    assert duration(3 * 3600 + 300) == "3 h 5 min"
    assert duration(28 * 86400 + 4 * 3600 + 59) == "28 d 4 h"


def test_configured_plan_names_come_before_the_locale_files() -> None:
    from web.i18n import Translator

    names = {"en": {"plan_name.custom": "Custom"}, "zh-CN": {"plan_name.zhejiang-tou": "峰谷"}}
    assert Translator("zh-CN", names).label("plan_name", "zhejiang-tou") == "峰谷"
    assert Translator("en", names).label("plan_name", "zhejiang-tou").startswith("Zhejiang")
    assert Translator("zh-CN", names).label("plan_name", "custom") == "Custom"  # the other one
    assert Translator("en").label("plan_name", "custom") == "custom"  # unnamed: its id


def test_a_configured_plan_has_its_price_now_and_tiers() -> None:
    from datetime import datetime
    from decimal import Decimal

    from billing.clock import LOCAL_ZONE
    from billing.tariffs import plan_catalog, plan_from_config
    from web.household import price_now, tier_position

    night = plan_from_config(
        "night",
        {
            "tier_bounds": ["100"],
            "periods": ["00:00=valley", "07:00=peak", "23:00=valley"],
            "prices": {"peak": ["0.6", "0.7"], "valley": ["0.2", "0.3"]},
        },
    )
    plans = plan_catalog({"night": night})
    at_six = datetime(2026, 12, 5, 6, 30, tzinfo=LOCAL_ZONE)
    assert price_now("night", Decimal("150.000"), at_six, plans) == {
        "tier": 2,
        "period": "valley",
        "price": Decimal("0.3"),
        "at": at_six,
    }
    position = tier_position("night", Decimal("40.000"), plans)
    assert (position["tier"], position["kwh_to_next_tier"]) == (1, Decimal("60.000"))
    assert price_now("night", Decimal(0), at_six) is None  # the built-in catalogue only
    assert tier_position("night", Decimal(0))["tier"] is None


def test_command_outcomes_keep_the_latest_per_command() -> None:
    outcomes = CommandOutcomes(None, "wattpay.meter-command-results")
    outcomes.add(
        [
            {"command_id": "disconnect:A1:x", "ok": False, "error": "timeout"},
            {"command_id": "disconnect:A1:x", "ok": True},
            {"no": "id"},
        ]
    )
    assert outcomes.snapshot() == {"disconnect:A1:x": {"command_id": "disconnect:A1:x", "ok": True}}
    assert outcomes.following is False  # no broker: a confirmation cannot be known
    assert CommandOutcomes({"bootstrap.servers": "127.0.0.1:9"}, "t").following is True


def test_documents_are_found_by_invoice_number_only(tmp_path) -> None:
    number = "1" * 20
    (tmp_path / "2026-04").mkdir()
    (tmp_path / "2026-04" / f"{number}.xml").write_text("<invoice/>")
    assert document_path(tmp_path, number, "xml") == (tmp_path / "2026-04" / f"{number}.xml")
    assert document_path(tmp_path, number, "pdf") is None
    assert document_path(tmp_path, "../" + number, "xml") is None
    assert document_path(tmp_path, number, "html") is None
    assert document_path(None, number, "xml") is None


def test_up_reads_its_web_options_from_the_environment(monkeypatch, tmp_path) -> None:
    from web.server import options_from_env

    monkeypatch.setenv("WATTPAY_WEB_PORT", "18080")
    monkeypatch.setenv("WATTPAY_WEB_TOKEN", "t")
    monkeypatch.setenv("WATTPAY_WEB_ALLOWED_HOSTS", "billing.example, 10.0.0.5")
    monkeypatch.setenv("WATTPAY_WEB_DOCUMENTS", str(tmp_path))
    options = options_from_env("0.0.0.0")
    assert (options.host, options.port, options.token) == ("0.0.0.0", 18080, "t")
    assert options.allowed_hosts == ("billing.example", "10.0.0.5")
    assert options.documents == tmp_path and options.token_required
    monkeypatch.delenv("WATTPAY_WEB_PORT")
    assert options_from_env("127.0.0.1").port == 8080


@pytest.mark.parametrize(
    ("value", "expected"),
    [("18717.47", "18717.470"), (18717, "18717.000"), ("0.0005", "0.001"), ("1.234", "1.234")],
)
def test_register_readings_have_three_decimals(value: object, expected: str) -> None:
    assert str(energy(value)) == expected


@pytest.mark.parametrize("value", [None, "", "abc", "NaN", "-1", "Infinity", [1], {}])
def test_a_reading_that_is_not_one_is_none(value: object) -> None:
    assert energy(value) is None


def test_the_last_hour_ends_now() -> None:
    now = at("2026-12-05T18:30")
    assert last_hour(now) == (at("2026-12-05T17:30"), now)
