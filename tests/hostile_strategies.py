"""Hypothesis strategies for hostile input: bytes, deep JSON, huge numbers, surrogates, odd dates.

``hostile_lines`` only makes lines that must be rejected whatever topic they are fed to;
``near_valid_messages`` makes well-formed messages with one edge value, which may be applied.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from hypothesis import strategies as st

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)


def _escape(value: str) -> str:
    """A JSON string literal; lone surrogates written as the ``\\udXXX`` escapes."""
    return json.dumps(value, ensure_ascii=True)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)


huge_numbers = st.one_of(
    st.integers(min_value=-(10**60), max_value=10**60).map(str),
    st.integers(min_value=1, max_value=4500).map(lambda n: "9" * n),
    st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "-0", "0.0", "1E+2"]),
)
decimal_texts = st.one_of(
    st.builds(
        lambda sign, whole, zeros, fraction: f"{sign}{'0' * zeros}{whole}{fraction}",
        st.sampled_from(["", "-"]),
        st.integers(0, 10**40),
        st.integers(0, 3),
        st.one_of(st.just(""), st.integers(0, 10**40).map(lambda f: f".{f}")),
    ),
    st.sampled_from(
        ["-0", "0", "-0.00", "1000000000000", "999999999999.999", "99999999999999999.00"]
    ),
)
BAD_DATES = (
    "0001-01-01T00:00:00+08:00",
    "9999-12-31T23:59:59-23:59",
    "1999-12-31T23:59:59.999999+08:00",
    "2100-01-01T00:00:00+08:00",
    "2099-12-31T16:00:00Z",
    "2026-03-01T03:00:00",
    "2026-03-01T03:00:00+24:00",
    "2026-02-30T03:00:00+08:00",
    "2026-03-01T24:00:00+08:00",
    "2026-03-01T03:00:60+08:00",
    "2026-03-01 03:00:00+08:00",
)


def _stamps(low: date, high: date, offset: str) -> st.SearchStrategy[str]:
    return st.builds(lambda d, t: f"{d}T{t}{offset}", st.dates(low, high), st.times())


bad_dates = st.one_of(
    _stamps(date.min, date(1999, 12, 31), "+00:00"),
    _stamps(date(2100, 1, 1), date.max, "-00:00"),
    st.sampled_from(BAD_DATES),
)
odd_dates = st.one_of(
    bad_dates,
    _stamps(date(2000, 1, 2), date(2099, 12, 30), "+08:00"),
    st.sampled_from(["2000-01-01T00:00:00+08:00", "2099-12-31T23:59:59.999999+08:00"]),
)
strings = st.text(max_size=30)
hostile_strings = st.lists(st.one_of(st.characters(), SURROGATES), max_size=12).map("".join)


def _json_values(leaves: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """JSON texts built from ``leaves`` (already JSON literals), nested a little."""
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
            st.lists(st.tuples(strings.map(_escape), inner), max_size=4).map(
                lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
            ),
        ),
        max_leaves=12,
    )


leaf_values = st.one_of(
    huge_numbers,
    strings.map(_escape),
    decimal_texts.map(_escape),
    odd_dates.map(_escape),
    st.sampled_from(["null", "true", "false"]),
)
FIELDS = (
    "type",
    "meter_id",
    "account_id",
    "payment_id",
    "ts",
    "energy_kwh",
    "amount",
    "points",
    "plan",
    "channel",
    "opening_balance",
    "ytd_kwh",
    "final_kwh",
)
TYPES = ("topup", "redeem", "open", "close", "update", "change_plan", "replace_meter")


@st.composite
def _message_fields(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Plausible-looking fields: real names, values anything."""
    names = draw(st.lists(st.sampled_from(FIELDS), max_size=8, unique=True))
    fields = []
    for name in names:
        if name == "type":
            value = draw(st.sampled_from(TYPES).map(_escape))
        elif name in ("meter_id", "account_id"):
            value = draw(st.sampled_from(["M1", "A1", "M2", "A2"]).map(_escape))
        else:
            value = draw(_json_values(leaf_values))
        fields.append((_escape(name), value))
    return fields


