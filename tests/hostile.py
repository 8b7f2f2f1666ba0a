"""Replaying one hostile line on top of a small valid input, and reading back what it left."""

from __future__ import annotations

import base64
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from pipelines.replay_files import INPUT_FILES
from store.clickhouse import ClickHouseStore
from tests.paths import HOSTILE
from wattpay.cli import main

BASE = HOSTILE / "base"


def corpus(topic: str) -> list[bytes]:
    """The hostile lines for one input topic, as raw bytes."""
    return (HOSTILE / f"{topic}.lines").read_bytes().split(b"\n")[:-1]


def corpus_cases() -> list[tuple[str, int]]:
    """Every (topic, line number) of the corpus."""
    return [(t, n) for t in INPUT_FILES for n in range(1, len(corpus(t)) + 1)]


def base_lines(topic: str) -> int:
    """How many lines the valid base input holds for a topic."""
    return len((BASE / INPUT_FILES[topic]).read_bytes().split(b"\n")) - 1


def input_directory(work: Path, extra: dict[str, list[bytes]]) -> Path:
    """The base input with ``extra`` lines appended to each topic's file."""
    work.mkdir(parents=True, exist_ok=True)
    for topic, name in INPUT_FILES.items():
        shutil.copy(BASE / name, work / name)
        with (work / name).open("ab") as handle:
            handle.writelines(line + b"\n" for line in extra.get(topic, []))
    return work


def original_bytes(payload: str, payload_base64: object) -> bytes:
    """The input bytes a rejected payload stands for."""
    return base64.b64decode(payload) if payload_base64 else payload.encode("utf-8")


@dataclass
class Outcome:
    """What a replay left: rejections (table and DLQ file) and the applied base input."""

    rejected: list[tuple[str, bytes, str]]
    dlq: list[tuple[str, bytes, str]]
    readings: int
    ledger_kinds: list[str]


def outcome(work: Path, dsn: str) -> Outcome:
    """Read the rejections, accepted readings and ledger back from ClickHouse and the DLQ file."""
    with ClickHouseStore(dsn) as store:
        _, rows = store.query(
            "SELECT rejection_id, payload, payload_base64, reason FROM rejected FINAL"
            " ORDER BY rejection_id"
        )
        _, readings = store.query("SELECT count() FROM readings FINAL")
        _, ledger = store.query("SELECT kind FROM ledger FINAL ORDER BY seq")
    dlq_file = work / "out" / "wattpay.dlq.jsonl"
    dlq_text = dlq_file.read_bytes().decode("utf-8") if dlq_file.exists() else ""
    dlq = [json.loads(line) for line in dlq_text.split("\n") if line]
    return Outcome(
        [(r[0], original_bytes(r[1], r[2]), r[3]) for r in rows],
        [
            (m["rejection_id"], original_bytes(m["payload"], m["payload_base64"]), m["reason"])
            for m in dlq
        ],
        readings[0][0],
        [k for (k,) in ledger],
    )


WATTPAY = [sys.executable, "-m", "wattpay.cli"]
ALL_TOPICS = ("accounts", "payments", "readings")


def replay_in_process(work: Path) -> tuple[int, str]:
    """Run ``wattpay replay`` in this process into chdb under ``work``; (exit code, DSN)."""
    dsn = f"chdb://{work / 'ch'}"
    return main(["replay", str(work), "--clickhouse", dsn, "--quiet"]), dsn


def assert_only_rejected(work: Path, dsn: str, topic: str, lines: list[bytes]) -> None:
    """Exactly ``lines`` (appended to ``topic``) are rejected, bytes intact; the base applied."""
    result = outcome(work, dsn)
    first = base_lines(topic) + 1
    expected = sorted((f"{topic}:{first + i}", line) for i, line in enumerate(lines))
    assert [(r[0], r[1]) for r in result.rejected] == expected
    assert sorted((d[0], d[1]) for d in result.dlq) == expected
    assert [r[2] for r in result.rejected] == [d[2] for d in sorted(result.dlq, key=lambda d: d[0])]
    assert result.readings == 2  # the base readings, and nothing the hostile lines added
    assert "topup" in result.ledger_kinds
    assert result.ledger_kinds.count("charge") == 1  # one closed day: 2026-03-01, at the end
