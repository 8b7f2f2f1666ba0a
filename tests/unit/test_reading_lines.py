"""The usual reading line parsed straight from its bytes is what the general path makes of it."""

from __future__ import annotations

from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.clock import LOCAL_ZONE
from billing.merge import EPOCH
from billing.messages import (
    READINGS,
    Envelope,
    Malformed,
    parse_message,
    reading_line,
    reading_text,
)
from billing.rules import BillingRules
from tests.hostile_strategies import hostile_lines

RULES = BillingRules()
UTC_RULES = replace(RULES, zone=ZoneInfo("UTC"))

# Each field's text: the usual one, its edges, and what must not take the short path.
METERS = st.one_of(
    st.sampled_from(
        ["M1", "M0003", "m-1.b_2:x", "!", "~" * 64, "a" * 65, " M1", "M 1", "", " ", "é"]
    ),
    st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=6),
)
STAMPS = st.sampled_from(
    [
        "2026-03-01T00:15:00+08:00",
        "2026-02-28T16:15:00Z",
        "2026-03-01T00:15:00.5+08:00",
        "2026-03-01T00:15+08:00",
        "2026-03-01T00:15:00",  # no offset
        "2026-02-30T00:15:00+08:00",  # no such day
        "1999-12-31T23:59:59+08:00",  # before the plausible range
        "2026-03-01T00:15:00+08:00Z",
        "2026-03-01T00:15:00-00:00",
    ]
)
ENERGIES = st.one_of(
    st.from_regex(r"\A[0-9]{1,13}(\.[0-9]{0,4})?\Z"),
    st.sampled_from(["0", "0.000", "999999999999.999", "1e3", "-1", " 1", "1.", ".5", "１"]),
)
OPTIONAL = st.one_of(st.none(), st.text(alphabet=st.characters(codec="ascii"), max_size=5))
SPACING = st.sampled_from([(", ", ": "), (",", ":"), (", ", ":  ")])


def _general(line: bytes) -> tuple[Envelope, object]:
    envelope = Envelope.decode(READINGS, "readings:1", line, EPOCH)
    try:
        return envelope, parse_message(envelope, RULES)
    except Malformed as err:
        return envelope, err


@st.composite
def reading_lines(draw: st.DrawFn) -> bytes:
    """A reading line of the usual shape, with any field at an edge or in another spacing."""
    comma, colon = draw(SPACING)
    fields = [("meter_id", draw(METERS)), ("ts", draw(STAMPS)), ("energy_kwh", draw(ENERGIES))]
    for name, values in (("source", OPTIONAL), ("power_w", st.one_of(st.none(), ENERGIES))):
        value = draw(values)
        if value is not None:
            fields.append((name, value))
    text = comma.join(f'"{name}"{colon}"{value}"' for name, value in fields)
    return ("{" + text + "}").encode("utf-8", "surrogatepass")


@settings(max_examples=3000, deadline=None)
@given(line=reading_lines())
def test_a_line_parsed_from_its_bytes_is_the_general_paths_reading_and_payload(
    line: bytes,
) -> None:
    parsed = reading_line(line, RULES)
    if line.isascii():  # the merge reads an ASCII line as text: the same result
        assert reading_text(line.decode("ascii"), RULES) == parsed
    envelope, message = _general(line)
    if parsed is not None:  # else the general path decides, as for any other line
        payload, reading = parsed
        assert (payload, reading) == (envelope.payload, message)
        assert list(payload) == list(envelope.payload)  # and in the same order


@settings(max_examples=200, deadline=None)
@given(line=hostile_lines())
def test_a_hostile_line_takes_the_general_path(line: bytes) -> None:
    parsed = reading_line(line, RULES)
    if line.isascii():
        assert reading_text(line.decode("ascii"), RULES) == parsed
    assert parsed is None or parsed == (_general(line)[0].payload, _general(line)[1])


@pytest.mark.parametrize(
    "line",
    [
        b'{"meter_id": "M1", "ts": "2026-03-01T00:15:00+08:00", "energy_kwh": "12.5"}',
        b'{"meter_id": "M1", "ts": "2026-03-01T00:15:00+08:00", "energy_kwh": "12.500",'
        b' "source": "modbus"}',
        b'{"meter_id": "M1", "ts": "2026-03-01T00:15:00+08:00", "energy_kwh": "12.5",'
        b' "power_w": "704"}',
        b'{"meter_id": "M1", "ts": "2026-03-01T00:15:00+08:00", "energy_kwh": "12.5",'
        b' "source": "", "power_w": "0.5"}',
    ],
)
def test_the_usual_lines_take_the_short_path(line: bytes) -> None:
    parsed = reading_line(line, RULES)
    assert parsed is not None and parsed == (_general(line)[0].payload, _general(line)[1])
    assert parsed[1].milli == 12_500 and parsed[1].ts.tzinfo is LOCAL_ZONE


def test_a_reading_is_in_the_rules_zone() -> None:
    line = b'{"meter_id": "M1", "ts": "2026-03-01T00:15:00+08:00", "energy_kwh": "1"}'
    parsed = reading_line(line, UTC_RULES)
    envelope = Envelope.decode(READINGS, "readings:1", line, EPOCH)
    assert parsed is not None and parsed[1] == parse_message(envelope, UTC_RULES)
    assert parsed[1].ts.tzinfo is UTC_RULES.zone
