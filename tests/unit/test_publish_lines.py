"""``wattpay publish``: which lines of JSON go out, keyed how, and which are refused."""

from __future__ import annotations

import json

import pytest

from config.settings import load_settings
from wattpay.cli.publish import input_lines, with_ts

SETTINGS = load_settings(env={})
TS = "2026-12-05T08:00:00+08:00"


def test_lines_go_out_as_written_keyed_as_their_topic() -> None:
    data = (
        b'{"meter_id": "M1", "ts": "2026-12-05T07:45:00+08:00", "energy_kwh": "1.500"}\n'
        b"\n  \r\n"
        b'{"meter_id": "M2", "energy_kwh": "7"}\r\n'
    )
    good, problems = input_lines(SETTINGS, "readings", data, TS)
    assert problems == []
    assert good == [
        ("M1", b'{"meter_id": "M1", "ts": "2026-12-05T07:45:00+08:00", "energy_kwh": "1.500"}'),
        ("M2", b'{"ts": "2026-12-05T08:00:00+08:00", "meter_id": "M2", "energy_kwh": "7"}'),
    ]
    payments = json.dumps(
        {
            "type": "topup",
            "payment_id": "P1",
            "account_id": "A1",
            "amount": "50.00",
            "channel": "app",
        }
    ).encode()
    assert [k for k, _ in input_lines(SETTINGS, "payments", payments, TS)[0]] == ["A1"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (b"{}", "meter_id"),
        (b'{"meter_id": "M1", "energy_kwh": "-1"}', "energy_kwh"),
        (b'{"meter_id": "M1", "energy_kwh": "1", "ts": "yesterday"}', "ts"),
        (b'{"meter_id": "M1", "meter_id": "M2", "energy_kwh": "1"}', "duplicate"),
        (b"[" * 100_000, "nested"),
        (b'{"meter_id": "M1", "energy_kwh": 7}', "decimal string"),
    ],
)
def test_a_line_billing_would_reject_is_refused_with_its_number(line: bytes, reason: str) -> None:
    good, problems = input_lines(
        SETTINGS, "readings", b'{"meter_id": "M1", "energy_kwh": "1"}\n' + line, TS
    )
    assert len(good) == 1
    (problem,) = problems
    assert problem.startswith("line 2: ") and reason.lower() in problem.lower(), problem


def test_a_top_up_over_the_limit_is_refused() -> None:
    line = json.dumps(
        {
            "type": "topup",
            "payment_id": "P1",
            "account_id": "A1",
            "amount": "99999999.00",
            "channel": "app",
        }
    )
    good, problems = input_lines(SETTINGS, "payments", line.encode(), TS)
    assert good == [] and problems[0].startswith("line 1: invalid_amount")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"a": 1}', '{"ts": "T", "a": 1}'),
        ("  { }", '{"ts": "T"}'),
        ('{\n"a": "}"}', '{"ts": "T", "a": "}"}'),
    ],
)
def test_ts_goes_first_and_the_rest_is_kept(line: str, expected: str) -> None:
    assert with_ts(line, "T") == expected
