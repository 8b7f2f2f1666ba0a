from decimal import Decimal
from pathlib import Path

import pytest

from billing.tariffs import FLAT
from config.settings import SettingsError, load_settings
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


def test_flat_plan_from_config(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(
        '[plans.flat2]\ntier_bounds = ["100"]\n[plans.flat2.prices]\nflat = ["0.5", "0.7"]\n'
    )
    plan = load_settings(str(config), env={}).rules.plans["flat2"]
    assert not plan.is_tou and plan.prices[FLAT] == (Decimal("0.5"), Decimal("0.7"))


def test_invoice_seller_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('[invoice]\nseller_name = "某某供电公司"\nseller_tax_id = "123"\n', "utf-8")
    settings = load_settings(str(path), env={})
    assert (settings.seller_name, settings.seller_tax_id) == ("某某供电公司", "123")
    assert load_settings(None, env={}).seller_name  # a default seller without a file