def _object(fields: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in fields) + "}"


@st.composite
def _poisoned_json(draw: st.DrawFn) -> bytes:
    """A message-like object with one poison that makes it malformed on any topic."""
    fields = [f for f in draw(_message_fields()) if f[0] != '"ts"']
    poison = draw(st.sampled_from(["date", "surrogate", "nesting", "utf8", "duplicate"]))
    if poison == "date":
        fields.append(('"ts"', _escape(draw(bad_dates))))
    elif poison == "surrogate":
        text = draw(hostile_strings) + draw(SURROGATES)
        fields.insert(draw(st.integers(0, len(fields))), (_escape("note"), _escape(text)))
    elif poison == "nesting":
        depth = draw(st.integers(17, 6000))
        opener = draw(st.sampled_from(["[", '{"a": ']))
        closer = "]" if opener == "[" else "}"
        fields.append(('"deep"', opener * depth + "1" * (opener != "[") + closer * depth))
    elif poison == "duplicate":
        fields += [('"ts"', '"2026-03-01T03:00:00+08:00"'), ('"ts"', '"2026-03-01T04:00:00+08:00"')]
    text = _object(fields).encode("utf-8")
    if poison == "utf8":
        cut = draw(st.integers(0, len(text)))
        bad = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe4\xb8", b"\x80"]))
        text = text[:cut] + bad + text[cut:]
    return text


def hostile_lines() -> st.SearchStrategy[bytes]:
    """Single input lines (no b"\\n") that every topic must reject."""
    return st.one_of(
        st.binary(max_size=200).filter(lambda b: b"{" not in b),
        _poisoned_json(),
        st.sampled_from([b"", b"\r", b"   ", b"\x00", b"\xef\xbb\xbf{}", b"abc\rdef", b"[]"]),
    ).map(lambda b: b.replace(b"\n", b" "))


TS = "2026-03-01T03:00:00+08:00"
TEMPLATES: dict[str, list[dict[str, str]]] = {
    "readings": [{"meter_id": "M1", "ts": TS, "energy_kwh": "102.000"}],
    "payments": [
        {
            "type": "topup",
            "payment_id": "P2",
            "account_id": "A1",
            "amount": "20.00",
            "channel": "app",
            "ts": TS,
        },
        {"type": "redeem", "payment_id": "R1", "account_id": "A1", "points": "1", "ts": TS},
    ],
    "accounts": [
        {
            "type": "open",
            "account_id": "A2",
            "meter_id": "M2",
            "plan": "zhejiang-tou",
            "ts": TS,
            "opening_balance": "10.00",
            "ytd_kwh": "5",
        },
        {"type": "close", "account_id": "A1", "ts": TS, "final_kwh": "103"},
        {"type": "update", "account_id": "A1", "ts": TS, "low_balance_threshold": "5.00"},
        {
            "type": "replace_meter",
            "account_id": "A1",
            "old_meter_id": "M1",
            "old_final_kwh": "102",
            "new_meter_id": "M3",
            "new_initial_kwh": "0",
            "ts": TS,
        },
    ],
}
edge_values = st.one_of(
    decimal_texts.map(_escape),
    huge_numbers,
    odd_dates.map(_escape),
    hostile_strings.map(_escape),
    _json_values(leaf_values),
)


@st.composite
def near_valid_messages(draw: st.DrawFn) -> tuple[str, bytes]:
    """A (topic, line): a valid message of that topic with some fields given edge values."""
    topic = draw(st.sampled_from(sorted(TEMPLATES)))
    template = draw(st.sampled_from(TEMPLATES[topic]))
    fields = []
    for name, value in template.items():
        literal = value if name == "points" else _escape(value)
        if draw(st.integers(0, 3 if name != "type" else 12)) == 0:
            literal = draw(edge_values)
        fields.append((_escape(name), literal))
    return topic, _object(fields).encode("utf-8")
