"""The operations dashboard's numbers (SPEC S17.1), from ClickHouse and the running processes.

"Now" and "today" are in event time: the latest accepted reading's timestamp (a simulated
clock or a replayed month then reads like a live day); rejected inputs are counted by the
wall-clock hour in which they arrived.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billing.clock import LOCAL_ZONE
from web.reads import Reader

KW = Decimal("0.001")
# The rows of ``intervals FINAL`` that start (or end) after a moment. A repeated write of a
# row repeats its key (account, start, tier) and content (S8), so grouping by the key after
# filtering reads what FINAL reads without merging the whole table (about 3x faster on a
# replayed month).
RECENT_INTERVALS = (
    "(SELECT account_id, start AS s0, any(`end`) AS e0, any(kwh) AS k0 FROM intervals "
    "WHERE `end` > {since:DateTime64(3, 'Asia/Shanghai')} GROUP BY account_id, start, tier)"
)
RECENT_CUTS = 12
NO_DISTRICT = None  # accounts opened without a district; the pages name it in their language
STATUSES = ("active", "arrears", "disconnected", "closed")


def event_now(reader: Reader) -> datetime:
    """The latest accepted reading's time, or the wall clock before any reading."""
    row = reader.one("SELECT count() AS n, max(ts) AS ts FROM readings")
    if row is None or not row["n"]:
        return datetime.now(LOCAL_ZONE)
    return row["ts"].astimezone(LOCAL_ZONE)


def fleet_kw(reader: Reader, now: datetime) -> Decimal:
    """Sum over accounts of the mean power of their latest rated interval in the last hour."""
    rows = reader.rows(
        "SELECT account_id, argMax(k0, e0) AS kwh, argMax(dateDiff('second', s0, e0), e0) "
        f"AS seconds FROM {RECENT_INTERVALS} GROUP BY account_id",
        since=now - timedelta(hours=1),
    )
    total = sum((r["kwh"] * 3600 / r["seconds"] for r in rows if r["seconds"]), Decimal(0))
    return total.quantize(KW, ROUND_HALF_UP)


def hourly(reader: Reader, now: datetime) -> dict[str, list[Decimal | None]]:
    """Energy by local hour of the interval start, for today and yesterday (event time).

    Today's hours after the current one are None: they have not happened yet.
    """
    today = now.date()
    start = datetime.combine(today - timedelta(days=1), datetime.min.time(), LOCAL_ZONE)
    rows = reader.rows(
        "SELECT toDate(s0, 'Asia/Shanghai') AS day, toHour(s0, 'Asia/Shanghai') AS hour, "
        f"sum(k0) AS kwh FROM {RECENT_INTERVALS} WHERE s0 >= {{since:DateTime64(3, "
        "'Asia/Shanghai')} GROUP BY day, hour",
        since=start,
    )
    series: dict[str, list[Decimal | None]] = {
        "yesterday": [Decimal(0)] * 24,
        "today": [Decimal(0) if h <= now.hour else None for h in range(24)],
    }
    for r in rows:
        name = "today" if r["day"] == today else "yesterday" if r["day"] < today else None
        hour = int(r["hour"])
        if name is not None and series[name][hour] is not None:
            series[name][hour] = (series[name][hour] or Decimal(0)) + r["kwh"]
    return series


def by_district(reader: Reader, now: datetime) -> list[dict[str, Any]] | None:
    """Today's kWh by district (from the accounts' ``open`` events); None when not recorded.

    Accounts opened without a district are counted under `NO_DISTRICT` (null in the API).
    """
    if "district" in reader.columns("accounts"):
        districts = reader.rows(
            "SELECT account_id, district FROM accounts FINAL WHERE district != ''"
        )
    elif reader.has_table("account_events"):
        districts = reader.rows(
            "SELECT account_id, JSONExtractString(payload, 'district') AS district "
            "FROM account_events FINAL WHERE type = 'open' AND district != ''"
        )
    else:
        return None
    where = {r["account_id"]: r["district"] for r in districts}
    start = datetime.combine(now.date(), datetime.min.time(), LOCAL_ZONE)
    totals: dict[str | None, Decimal] = {}
    for r in reader.rows(
        f"SELECT account_id, sum(k0) AS kwh FROM {RECENT_INTERVALS} "
        "WHERE s0 >= {since:DateTime64(3, 'Asia/Shanghai')} GROUP BY account_id",
        since=start,
    ):
        district = where.get(r["account_id"], NO_DISTRICT)
        totals[district] = totals.get(district, Decimal(0)) + r["kwh"]
    return [{"district": d, "kwh": k} for d, k in sorted(totals.items(), key=lambda x: -x[1])]


