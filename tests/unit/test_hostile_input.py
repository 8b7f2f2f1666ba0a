"""No input can stop a flow: any bytes are decoded, applied or rejected, and encoded (SPEC S9).

The live parse path without a broker: message bytes → ``Envelope.decode`` → routing and the
account core → every output checked against the ClickHouse schema and through the Kafka and
file encoders. Rejected payloads must give back the original bytes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.clock import LOCAL_ZONE, TimestampError, parse_ts
from billing.decoding import decode_json
from billing.messages import Envelope, Malformed, message_ts, parse_message
from billing.numbers import DecimalFormatError, parse_decimal_text
from billing.outputs import Row, TopicMessage
from billing.rules import BillingRules
from billing.sequential import run_sequential
from bus.files import encode_message
from bus.kafka import Record
from meters.meter_bus import _command
from notify.worker import _decoded
from pipelines.kafka_sinks import KafkaFactSink, KafkaMessageSink
from store import schema
from store.clickhouse import encode_columns
from store.facts import decode_fact, encode_fact, fact_columns
from tests.hostile import corpus, corpus_cases, original_bytes
from tests.hostile_strategies import hostile_lines, near_valid_messages
from wattpay.cli import main

D = Decimal
NOW = datetime(2026, 3, 1, 4, 0, tzinfo=LOCAL_ZONE)
REPLAY = BillingRules()
LIVE = replace(REPLAY, reject_future=True)
BASE = [
    (
        "accounts",
        b'{"type": "open", "account_id": "A1", "meter_id": "M1", "plan": "zhejiang-tiered",'
        b' "ts": "2026-03-01T00:00:00+08:00", "opening_balance": "100.00"}',
    ),
    ("readings", b'{"meter_id": "M1", "ts": "2026-03-01T01:00:00+08:00", "energy_kwh": "100"}'),
    ("readings", b'{"meter_id": "M1", "ts": "2026-03-01T02:00:00+08:00", "energy_kwh": "101"}'),
]
FACTS = KafkaFactSink({}, "wattpay.")
MESSAGES = KafkaMessageSink({}, "wattpay.")
HOSTILE = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_encodable(outputs: list) -> None:
    """Every row fits its table and survives the facts round trip; every message encodes."""
    for output in outputs:
        if isinstance(output, Row):
            schema.row_values(output.table, output.values)
            key, value = encode_fact(output)
            key.encode("utf-8")
            assert decode_fact(value) == Row(output.table, dict(output.values))
            # The batch form the flow publishes gives the loader what a direct insert sends.
            [(_, key, value)] = FACTS.encode([[output]])
            key.encode("utf-8")
            direct = encode_columns(output.table, [schema.row_values(output.table, output.values)])
            assert fact_columns(value) == (output.table, direct, 1)
        else:
            assert isinstance(output, TopicMessage)
            [(topic, key, value)] = MESSAGES.encode([[output]])
            key.encode("utf-8")
            encode_message(output).encode("utf-8")
            json.loads(value)


def check(topic: str, data: bytes, rules: BillingRules) -> None:
    """``data`` is applied or rejected once, with its bytes kept, and everything encodes."""
    envelopes = [
        Envelope.decode(t, f"{t}:{n}", line, NOW) for n, (t, line) in enumerate(BASE, start=1)
    ]
    hostile = Envelope.decode(topic, "hostile:1", data, NOW)
    assert original_bytes(hostile.raw, hostile.raw_base64) == data
    message_ts(hostile)  # the sources' ordering key never raises either
    outputs = list(run_sequential([*envelopes, hostile], rules, close_at_end=True))
    assert_encodable(outputs)
    rejected = [o for o in outputs if isinstance(o, Row) and o.table == "rejected"]
    dlq = [o for o in outputs if isinstance(o, TopicMessage) and o.topic == "dlq"]
    assert len(rejected) == len(dlq) <= 1
    for row, message in zip(rejected, dlq, strict=True):
        assert row.values["rejection_id"] == "hostile:1" == message.value["rejection_id"]
        assert original_bytes(row.values["payload"], row.values["payload_base64"]) == data
        assert original_bytes(message.value["payload"], message.value["payload_base64"]) == data
    if not rejected:
        assert isinstance(hostile.payload, dict) and not hostile.problem


TOPICS = st.sampled_from(["readings", "payments", "accounts"])


@HOSTILE
@given(TOPICS, st.binary(max_size=300))
def test_any_bytes_are_applied_or_rejected(topic: str, data: bytes) -> None:
    check(topic, data, LIVE)  # a live message may hold any byte, newlines included


@HOSTILE
@given(TOPICS, hostile_lines())
def test_hostile_lines_are_rejected_with_their_bytes(topic: str, data: bytes) -> None:
    hostile = Envelope.decode(topic, "hostile:1", data, NOW)
    with pytest.raises(Malformed):
        parse_message(hostile, REPLAY)
    check(topic, data, LIVE)


@HOSTILE
@given(near_valid_messages(), st.sampled_from([REPLAY, LIVE]))
def test_edge_values_in_valid_messages_never_break_the_core(
    message: tuple[str, bytes], rules: BillingRules
) -> None:
    topic, data = message
    check(topic, data, rules)


@pytest.mark.parametrize(("topic", "number"), corpus_cases())
@pytest.mark.parametrize("rules", [REPLAY, LIVE], ids=["replay", "live"])
def test_every_corpus_line_is_rejected_by_the_core(
    topic: str, number: int, rules: BillingRules
) -> None:
    data = corpus(topic)[number - 1]
    check(topic, data, rules)
    outputs = list(run_sequential([Envelope.decode(topic, "hostile:1", data, NOW)], rules))
    assert [o.values["rejection_id"] for o in outputs if isinstance(o, Row)] == ["hostile:1"]


def test_a_refused_argument_is_not_published(capsys: pytest.CaptureFixture[str]) -> None:
    # Command-line arguments that are not UTF-8 arrive as lone surrogates.
    assert main(["topup", "A\udcff", "10.00", "--brokers", "127.0.0.1:1"]) == 2
    assert "refused, nothing published: malformed" in capsys.readouterr().err


@HOSTILE
@given(st.one_of(hostile_lines(), st.binary(max_size=200)))
def test_a_hostile_fact_is_refused_not_raised(data: bytes) -> None:
    # The loader skips (and counts) a fact that does not fit; nothing else may escape.
    with pytest.raises(ValueError, match="not a fact message"):
        decode_fact(data)
    with pytest.raises(ValueError, match="not a fact message"):
        fact_columns(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"table": "rejected", "row": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"table": "rejected", "row": {"rejection_id": "\\ud800"}}',
        b'{"table": "nope", "row": {}}',
        b'{"table": "schema_migrations", "row": {"version": 99, "description": "x", '
        b'"applied_at": "2026-01-01T00:00:00+08:00"}}',
        b'{"table": "schema_migrations", "columns": {"version": [99], "description": ["x"], '
        b'"applied_at": [0]}}',
        b'{"table": ["accounts"], "columns": {}}',
    ],
)
def test_hostile_facts_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a fact message"):
        decode_fact(data)
    with pytest.raises(ValueError, match="not a fact message"):
        fact_columns(data)


_TICK = '"received_at": [1700000000000]'
_REJECTED = (
    '{"table": "rejected", "columns": {"rejection_id": ["r"], "topic": ["t"], "key": ["k"], '
    '"payload": ["p"], "payload_base64": [0], "reason": ["x"], "detail": ["d"], %s}}'
)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_REJECTED % _TICK.replace("1700000000000", "1.5e12"), "not an int in range"),
        (_REJECTED % _TICK.replace("1700000000000", "99999999999999999"), "not an int in range"),
        (_REJECTED % _TICK.replace("1700000000000", "true"), "not an int in range"),
        (_REJECTED % _TICK.replace("[1700000000000]", "[1, 2]"), "not a list of 1 values"),
        (_REJECTED % _TICK.replace("[1700000000000]", "{}"), "not a list of 1 values"),
        (_REJECTED % ('"extra": [1], ' + _TICK), "columns"),
        (_REJECTED.replace('"topic": ["t"], ', "") % _TICK, "columns"),
        (_REJECTED.replace('["k"]', "[7]") % _TICK, "expected str"),
        (_REJECTED.replace("[0]", '["0"]') % _TICK, "expected an int"),
        (_REJECTED.replace('["r"]', "[]") % _TICK, "not a list of 0 values|without rows"),
        ('{"table": "intervals", "columns": []}', "columns is not an object"),
        (
            '{"table": "accounts", "columns": {"balance": [10000000000000000000]}}',
            "columns",
        ),
    ],
)
def test_hostile_fact_batches_are_refused(data: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"not a fact message: .*({why})"):
        fact_columns(data.encode())


def test_a_fact_batch_is_what_an_insert_sends() -> None:
    data = (_REJECTED % _TICK).encode()
    table, columns, count = fact_columns(data)
    assert (table, count) == ("rejected", 1)
    assert columns == [["r"], ["t"], ["k"], ["p"], [0], ["x"], ["d"], [1700000000000]]


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\xff",
        b'{"command_id": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"command_id": "\\ud800", "meter_id": "M1", "action": "disconnect"}',
        b"[]",
    ],
)
def test_a_hostile_meter_command_is_malformed_not_raised(value: bytes) -> None:
    assert _command(value) is None


# --- the rules, case by case ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty input"),
        ("[" * 17 + "]" * 17, "JSON nested deeper than 16 levels"),
        ('{"a": ' * 5000 + "1" + "}" * 5000, "JSON nested deeper than 16 levels"),
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"m": "\\ud800"}', "a string holds a lone surrogate (\\ud800-\\udfff)"),
        ('{"\\udfff": 1}', "a string holds a lone surrogate (\\ud800-\\udfff)"),
        ("\ufeff{}", "not JSON: Expecting value: line 1 column 1 (char 0)"),
    ],
)
def test_decode_json_refuses(text: str, problem: str) -> None:
    assert decode_json(text) == (None, problem)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 16 + "]" * 16,
        '{"s": "' + "[" * 100 + '"}',  # brackets inside strings do not nest
        '{"m": "\\ud83d\\ude00"}',  # a surrogate pair is one character
        '{"m": "\\\\ud800"}',  # an escaped backslash, then text
    ],
)
def test_decode_json_accepts(text: str) -> None:
    value, problem = decode_json(text)
    assert problem == "" and value == json.loads(text)


def test_invalid_utf8_is_kept_as_base64() -> None:
    envelope = Envelope.decode("readings", "r:1", b'{"meter_id": "M\xff"}', NOW)
    assert (envelope.raw, envelope.raw_base64) == ("eyJtZXRlcl9pZCI6ICJN/yJ9", True)
    assert envelope.problem == "not valid UTF-8 (byte 15)" and envelope.key == ""
    # A text with a lone surrogate (not encodable) is kept the same way, as its bytes.
    text = Envelope.decode("readings", "r:2", "\ud800", NOW)
    assert text.raw_base64 and original_bytes(text.raw, True) == b"\xed\xa0\x80"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("2000-01-01T00:00:00+08:00", datetime(2000, 1, 1, tzinfo=LOCAL_ZONE)),
        ("2099-12-31T15:59:59.999Z", datetime(2099, 12, 31, 23, 59, 59, 999000, LOCAL_ZONE)),
    ],
)
def test_timestamps_at_the_edges_of_the_plausible_range(value: str, parsed: datetime) -> None:
    assert parse_ts(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+08:00",
        "0001-01-01T00:00:00-23:59",
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:59:59+23:59",
        "1999-12-31T23:59:59.999+08:00",
        "2099-12-31T16:00:00Z",
        "2026-03-01T03:00:00+08:00" + " " * 30,
    ],
)
def test_timestamps_outside_the_plausible_range(value: str) -> None:
    with pytest.raises(TimestampError):
        parse_ts(value)


@pytest.mark.parametrize(
    ("text", "limit", "parsed"),
    [
        ("-0", D(10), D(0)),
        ("-0.00", D(10), D("0.00")),
        ("999999999999.999", D(10) ** 12, D("999999999999.999")),
        ("0000000000001.5", D(10), D("1.5")),
    ],
)
def test_decimal_text_in_range(text: str, limit: Decimal, parsed: Decimal) -> None:
    value = parse_decimal_text(text, limit)
    assert value == parsed and str(value) == str(parsed)


@pytest.mark.parametrize(
    "text",
    ["1000000000000", "-1000000000000", "9" * 40, "1" + "0" * 30 + ".00", "0." + "0" * 70 + "1"],
)
def test_decimal_text_out_of_range(text: str) -> None:
    with pytest.raises(DecimalFormatError):
        parse_decimal_text(text, D(10) ** 12)


def test_a_reading_dated_2099_for_an_owned_meter_closes_no_day_it_cannot_reach() -> None:
    # 2100 and later is malformed; a reading in 2099 is bounded: it closes < 27,000 days.
    envelope = Envelope.decode(
        "readings",
        "r:9",
        b'{"meter_id": "M1", "ts": "9999-12-31T00:00:00Z", "energy_kwh": "1"}',
        NOW,
    )
    with pytest.raises(Malformed, match="outside"):
        parse_message(envelope, REPLAY)


def test_future_check_survives_the_latest_plausible_timestamp() -> None:
    envelope = Envelope.decode(
        "readings",
        "r:1",
        b'{"meter_id": "M1", "ts": "2099-12-31T23:59:59+08:00", "energy_kwh": "1"}',
        datetime(2099, 12, 31, 23, 59, 59, tzinfo=LOCAL_ZONE) - timedelta(hours=1),
    )
    outputs = list(run_sequential([envelope], LIVE))
    assert [o.values["reason"] for o in outputs if isinstance(o, Row)] == ["future"]


@pytest.mark.parametrize(
    "value", [b"\xff", b"[" * 100_000 + b"]" * 100_000, b'{"a": 1, "a": 2}', b'"\\ud800"']
)
def test_a_hostile_notification_is_refused_by_the_worker_not_raised(value: bytes) -> None:
    with pytest.raises(ValueError):
        _decoded(Record(0, 0, None, value))


def _slow_decode(text: str) -> tuple[object, str]:
    """What ``decode_json`` gave before flat messages had a path of their own."""
    from billing import decoding

    try:
        value = decoding._DECODER.decode(text)
    except decoding._DuplicateKeyError as err:
        return None, str(err)
    except (ValueError, RecursionError) as err:
        return None, f"not JSON: {err}"
    if decoding._has_surrogate(value):
        return None, "a string holds a lone surrogate (\\ud800-\\udfff)"
    return value, ""


_KEYS = st.sampled_from(["meter_id", "ts", "energy_kwh", "a", "", "\u00e9", "k\\"])
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.sampled_from(["{", "[", '"'])
)


@settings(max_examples=400, deadline=None)
@given(
    pairs=st.lists(st.tuples(_KEYS, _SCALARS), max_size=6),
    spacing=st.sampled_from([(",", ":"), (", ", ": "), (" ,", " :")]),
    tail=st.sampled_from(["", " ", "x", ",", "1.5", "}", "\n", " \t"]),
    lead=st.sampled_from(["", " ", "\n ", "x", '"', "1"]),
)
def test_a_flat_message_decodes_as_the_general_path_does(
    pairs: list[tuple[str, object]], spacing: tuple[str, str], tail: str, lead: str
) -> None:
    """Duplicates, brackets in strings, floats, broken starts and ends: the same value or reason."""
    comma, colon = spacing
    body = comma.join(f"{json.dumps(k)}{colon}{json.dumps(v)}" for k, v in pairs)
    array = "[" + comma.join(json.dumps(v) for _, v in pairs) + "]"
    for text in (lead + "{" + body + "}" + tail, lead + array + tail):
        assert decode_json(text) == _slow_decode(text), text


ENERGY_TEXTS = st.one_of(
    st.from_regex(r"\A[0-9]{1,14}(\.[0-9]{0,5})?\Z"),
    st.from_regex(r"\A-?0*[0-9]{0,13}\.?[0-9]{0,4}\Z"),
    st.sampled_from(["0", "0.0", "-0", "1e3", " 1", "1 ", "١٢", "999999999999.999", "1" * 13]),
    st.text(max_size=20),
    st.integers(),
    st.none(),
)


@settings(max_examples=3000, deadline=None)
@given(text=ENERGY_TEXTS)
def test_a_register_parses_to_the_same_integer_as_its_decimal(text: object) -> None:
    """``energy_kwh`` read straight as 0.001 kWh is the checked decimal × 1000, or both refuse."""
    payload = {"meter_id": "M1", "ts": "2026-03-01T00:00:00+08:00", "energy_kwh": text}
    envelope = Envelope("readings", "p", json.dumps(payload), datetime.now(LOCAL_ZONE), payload)
    try:
        expected: int | str = int(parse_decimal_text(text, Decimal(10) ** 12) * 1000)
        if expected < 0 or parse_decimal_text(text, Decimal(10) ** 12).as_tuple().exponent < -3:
            expected = "refused"
    except DecimalFormatError:
        expected = "refused"
    try:
        got: int | str = parse_message(envelope, BillingRules()).milli  # type: ignore[union-attr]
    except Malformed:
        got = "refused"
    assert got == expected
