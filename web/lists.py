"""Operator lists and search (SPEC S17.1).

Who is in arrears, cut, about to be cut, or waiting on a relay, with balance and since when,
a page at a time; and accounts found by id, meter, landlord or phone.
"""

from __future__ import annotations

import json
from typing import Any

from web.operations import pending_cuts, relay_failures
from web.reads import Reader

LISTS = ("arrears", "disconnected", "pending_cut", "relay")
PAGE_SIZE = 50
MAX_PAGE = 10_000
SEARCH_LIMIT = 50
PHONE_SUFFIX_DIGITS = 4
# The event that says since when an account has been in a status.
SINCE_EVENT = {"arrears": "arrears", "disconnected": "disconnected"}


def balances(reader: Reader, ids: list[str]) -> dict[str, dict[str, Any]]:
    """``accounts FINAL`` rows (status and money) of the given accounts."""
    if not ids:
        return {}
    rows = reader.rows(
        "SELECT account_id, meter_id, status, balance, available FROM accounts FINAL "
        "WHERE account_id IN {ids:Array(String)}",
        ids=ids,
    )
    return {r["account_id"]: r for r in rows}


def _by_status(reader: Reader, status: str, page: int) -> tuple[int, list[dict[str, Any]]]:
    total = reader.one(
        "SELECT count() AS n FROM accounts FINAL WHERE status = {status:String}", status=status
    )
    rows = reader.rows(
        "SELECT account_id, meter_id, status, balance, available FROM accounts FINAL "
        "WHERE status = {status:String} ORDER BY account_id "
        "LIMIT {n:UInt32} OFFSET {offset:UInt64}",
        status=status,
        n=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    ids = [r["account_id"] for r in rows]
    since = {
        r["account_id"]: r["since"]
        for r in reader.rows(
            "SELECT account_id, max(ts) AS since FROM events FINAL "
            "WHERE type = {type:String} AND account_id IN {ids:Array(String)} "
            "GROUP BY account_id",
            type=SINCE_EVENT[status],
            ids=ids,
        )
    }
    for r in rows:
        r["since"] = since.get(r["account_id"])
    return int(total["n"] if total else 0), rows


def _pending(reader: Reader, page: int) -> tuple[int, list[dict[str, Any]]]:
    cuts = pending_cuts(reader)
    chosen = cuts[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    found = balances(reader, [c["account_id"] for c in chosen])
    rows = []
    for cut in chosen:
        row = found.get(cut["account_id"], {"account_id": cut["account_id"]})
        rows.append({**row, "since": cut["ts"], "scheduled_for": cut["scheduled_for"]})
    return len(cuts), rows


def _relay(
    reader: Reader, page: int, outcomes: dict[str, dict[str, Any]] | None
) -> tuple[int, list[dict[str, Any]]]:
    """Each account's latest cut or reconnect command whose relay failed or is not confirmed.

    Without the results topic (``outcomes`` None) a confirmation cannot be known: ClickHouse
    holds only failures, so every other command's outcome is ``unknown``, not ``unconfirmed``.
    """
    latest = reader.rows(
        "SELECT account_id, argMax(event_id, ts) AS command_id, argMax(type, ts) AS command, "
        "max(ts) AS since FROM events FINAL WHERE type IN ('disconnect', 'reconnect') "
        "GROUP BY account_id ORDER BY since DESC, account_id"
    )
    failed = relay_failures(reader)
    waiting = []
    for r in latest:
        known = (outcomes or {}).get(r["command_id"])
        if known is not None and known.get("ok"):
            continue
        error = failed.get(r["command_id"]) or (str(known.get("error")) if known else None)
        outcome = "failed" if error else "unconfirmed" if outcomes is not None else "unknown"
        waiting.append({**r, "outcome": outcome, "error": error})
    chosen = waiting[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    found = balances(reader, [c["account_id"] for c in chosen])
    return len(waiting), [{**found.get(c["account_id"], {}), **c} for c in chosen]


def account_list(
    reader: Reader, name: str, page: int, outcomes: dict[str, dict[str, Any]] | None
) -> dict[str, Any]:
    """One page of a list of `LISTS`, oldest id first (newest event first for commands).

    ``outcomes`` are the relay results read so far, None when no broker is followed.
    """
    if name in SINCE_EVENT:
        total, rows = _by_status(reader, name, page)
    elif name == "pending_cut":
        total, rows = _pending(reader, page)
    else:
        total, rows = _relay(reader, page, outcomes)
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    return {
        "list": name,
        "page": page,
        "pages": pages,
        "page_size": PAGE_SIZE,
        "total": total,
        "accounts": rows,
        "relay_results_followed": outcomes is not None,
    }


def search(reader: Reader, query: str) -> dict[str, Any]:
    """Accounts found by ``query``, and the landlords it names.

    An account is found when its id, meter or landlord starts with ``query`` (any case), or
    its phone ends with it (`PHONE_SUFFIX_DIGITS` digits or more).
    """
    text = query.strip().lower()
    columns = reader.columns("accounts")
    events = reader.has_table("account_events")
    ids: set[str] = set()
    landlords: set[str] = set()
    for r in reader.rows(
        "SELECT account_id FROM accounts FINAL WHERE startsWith(lower(account_id), {q:String}) "
        "OR startsWith(lower(meter_id), {q:String}) LIMIT {n:UInt32}",
        q=text,
        n=SEARCH_LIMIT,
    ):
        ids.add(r["account_id"])
    if "landlord_id" in columns:
        for r in reader.rows(
            "SELECT account_id, landlord_id FROM accounts FINAL "
            "WHERE startsWith(lower(landlord_id), {q:String}) LIMIT {n:UInt32}",
            q=text,
            n=SEARCH_LIMIT,
        ):
            ids.add(r["account_id"])
            landlords.add(r["landlord_id"])
    if events:
        for r in reader.rows(
            "SELECT account_id, type, payload FROM account_events FINAL "
            "WHERE type IN ('open', 'update') "
            "AND positionCaseInsensitive(payload, {q:String}) > 0 LIMIT {n:UInt32}",
            q=text,
            n=SEARCH_LIMIT * 10,
        ):
            try:
                payload = json.loads(r["payload"])
            except ValueError:
                continue
            if not isinstance(payload, dict):
                continue
            phone = str(payload.get("phone") or "")
            landlord = str(payload.get("landlord_id") or "")
            by_phone = len(text) >= PHONE_SUFFIX_DIGITS and text.isdigit() and phone.endswith(text)
            by_landlord = "landlord_id" not in columns and landlord.lower().startswith(text)
            if by_phone or by_landlord:
                ids.add(r["account_id"])
            if by_landlord:
                landlords.add(landlord)
    chosen = sorted(ids)[:SEARCH_LIMIT]
    found = balances(reader, chosen)
    return {
        "query": query,
        "accounts": [found[a] for a in chosen if a in found],
        "landlords": sorted(landlords)[:SEARCH_LIMIT],
    }