def statuses(reader: Reader) -> dict[str, int]:
    """Accounts by status (every status shown, zero included)."""
    rows = reader.rows("SELECT status, count() AS n FROM accounts FINAL GROUP BY status")
    counts = {s: 0 for s in STATUSES}
    counts.update({r["status"]: int(r["n"]) for r in rows})
    return counts


def pending_cuts(reader: Reader) -> list[dict[str, Any]]:
    """Accounts whose latest cut event is a scheduled cut still open (S5)."""
    rows = reader.rows(
        "SELECT account_id, argMax(type, ts) AS last, argMax(data, ts) AS payload, "
        "max(ts) AS at FROM events FINAL "
        "WHERE type IN ('disconnect_scheduled', 'disconnected', 'reconnected', 'account_closed') "
        "GROUP BY account_id HAVING last = 'disconnect_scheduled' ORDER BY at"
    )
    out = []
    for r in rows:
        data = json.loads(r["payload"]) if r["payload"] else {}
        out.append(
            {
                "account_id": r["account_id"],
                "ts": r["at"],
                "available": data.get("available"),
                "scheduled_for": data.get("scheduled_for"),
            }
        )
    return out


def relay_failures(reader: Reader) -> dict[str, str]:
    """Command id → error of every relay the billing recorded as failed (S14.16).

    A failure is the only relay result ClickHouse holds: the billing keeps a confirmed cut in
    its account state, so a confirmation is known only from the results topic itself.
    """
    rows = reader.rows(
        "SELECT JSONExtractString(data, 'command_id') AS command_id, "
        "JSONExtractString(data, 'error') AS error FROM events FINAL "
        "WHERE type = 'meter_anomaly' AND JSONExtractString(data, 'reason') = 'relay_failed'"
    )
    return {r["command_id"]: r["error"] or "relay_failed" for r in rows}


def recent_commands(
    reader: Reader, outcomes: dict[str, dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """The latest disconnect and reconnect commands, each with its relay outcome if known.

    ``outcome`` is ``ok``, a failure's error, or None: not confirmed yet when ``outcomes``
    (the results topic read so far) is given, unknown when it is None (no broker followed).
    """
    rows = reader.rows(
        "SELECT event_id, account_id, meter_id, ts, type FROM events FINAL "
        "WHERE type IN ('disconnect', 'reconnect') ORDER BY ts DESC LIMIT {n:UInt32}",
        n=RECENT_CUTS,
    )
    failed = relay_failures(reader) if rows else {}
    for r in rows:
        result = (outcomes or {}).get(r["event_id"])
        r["outcome"] = (
            failed.get(r["event_id"])
            if result is None
            else "ok"
            if result.get("ok")
            else str(result.get("error"))
        )
    return rows


def last_hour(now: datetime) -> tuple[datetime, datetime]:
    """The "last hour" of the rejected-inputs panel: [now − 1 h, now], ends included."""
    return now - timedelta(hours=1), now


def rejected_last_hour(reader: Reader, now: datetime | None = None) -> list[dict[str, Any]]:
    """Rejected inputs by topic and reason that arrived in the last wall-clock hour.

    A row stamped after ``now`` (a replayed message's clock ahead of this one) is not in it.
    """
    since, until = last_hour(now or datetime.now(LOCAL_ZONE))
    return reader.rows(
        "SELECT topic, reason, count() AS n FROM rejected FINAL "
        "WHERE received_at BETWEEN {since:DateTime64(3, 'Asia/Shanghai')} "
        "AND {until:DateTime64(3, 'Asia/Shanghai')} "
        "GROUP BY topic, reason ORDER BY n DESC, topic, reason",
        since=since,
        until=until,
    )


def operations(
    reader: Reader, metrics: dict[str, Any], outcomes: dict[str, dict[str, Any]] | None
) -> dict[str, Any]:
    """Every panel of the operations page (``outcomes``: see `recent_commands`)."""
    now = event_now(reader)
    series = hourly(reader, now)
    return {
        "now": now,
        "fleet_kw": fleet_kw(reader, now),
        "kwh_today": sum((v for v in series["today"] if v is not None), Decimal(0)),
        "kwh_yesterday": sum((v for v in series["yesterday"] if v is not None), Decimal(0)),
        "hourly": series,
        "districts": by_district(reader, now),
        "statuses": statuses(reader),
        "pending_cuts": pending_cuts(reader),
        "commands": recent_commands(reader, outcomes),
        "relay_results_followed": outcomes is not None,
        "rejected": rejected_last_hour(reader),
        "metrics": metrics,
    }
