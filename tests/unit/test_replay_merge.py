"""The replay's merge of its input files: the head with the earliest timestamp goes first (S11)."""

import json
import random
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.merge import EPOCH, ReadingLine, line_input
from billing.messages import TOPIC_ORDER, Envelope, message_ts, parse_message
from billing.rules import BillingRules
from pipelines.replay_files import (
    REPLAY_FILES,
    input_lines,
    merged_envelopes,
    merged_inputs,
)

RULES = BillingRules()
BERLIN = BillingRules(zone=ZoneInfo("Europe/Berlin"))


def _reference(directory: Path) -> list[tuple[str, object]]:
    """The S11 rule spelled out: of the files' next lines, the earliest (no ts first) goes."""
    streams = {}
    for topic, name in REPLAY_FILES.items():
        lines = list(input_lines(directory / name)) if (directory / name).exists() else []
        streams[topic] = [
            Envelope.decode(topic, f"{topic}:{n}", line, EPOCH)
            for n, line in enumerate(lines, start=1)
        ]
    order, clock = [], EPOCH
    while any(streams.values()):

        def key(topic: str) -> tuple:
            ts = message_ts(streams[topic][0])
            return (0 if ts is None else 1, ts or EPOCH, TOPIC_ORDER[topic])

        topic = min((t for t in streams if streams[t]), key=key)
        envelope = streams[topic].pop(0)
        clock = message_ts(envelope) or clock
        order.append((envelope.position, clock))
    return order


@pytest.mark.parametrize("seed", range(12))
def test_the_merge_is_the_rule_for_runs_ties_and_lines_without_a_time(
    seed: int, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    stamps = [f"2026-03-02T0{h}:{m:02d}:00+08:00" for h in range(3) for m in (0, 15, 30)]
    for topic, name in REPLAY_FILES.items():
        if topic != "readings" and rng.random() < 0.2:
            continue  # a file may be missing (the relay results are optional)
        lines = []
        at = 0
        for _ in range(rng.randrange(0, 60 if topic == "readings" else 12)):
            at = min(len(stamps) - 1, max(0, at + rng.choice((-1, 0, 0, 1, 1))))
            kind = rng.random()
            if kind < 0.08:
                lines.append("not json")
            elif kind < 0.12:
                lines.append(json.dumps({"meter_id": "M1"}))  # no ts at all
            else:
                lines.append(json.dumps({"meter_id": "M1", "ts": stamps[at], "n": len(lines)}))
        (tmp_path / name).write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    merged = [(e.position, e.received_at) for e in merged_envelopes(tmp_path)]
    assert merged == _reference(tmp_path)
    assert len(merged) == sum(len(list(input_lines(p))) for p in tmp_path.iterdir())


# Equal instants written with other offsets tie by instant, then by topic order.
STAMPS = [
    "2026-03-01T00:00:00+08:00",
    "2026-02-28T16:00:00Z",
    "2026-03-01T00:15:00+08:00",
    "2026-03-01T00:30:00+08:00",
]
LINES = st.one_of(
    st.sampled_from(STAMPS).map(lambda ts: json.dumps({"ts": ts, "meter_id": "M1"}).encode()),
    st.sampled_from(STAMPS).map(  # the usual reading line, parsed straight from its bytes
        lambda ts: json.dumps({"meter_id": "M1", "ts": ts, "energy_kwh": "1.5"}).encode()
    ),
    st.just(b'{"meter_id": "M1"}'),
    st.just(b'{"ts": "yesterday"}'),
    st.binary(max_size=12).filter(lambda line: b"\n" not in line),
)


@settings(max_examples=300, deadline=None)
@given(files=st.lists(st.lists(LINES, max_size=8), min_size=4, max_size=4))
def test_the_merge_is_the_rule_for_equal_instants_and_any_bytes(files: list[list[bytes]]) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        for lines, file in zip(files, REPLAY_FILES.values(), strict=True):
            if lines:
                (directory / file).write_bytes(b"\n".join(lines) + b"\n")
        merged = [(e.position, e.received_at) for e in merged_envelopes(directory)]
        assert merged == _reference(directory)
        # The same with the usual reading lines parsed straight from their bytes.
        general = list(merged_envelopes(directory))
        for (envelope, reading), expected in zip(
            merged_inputs(directory, RULES), general, strict=True
        ):
            assert envelope == expected
            assert reading is None or reading == parse_message(expected, RULES)
        # And light (a process billing some accounts): a usual reading line of text is made
        # only when asked, and is then what the merge would have made, in any zone.
        for rules in (RULES, BERLIN):
            for item, expected in zip(
                merged_inputs(directory, rules, light=True), general, strict=True
            ):
                if isinstance(item, ReadingLine):
                    assert item.meter_id == expected.payload["meter_id"]
                    assert item.ts == message_ts(expected)
                    item = line_input(item, rules)
                envelope, reading = item
                assert envelope == expected
                assert reading is None or reading == parse_message(expected, rules)
