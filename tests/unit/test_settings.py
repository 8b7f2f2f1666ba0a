import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from billing.tariffs import BUILTIN_PLANS, FLAT
from config.settings import SettingsError, load_settings, mask_url, redact, url_secrets
from tests.paths import REPO

ROOT = REPO


def test_defaults_work_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.clickhouse_dsn == "chdb://./.wattpay/clickhouse"
    assert settings.brokers == ""
    assert settings.topic("dlq") == "wattpay.dlq"
    assert settings.rules.max_topup == Decimal("10000.00")
    assert {"zhejiang-tiered", "zhejiang-tou"} <= set(settings.rules.plans)


def test_example_config_loads_with_custom_plan_and_holidays() -> None:
    settings = load_settings(str(ROOT / "wattpay.example.toml"), env={})
    plan = settings.rules.plans["example-tou"]
    assert plan.is_tou and plan.prices["peak"][0] == Decimal("0.568")
    assert settings.plan_names["example-tou"] == {
        "zh-CN": "示例峰谷电价",
        "en": "Example time-of-use",
    }
    assert len(settings.rules.window.holidays) == 2


def test_environment_overrides_file_and_cli_overrides_environment(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text('[clickhouse]\ndsn = "chdb:///from/file"\n[billing]\nmax_topup = "500"\n')
    env = {"WATTPAY_CLICKHOUSE_DSN": "http://u:pw@127.0.0.1:8123/db", "WATTPAY_MAX_TOPUP": "800"}
    settings = load_settings(str(config), env=env)
    assert settings.clickhouse_dsn == "http://u:pw@127.0.0.1:8123/db"
    assert settings.rules.max_topup == Decimal(800)
    assert load_settings(str(config), env=env, clickhouse_dsn="chdb:///cli").clickhouse_dsn == (
        "chdb:///cli"
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[clickhouse]\ndsn = "mysql://x"\n[billing]\nmax_topup = "-1"\ntimezone = "Mars/Base"\n'
        '[plans.broken]\ntier_bounds = ["10"]\n[plans.broken.prices]\nflat = ["0.5"]\n'
    )
    with pytest.raises(SettingsError) as err:
        load_settings(str(config), env={})
    problems = "\n".join(err.value.problems)
    assert len(err.value.problems) == 4
    for word in ("clickhouse.dsn", "max_topup", "timezone", "broken"):
        assert word in problems


def test_secrets_are_masked() -> None:
    env = {
        "WATTPAY_CLICKHOUSE_DSN": "http://analyst:hunter2@127.0.0.1:8123/db",
        "WATTPAY_KAFKA_SASL_PASSWORD": "hunter2",
        "WATTPAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    }
    masked = load_settings(env=env).masked()
    assert "hunter2" not in str(masked)
    assert masked["kafka"] == {"sasl.password": "***", "security.protocol": "SASL_SSL"}
    assert masked["clickhouse_dsn"] == "http://analyst:***@127.0.0.1:8123/db"


def test_plans_have_display_names_per_locale(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(
        '[plans.flat2]\ntier_bounds = ["100"]\nname_zh = " 平价 "\nname_en = "Flat two"\n'
        '[plans.flat2.prices]\nflat = ["0.5", "0.7"]\n'
        '[plans.zhejiang-tou]\nname_en = "Peak and valley"\n',
        encoding="utf-8",
    )
    settings = load_settings(str(config), env={})
    assert settings.plan_names == {
        "flat2": {"zh-CN": "平价", "en": "Flat two"},
        "zhejiang-tou": {"en": "Peak and valley"},
    }
    assert settings.rules.plans["flat2"].prices[FLAT] == (Decimal("0.5"), Decimal("0.7"))
    # Names alone for a built-in plan leave the plan as it is built.
    assert settings.rules.plans["zhejiang-tou"] == BUILTIN_PLANS["zhejiang-tou"]
    assert load_settings(env={}).plan_names == {}


@pytest.mark.parametrize("value", ['""', '"  "', "7", '"' + "x" * 65 + '"', '"a\\u0007b"'])
def test_a_plan_name_must_be_a_short_printable_text(tmp_path: Path, value: str) -> None:
    config = tmp_path / "p.toml"
    config.write_text(f"[plans.zhejiang-tou]\nname_zh = {value}\n", encoding="utf-8")
    with pytest.raises(SettingsError) as err:
        load_settings(str(config), env={})
    assert err.value.problems == [
        f"plans.zhejiang-tou.name_zh must be a name of 1 to 64 printable characters: "
        f"{tomllib.loads(f'v = {value}')['v']!r}"
    ]
    config.write_text('[plans.nosuch]\nname_en = "A plan with no prices"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="nosuch"):  # a new plan needs its prices
        load_settings(str(config), env={})


def test_flat_plan_from_config(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(
        '[plans.flat2]\ntier_bounds = ["100"]\n[plans.flat2.prices]\nflat = ["0.5", "0.7"]\n'
    )
    plan = load_settings(str(config), env={}).rules.plans["flat2"]
    assert not plan.is_tou and plan.prices[FLAT] == (Decimal("0.5"), Decimal("0.7"))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('"fast"', "must be a number of seconds"),
        ("true", "must be a number of seconds"),
        ("-0.5", "must be zero or more seconds"),
        ('"nan"', "must be zero or more seconds"),
    ],
)
def test_batch_seconds_must_be_a_non_negative_number(
    tmp_path: Path, value: str, reason: str
) -> None:
    config = tmp_path / "w.toml"
    config.write_text(f"[clickhouse]\nbatch_seconds = {value}\n")
    with pytest.raises(SettingsError) as err:
        load_settings(str(config), env={})
    assert str(err.value).startswith(f"invalid configuration: clickhouse.batch_seconds {reason}")
    assert "\n" not in str(err.value) and reason in str(err.value)
    config.write_text("[clickhouse]\nbatch_seconds = 0\n")
    assert load_settings(str(config), env={}).batch_seconds == 0


def test_query_settings_and_their_token_are_masked(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text('[query]\ntoken = "from-file"\nmax_seconds = 3\nmax_result_rows = 50\n')
    settings = load_settings(str(config), env={"WATTPAY_QUERY_TOKEN": "from-env"})
    assert settings.query_token == "from-env"
    assert (settings.query_max_seconds, settings.query_max_rows) == (3, 50)
    assert settings.masked()["query"] == {"token": "***", "max_seconds": 3, "max_result_rows": 50}
    assert load_settings(env={}).masked()["query"]["token"] == "(none)"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("http://u:pw-1@h:8123/db", "http://u:***@h:8123/db"),
        ("https://h/db?access_token=tok-1&x=1", "https://h/db?access_token=***&x=1"),
        ("https://h/?password=pw-2&api_key=key-3&secret=sec-4&token=tok-5", None),
        ("chdb:///data/ch", "chdb:///data/ch"),
        ("http://u@h:8123/db", "http://u@h:8123/db"),
    ],
)
def test_mask_url(url: str, masked: str | None) -> None:
    shown = mask_url(url)
    if masked is not None:
        assert shown == masked
    for secret in url_secrets(url):
        assert secret not in shown.replace("***", "")


def test_redact_removes_raw_and_decoded_secrets() -> None:
    url = "http://u:p%40ss@h:1/db?access_token=tok%2B1"
    text = f"failed: {url} (p@ss, tok+1, tok%2B1)"
    assert redact(text, url) == "failed: http://u:***@h:1/db?access_token=*** (***, ***, ***)"


def test_a_bad_dsn_is_reported_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env={"WATTPAY_CLICKHOUSE_DSN": "mysql://u:pw-secret@h/db?token=t-secret"})
    assert "secret" not in str(err.value) and "clickhouse.dsn" in str(err.value)


def test_invoice_seller_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('[invoice]\nseller_name = "某某供电公司"\nseller_tax_id = "123"\n', "utf-8")
    settings = load_settings(str(path), env={})
    assert (settings.seller_name, settings.seller_tax_id) == ("某某供电公司", "123")
    assert load_settings(None, env={}).seller_name  # a default seller without a file


@pytest.mark.parametrize("rebate", ['"0.001"', '"1e-9"', '"-5.00"', "0", '"NaN"'])
def test_a_campaigns_rebate_is_money_to_the_fen(tmp_path: Path, rebate: str) -> None:
    # It is posted to the ledger, and every balance must be exact in 10^-7 yuan.
    config = tmp_path / "w.toml"
    spec = '[[campaigns]]\nid = "c"\nchannels = ["bank"]\nmin_amount = "100"\nrebate = {}\n'
    config.write_text(spec.format(rebate))
    with pytest.raises(SettingsError, match=r"campaigns\[0\]: rebate must be a positive amount"):
        load_settings(str(config), env={})
    config.write_text(spec.format('"5.50"'))
    assert load_settings(str(config), env={}).rules.campaigns[0].rebate == Decimal("5.50")
