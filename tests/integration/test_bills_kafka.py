"""``wattpay bills`` with brokers: monthly_bill notices go to the real notifications topic."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import date
from pathlib import Path

from bus.kafka import consume_json, ensure_topics, kafka_config
from config.settings import load_settings
from jobs.monthly import run_monthly
from tests.paths import CONFORMANCE
from wattpay.broker import EmbeddedBroker


def test_monthly_bill_notices_on_the_topic(tmp_path: Path) -> None:
    work = tmp_path / "sample1"
    shutil.copytree(CONFORMANCE / "sample1", work)
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    subprocess.run(
        [sys.executable, "-m", "wattpay.cli", "replay", str(work), "--clickhouse", dsn, "--quiet"],
        check=True,
    )
    with EmbeddedBroker() as broker:
        base = load_settings(env={}, clickhouse_dsn=dsn, brokers=broker.bootstrap)
        settings = replace(base, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
        topic = settings.topic("notifications")
        ensure_topics(kafka_config(settings), [topic], 2)
        out = tmp_path / "jobs"
        first = run_monthly(settings, date(2026, 7, 1), out, documents=False)
        run_monthly(settings, date(2026, 7, 1), out, documents=False)  # the same ids again
        pairs = consume_json(kafka_config(settings), topic, timeout=30)
    assert first.notices_to == topic
    assert not (out / "out").exists()
    assert len(first.notices) == 8  # every account of the set has days in July
    assert len(pairs) == 2 * len(first.notices)
    ids = {value["event_id"] for _, value in pairs}
    assert ids == {f"monthly_bill:{b['account_id']}:2026-07" for b in first.bills}
    assert all(key == value["account_id"] for key, value in pairs)
    sample = next(value for _, value in pairs if value["account_id"] == "A0001")
    assert sample["type"] == "monthly_bill" and sample["data"]["month"] == "2026-07"
