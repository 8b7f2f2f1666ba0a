"""Notification texts: every type in both locales renders completely and fits its segments."""

from __future__ import annotations

import re
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from config.notify import NotifySettings
from config.settings import SettingsError, load_settings
from notify.delivery import quiet_release
from notify.segments import sms_size
from notify.texts import LOCALES, TEMPLATES, TYPES, TemplateError, locale_of, money, render

ZONE = ZoneInfo("Asia/Shanghai")
SIGNATURES = {"zh-CN": "国网示例供电", "en": "State Grid Example"}
# S14.19 and S15.2 data of every type, with long-ish values (7-character account ids).
DATA = {
    "low_balance": {"available": "12.34", "threshold": "20.00", "days_left": 3},
    "arrears": {"available": "-35.50", "overdraft_limit": "50.00"},
    "disconnect_scheduled": {
        "available": "-55.10",
        "overdraft_limit": "50.00",
        "scheduled_for": "2026-03-02T08:00:00+08:00",
    },
    "disconnected": {"available": "-55.10", "overdraft_limit": "50.00"},
    "reconnected": {"available": "44.90"},
    "topup_received": {
        "payment_id": "P123456",
        "amount": "100.00",
        "channel": "wechat",
        "rebate": "5.00",
        "points": 100,
        "balance": "144.90",
        "available": "144.90",
    },
    "points_expiring": {"points": 1234, "expires_on": "2026-12-31"},
    "account_closed": {"refund": "88.20"},
    "consumption_while_disconnected": {"meter_id": "M000123", "kwh": "1.250"},
    "meter_anomaly": {
        "meter_id": "M000123",
        "reason": "implausible_jump",
        "energy_kwh": "1234.560",
        "previous_kwh": "1200.000",
    },
    "monthly_bill": {
        "month": "2026-03",
        "kwh": "234.567",
        "charge": "123.45",
        "closing_balance": "56.78",
        "invoice_no": None,
    },
}


def notification(kind: str, locale: str, data: dict | None = None) -> dict:
    return {
        "event_id": f"{kind}:A000123:x",
        "type": kind,
        "account_id": "A000123",
        "ts": "2026-03-01T08:15:00+08:00",
        "locale": locale,
        "phone": "13800001234",
        "data": DATA[kind] if data is None else data,
    }


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", TYPES)
def test_every_type_renders_in_one_segment_with_no_placeholder_left(kind: str, locale: str) -> None:
    rendered = render(notification(kind, locale), SIGNATURES[locale], ZONE)
    assert rendered.locale == locale
    assert "${" not in rendered.text and "[[" not in rendered.text and "]]" not in rendered.text
    assert "A000123" in rendered.text
    if locale == "zh-CN":
        assert rendered.text.startswith("【国网示例供电】")
        assert rendered.size.encoding == "ucs2" and len(rendered.text) <= 70
    else:
        assert rendered.text.startswith("[State Grid Example] ")
        assert rendered.size.encoding == "gsm7" and rendered.size.units <= 160
    assert rendered.size.segments == 1
    assert rendered.subject and rendered.subject != kind


def test_every_template_file_exists_and_names_only_known_values() -> None:
    for locale in LOCALES:
        files = {p.stem for p in (TEMPLATES / locale).glob("*.txt")}
        assert files == set(TYPES)
        for kind in TYPES:
            text = (TEMPLATES / locale / f"{kind}.txt").read_text(encoding="utf-8")
            names = set(re.findall(r"\$\{(\w+)\}", text))
            known = {"signature", "account_id", "debt", "owed", *DATA[kind]}
            assert names <= known, (locale, kind, names - known)


def test_money_in_yuan_and_optional_parts() -> None:
    zh = render(notification("low_balance", "zh-CN"), "国网示例供电", ZONE).text
    assert "12.34元" in zh and "20.00元" in zh and "约可用3天" in zh
    without = {"available": "12.3", "threshold": "20"}
    zh = render(notification("low_balance", "zh-CN", without), "国网示例供电", ZONE).text
    assert "12.30元" in zh and "可用" not in zh.split("，")[-2]
    en = render(notification("low_balance", "en-US"), "State Grid Example", ZONE).text
    assert "¥12.34" in en and "about 3 days left" in en
    no_rebate = {**DATA["topup_received"], "rebate": "0.00", "points": 0}
    zh = render(notification("topup_received", "zh-CN", no_rebate), "国网示例供电", ZONE).text
    assert "赠" not in zh and "积分" not in zh
    owed = render(notification("account_closed", "zh-CN", {"owed": "3.5"}), "X", ZONE).text
    assert "尚欠电费3.50元" in owed and "退还" not in owed
    assert "欠费55.10元" in render(notification("disconnected", "zh-CN"), "X", ZONE).text
    assert money("-0.001") == "0.00"


