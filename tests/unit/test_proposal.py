"""A proposed tariff file is checked like a plan: one clear line and exit 2 when it is bad."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest

from billing.tariffs import BUILTIN_PLANS, plan_from_config, plan_toml
from jobs.proposal import MAX_BYTES, ProposalError, read_proposal, scenario_id
from wattpay.cli import main

GOOD = """\
[plans.zhejiang-tou]
tier_bounds = ["2760", "4800"]
periods = ["00:00=valley", "09:00=peak", "22:00=valley"]
[plans.zhejiang-tou.prices]
peak = ["0.600", "0.650", "0.900"]
valley = ["0.300", "0.350", "0.600"]
"""

BAD = {
    "descending bounds": (
        GOOD.replace('["2760", "4800"]', '["4800", "2760"]'),
        "tier bounds must be positive and increasing",
    ),
    "negative price": (GOOD.replace('"0.300"', '"-0.300"'), "prices must be 0 or more"),
    "five decimals": (GOOD.replace('"0.300"', '"0.30001"'), "at most 4 decimals"),
    "not a number": (GOOD.replace('"0.300"', '"cheap"'), "plan zhejiang-tou"),
    "NaN price": (GOOD.replace('"0.300"', '"NaN"'), "prices must be 0 or more"),
    "two periods at 09:00": (
        GOOD.replace('"22:00=valley"', '"09:00=valley"'),
        "periods must start at distinct times",
    ),
    "a period without prices": (
        GOOD.replace('"22:00=valley"', '"22:00=night"'),
        "prices must cover exactly the periods",
    ),
    "a missing tier price": (GOOD.replace(', "0.900"]', "]"), "period peak needs 3 prices"),
    "four tiers": (
        GOOD.replace('["2760", "4800"]', '["1", "2", "3"]')
        .replace('"0.900"]', '"0.900", "1"]')
        .replace('"0.600"]', '"0.600", "1"]'),
        "at most 3 tiers",
    ),
    "bad clock": (GOOD.replace("09:00=peak", "9h=peak"), "plan zhejiang-tou"),
    "prices not a table": (
        '[plans.x]\ntier_bounds = []\nprices = ["1"]\n',
        "plan x: AttributeError",
    ),
    "plan not a table": ("plans = 3\n", "no [plans.ID] table"),
    "plan value not a table": ("[plans]\nx = 3\n", "plans.x must be a table"),
    "no plans": ("[billing]\ntimezone = 'UTC'\n", "only [plans.ID] tables belong here"),
    "empty": ("", "no [plans.ID] table"),
    "not TOML": ("[plans.x\n", "not TOML"),
    "deep nesting": ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "not TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_gets_one_clear_reason(case: str, tmp_path: Path) -> None:
    text, reason = BAD[case]
    path = tmp_path / "proposal.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProposalError) as caught:
        read_proposal(path)
    message = str(caught.value)
    assert reason in message and "\n" not in message


def test_bytes_that_are_not_text_and_a_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "proposal.toml"
    path.write_bytes(b"\xff\xfe[plans.x]\x00")
    with pytest.raises(ProposalError, match="not UTF-8"):
        read_proposal(path)
    path.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(ProposalError, match="larger than"):
        read_proposal(path)
    with pytest.raises(ProposalError, match="cannot read"):
        read_proposal(tmp_path / "absent.toml")


def test_a_good_file_is_read_and_its_scenario_id_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "proposal.toml"
    path.write_text(GOOD, encoding="utf-8")
    plans = read_proposal(path)
    assert [p.name for p in plans["zhejiang-tou"].periods] == ["valley", "peak", "valley"]
    june = (date(2026, 6, 1), date(2026, 6, 30))
    assert scenario_id(plans, *june) == scenario_id(read_proposal(path), *june)
    assert scenario_id(plans, *june) != scenario_id(plans, date(2026, 6, 1), date(2026, 7, 31))


def test_every_built_in_plan_round_trips_through_its_table() -> None:
    for plan in BUILTIN_PLANS.values():
        table = tomllib.loads(plan_toml(plan))["plans"][plan.plan_id]
        assert plan_from_config(plan.plan_id, table) == plan


def test_cli_exit_2_and_one_line_for_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "proposal.toml"
    path.write_text(BAD["negative price"][0], encoding="utf-8")
    args = ["tariff-whatif", "--from", "2026-01", "--to", "2026-12", "--proposed", str(path)]
    assert main([*args, "--clickhouse", f"chdb://{tmp_path / 'ch'}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"wattpay tariff-whatif: {path}: zhejiang-tou:")
    assert not (tmp_path / "ch").exists()


def test_config_prints_a_custom_plan_as_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "wattpay.toml"
    config.write_text(GOOD.replace("zhejiang-tou", '"night saver"'), encoding="utf-8")
    assert main(["--config", str(config), "config", "--plan", "night saver"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith('[plans."night saver"]\n')
    config.write_text(printed, encoding="utf-8")
    assert (
        read_proposal(config)["night saver"].prices["peak"][0]
        == plan_from_config("x", tomllib.loads(GOOD)["plans"]["zhejiang-tou"]).prices["peak"][0]
    )
    assert main(["config", "--plan", "nope"]) == 2
    assert "no plan 'nope'; the plans are: zhejiang-tiered, zhejiang-tou" in capsys.readouterr().err
