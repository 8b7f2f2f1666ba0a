"""Loyalty points: what earns them, redeeming them for money, and their expiry (SPEC S6, S14.18)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from billing.emitter import Emitter
from billing.ledger import post_ledger, post_points
from billing.notices import notify
from billing.state import AccountState


def basic_points(amount: Decimal, available_before: Decimal) -> int:
    """基本积分: floor(amount) for a timely top-up (available ≥ 0 just before it), else 0."""
    return int(amount // 1) if available_before >= 0 else 0


def daily_points(balance: Decimal) -> int:
    """专项积分 of a closed day: one point per full 100 yuan of the balance after the charge."""
    return int(balance // 100) if balance > 0 else 0


def redemption_value(points: int) -> Decimal:
    """The money ``points`` are worth (100 points = 1.00 yuan)."""
    return Decimal(points).scaleb(-2)


def earn_basic(
    state: AccountState, out: Emitter, *, points: int, ts: datetime, payment_id: str
) -> None:
    """Credit a top-up's basic points to the lot of its year; no entry for 0 points."""
    if points:
        state.wallet.earn(ts.year, points)
        aid = state.account_id
        post_points(
            state, out, kind="basic", points=points, ts=ts, entry_id=f"basic:{aid}:{payment_id}"
        )


def redeem(state: AccountState, out: Emitter, *, points: int, ts: datetime, ref: str) -> None:
    """Spend ``points`` oldest lot first and credit their value (ref: payment id or ``close``)."""
    entry_id = f"redeem:{state.account_id}:{ref}"
    state.wallet.spend(points)
    post_points(state, out, kind="redemption", points=-points, ts=ts, entry_id=entry_id)
    post_ledger(
        state,
        out,
        kind="points_redemption",
        amount=redemption_value(points),
        ts=ts,
        ref=ref,
        entry_id=entry_id,
    )


def on_day_close(state: AccountState, out: Emitter, day: date, ts: datetime) -> None:
    """Day ``day`` closed at ``ts``: daily points, then Dec 31 expiry, or the Dec 1 notice."""
    aid = state.account_id
    earned = daily_points(state.balance)
    if earned > 0:
        state.wallet.earn(day.year, earned)
        post_points(
            state,
            out,
            kind="daily",
            points=earned,
            ts=ts,
            entry_id=f"daily:{aid}:{day.isoformat()}",
        )
    if day.month == 12 and day.day == 31:
        expired = state.wallet.expire_through(day.year - 1)
        if expired:
            post_points(
                state,
                out,
                kind="expiry",
                points=-expired,
                ts=ts,
                entry_id=f"expiry:{aid}:{day.year - 1}",
            )
    if day.month == 12 and day.day == 1:
        expiring = state.wallet.held_through(day.year - 1)
        if expiring:
            notify(
                state,
                out,
                "points_expiring",
                ts=ts,
                cause=f"day@{day.isoformat()}",
                data={"points": expiring, "expires_on": date(day.year, 12, 31).isoformat()},
            )