def test_local_times_and_long_texts_are_counted_in_segments() -> None:
    text = render(notification("disconnect_scheduled", "zh-CN"), "X", ZONE).text
    assert "3月2日08:00" in text
    data = {**DATA["monthly_bill"], "invoice_no": "26031234567890123456"}
    bill = render(notification("monthly_bill", "zh-CN", data), "国网示例供电", ZONE)
    assert "26031234567890123456" in bill.text and len(bill.text) > 70
    assert bill.size.segments == -(-len(bill.text) // 67) == 2


def test_a_notification_missing_a_required_value_is_refused() -> None:
    with pytest.raises(TemplateError, match="threshold"):
        render(notification("low_balance", "zh-CN", {"available": "1.00"}), "X", ZONE)
    with pytest.raises(TemplateError, match="no template"):
        render({**notification("low_balance", "zh-CN"), "type": "lottery_win"}, "X", ZONE)


def test_sms_segments() -> None:
    assert sms_size("a" * 160) == sms_size("a" * 160).__class__("gsm7", 160, 1)
    assert sms_size("a" * 161).segments == 2 and sms_size("a" * 306).segments == 2
    assert sms_size("a" * 307).segments == 3
    assert sms_size("[" * 80).units == 160 and sms_size("[" * 81).segments == 2
    assert sms_size("电" * 70).segments == 1 and sms_size("电" * 71).segments == 2
    assert sms_size("电" * 134).segments == 2 and sms_size("电" * 135).segments == 3
    assert sms_size("¥12.34").encoding == "gsm7"


def test_locale_of() -> None:
    assert [locale_of(x) for x in ("zh-CN", "en", "en-US", "fr-FR", None, "")] == [
        "zh-CN",
        "en",
        "en",
        "zh-CN",
        "zh-CN",
        "zh-CN",
    ]


def test_quiet_hours_hold_sms_reminders_until_eight() -> None:
    settings = NotifySettings()
    late = datetime(2026, 3, 1, 22, 30, tzinfo=ZONE)
    release = quiet_release("low_balance", "sms", late, settings, ZONE)
    assert release == datetime(2026, 3, 2, 8, 0, tzinfo=ZONE)
    early = datetime(2026, 3, 2, 7, 59, tzinfo=ZONE)
    assert quiet_release("monthly_bill", "sms", early, settings, ZONE) == release
    assert quiet_release("low_balance", "sms", release, settings, ZONE) is None
    assert quiet_release("disconnected", "sms", late, settings, ZONE) is None
    assert quiet_release("low_balance", "webhook", late, settings, ZONE) is None
    utc_late = datetime(2026, 3, 1, 13, 0, tzinfo=ZoneInfo("UTC"))  # 21:00 in Shanghai
    assert quiet_release("arrears", "sms", utc_late, settings, ZONE) == release
    day = NotifySettings(quiet_from=time(12, 0), quiet_until=time(14, 0))
    assert quiet_release("arrears", "sms", late.replace(hour=13), day, ZONE) is not None
    assert quiet_release("arrears", "sms", late, day, ZONE) is None


def test_notify_settings_are_validated_and_masked(tmp_path) -> None:
    config = tmp_path / "wattpay.toml"
    config.write_text(
        '[notify]\nsignature = "国网杭州供电"\n'
        '[notify.routes]\ndefault = ["sms", "webhook"]\nmonthly_bill = ["email", "pigeon"]\n'
        'low_balanse = ["sms"]\n'
        '[notify.webhook]\nurl = "http://127.0.0.1:1/h"\nsecret = "whsec_c2hvcnQ="\n'
        '[notify.quiet_hours]\nfrom = "25:00"\n',
        encoding="utf-8",
    )
    with pytest.raises(SettingsError) as err:
        load_settings(str(config), env={})
    problems = "\n".join(err.value.problems)
    assert "unknown channels ['pigeon']" in problems
    assert "notify.routes.low_balanse: not a notification type" in problems
    assert "notify.sms.url is required" in problems
    assert "notify.email.host is required" in problems
    assert "whsec_" in problems and "quiet_hours.from" in problems
    config.write_text(
        '[notify.routes]\ndefault = ["sms"]\n[notify.sms]\nurl = "http://127.0.0.1:1/sms"\n',
        encoding="utf-8",
    )
    settings = load_settings(str(config), env={"WATTPAY_NOTIFY_SMS_TOKEN": "tok-very-secret"})
    assert settings.notify.sms.token == "tok-very-secret"
    assert settings.notify.channels_for("arrears") == ("sms",)
    assert "tok-very-secret" not in repr(settings.masked()) + repr(settings)
    assert settings.masked()["notify"]["sms"]["token"] == "***"
