"""``monthly_bill`` notifications (SPEC S7, S15.2): built from bill rows, sent or filed."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from billing.contacts import CONTACT_EVENTS, DEFAULT_LOCALE, contact_fields
from billing.notices import envelope
from bus.files import topic_file
from bus.topics import NOTICES


def contacts(account_events: pl.DataFrame) -> dict[str, dict[str, str]]:
    """Per account, the latest contact fields (locale, phone, e-mail) of ``open`` and ``update``."""
    found: dict[str, dict[str, str]] = {}
    rows = account_events.filter(pl.col("type").is_in(sorted(CONTACT_EVENTS))).sort("us")
    for aid, payload in rows.select("account_id", "payload").iter_rows():
        body = json.loads(payload)
        entry = found.setdefault(aid, {"locale": DEFAULT_LOCALE})
        if isinstance(body, dict):
            entry.update(contact_fields(body))
    return found


def monthly_bill(bill: dict[str, Any], ts: datetime, contact: dict[str, str]) -> dict[str, Any]:
    """The notification of one bill; its event_id makes a re-run send the same message."""
    return envelope(
        f"monthly_bill:{bill['account_id']}:{bill['month']:%Y-%m}",
        "monthly_bill",
        bill["account_id"],
        ts.isoformat(),
        locale=contact.get("locale", DEFAULT_LOCALE),
        phone=contact.get("phone"),
        data={
            "month": f"{bill['month']:%Y-%m}",
            "kwh": str(bill["kwh"]),
            "charge": str(bill["charge"]),
            "closing_balance": str(bill["closing_balance"]),
            "invoice_no": bill["invoice_no"],
        },
    )


def event_row(notice: dict[str, Any], meter_id: str, ts: datetime) -> dict[str, Any]:
    """The ``events`` row recording a notification."""
    return {
        "event_id": notice["event_id"],
        "account_id": notice["account_id"],
        "meter_id": meter_id,
        "ts": ts,
        "type": notice["type"],
        "data": json.dumps(notice["data"], ensure_ascii=False, sort_keys=True),
    }


def file_notices(out_dir: Path, prefix: str, notices: Iterable[dict[str, Any]]) -> Path:
    """Write notices to ``out_dir/out/<prefix>notifications.jsonl``, replacing same-id lines."""
    path = topic_file(out_dir / "out", NOTICES.name, prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = list(notices)
    ids = {n["event_id"] for n in fresh}
    kept = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("event_id") in ids:
                    continue
            except ValueError:
                pass
            kept.append(line)
    lines = kept + [json.dumps(n, ensure_ascii=False) for n in fresh]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
