"""What a landlord sees (SPEC S17.3): every tenant's balance and usage, move-out settlements.

Tenants are found by ``accounts.landlord_id`` (S8) when the table has that column, else by
the ``landlord_id`` of the applied ``open`` events in ``account_events``; a database with
neither cannot tell, and the page says so instead of showing an empty list.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from web.household import chart_days, chart_window, daily, local_day
from web.reads import Reader

KWH = Decimal("0.001")
NO_LANDLORDS = (
    "this database records no landlord ids yet: it needs the accounts.landlord_id column "
    "or the account_events table (SPEC S8)"
)


def tenant_ids(reader: Reader, landlord_id: str) -> list[str] | None:
    """Accounts of the landlord, or None when the database cannot tell."""
    if "landlord_id" in reader.columns("accounts"):
        rows = reader.rows(
            "SELECT account_id FROM accounts FINAL WHERE landlord_id = {landlord_id:String} "
            "ORDER BY account_id",
            landlord_id=landlord_id,
        )
    elif reader.has_table("account_events"):
        rows = reader.rows(
            "SELECT DISTINCT account_id FROM account_events FINAL WHERE type = 'open' "
            "AND JSONExtractString(payload, 'landlord_id') = {landlord_id:String} "
            "ORDER BY account_id",
            landlord_id=landlord_id,
        )
    else:
        return None
    return [r["account_id"] for r in rows]


def energy(value: object) -> Decimal | None:
    """A register reading as kWh with 3 decimals, as everywhere else (S3); None if not one."""
    try:
        kwh = Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None
    if kwh is None or not kwh.is_finite() or kwh < 0:
        return None
    return kwh.quantize(KWH, ROUND_HALF_UP)


def settlement(reader: Reader, account_id: str) -> dict[str, Any]:
    """Move-out settlement of a closed account: final reading, last charges, points, refund."""
    closed = reader.one(
        "SELECT ts, data FROM events FINAL WHERE account_id = {account_id:String} "
        "AND type = 'account_closed' ORDER BY ts DESC LIMIT 1",
        account_id=account_id,
    )
    data = json.loads(closed["data"]) if closed else {}
    final = reader.one(
        "SELECT ts, energy_kwh, meter_id FROM readings FINAL "
        "WHERE account_id = {account_id:String} ORDER BY ts DESC LIMIT 1",
        account_id=account_id,
    )
    if reader.has_table("account_events"):
        close_event = reader.one(
            "SELECT ts, payload FROM account_events FINAL WHERE account_id = {account_id:String} "
            "AND type = 'close' ORDER BY ts DESC LIMIT 1",
            account_id=account_id,
        )
        final_kwh = json.loads(close_event["payload"]).get("final_kwh") if close_event else None
        if energy(final_kwh) is not None and close_event is not None:
            final = {"ts": close_event["ts"], "energy_kwh": final_kwh}
    if final is not None:
        final["energy_kwh"] = energy(final.get("energy_kwh"))
    charges = reader.rows(
        "SELECT ts, amount, ref FROM ledger FINAL WHERE account_id = {account_id:String} "
        "AND kind = 'charge' ORDER BY seq DESC LIMIT 3",
        account_id=account_id,
    )
    at_close = reader.rows(
        "SELECT kind, amount FROM ledger FINAL WHERE account_id = {account_id:String} "
        "AND ref = 'close' ORDER BY seq",
        account_id=account_id,
    )
    redeemed_points = reader.one(
        "SELECT sum(-points) AS points FROM points_ledger FINAL "
        "WHERE account_id = {account_id:String} AND kind = 'redemption' "
        "AND ts = (SELECT max(ts) FROM ledger FINAL WHERE account_id = {account_id:String} "
        "AND ref = 'close')",
        account_id=account_id,
    )
    by_kind = {r["kind"]: r["amount"] for r in at_close}
    now = reader.one(
        "SELECT argMax(balance_after, seq) AS balance, count() AS n FROM ledger FINAL "
        "WHERE account_id = {account_id:String}",
        account_id=account_id,
    )
    balance_now = now["balance"] if now and now["n"] else None
    return {
        "closed_at": closed["ts"] if closed else None,
        "final_reading": final,
        "last_charges": [{**c, "amount": -c["amount"]} for c in charges],
        "points_redeemed": int(redeemed_points["points"] or 0) if redeemed_points else 0,
        "points_redeemed_yuan": by_kind.get("points_redemption", Decimal("0.00")),
        "refund": Decimal(data["refund"]) if "refund" in data else None,
        "owed": Decimal(data["owed"]) if "owed" in data else None,
        # What the refund is made of (S5 close): the balance the last charges left, before
        # the points and the refund posted at the close, and the ledger balance after them.
        "balance_at_move_out": (
            None if balance_now is None else balance_now - sum(r["amount"] for r in at_close)
        ),
        "balance_now": balance_now,
    }


def landlord(reader: Reader, landlord_id: str) -> dict[str, Any]:
    """Everything on the landlord page."""
    ids = tenant_ids(reader, landlord_id)
    if ids is None:
        return {"landlord_id": landlord_id, "known": False, "reason": NO_LANDLORDS, "tenants": []}
    tenants = []
    for account_id in ids:
        row = reader.one(
            "SELECT account_id, meter_id, plan, status, balance, available, points, updated_at "
            "FROM accounts FINAL WHERE account_id = {account_id:String}",
            account_id=account_id,
        )
        if row is None:
            continue
        first, last = chart_window({**row, "today": local_day(row["updated_at"])})
        days = daily(reader, account_id, first, last)
        row["daily"] = [{"day": d["day"], "kwh": d["kwh"], "charge": d["charge"]} for d in days]
        row["chart"] = chart_days(days, last)
        row["settlement"] = settlement(reader, account_id) if row["status"] == "closed" else None
        tenants.append(row)
    return {"landlord_id": landlord_id, "known": True, "reason": None, "tenants": tenants}
