"""Posting money and points movements, each with its ledger row (SPEC S5, S6, S14.11)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from billing.emitter import Emitter
from billing.state import AccountState


def post_ledger(
    state: AccountState,
    out: Emitter,
    *,
    kind: str,
    amount: Decimal,
    ts: datetime,
    ref: str,
    entry_id: str,
) -> None:
    """Post a signed money movement and its ``ledger`` row."""
    state.balance += amount
    state.ledger_seq += 1
    out.row(
        "ledger",
        entry_id=entry_id,
        account_id=state.account_id,
        seq=state.ledger_seq,
        ts=ts,
        kind=kind,
        amount=amount,
        balance_after=state.balance,
        ref=ref,
    )


def post_points(
    state: AccountState, out: Emitter, *, kind: str, points: int, ts: datetime, entry_id: str
) -> None:
    """Record a signed points movement (the wallet is updated by the caller)."""
    state.points_seq += 1
    out.row(
        "points_ledger",
        entry_id=entry_id,
        account_id=state.account_id,
        seq=state.points_seq,
        ts=ts,
        kind=kind,
        points=points,
        balance_after=state.wallet.total,
    )
