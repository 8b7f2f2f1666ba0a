"""Top-ups and points redemptions, and the one payment-id namespace (SPEC S6, S14.4)."""

from __future__ import annotations

from collections.abc import MutableMapping
from decimal import Decimal

from billing.cuts import reconnection
from billing.emitter import Emitter
from billing.follow_up import follow_up
from billing.ledger import post_ledger
from billing.messages import Redeem, TopUp
from billing.notices import notify
from billing.numbers import decimal_places, from_cost
from billing.outputs import money
from billing.points import basic_points, earn_basic, redeem
from billing.rebates import grant_rebates
from billing.rejections import Rejection
from billing.rules import BillingRules
from billing.state import CLOSED, AccountState


def valid_topup_amount(amount: Decimal, rules: BillingRules) -> bool:
    """A top-up amount is > 0, has at most 2 decimals and stays within the maximum."""
    return 0 < amount <= rules.max_topup and decimal_places(amount) <= 2


def _duplicate(payment_id: str) -> Rejection:
    return Rejection("duplicate_payment", f"payment {payment_id} was already applied")


def claim_payment_id(
    claims: MutableMapping[str, tuple[str, bool]],
    is_open: bool,
    payment: TopUp | Redeem,
    rules: BillingRules,
) -> Rejection | None:
    """Claim a payment id in the one namespace of all accounts, or refuse a repeat.

    ``claims`` holds every earlier claim of this id (the directory's, or the share of the
    ids that hash alike), ``is_open`` whether the paying account is open as of this
    payment. A top-up that passes the lifecycle and amount checks is applied for sure: its
    claim is final. A redemption may still be refused for insufficient points, so its claim
    is tentative and its own account (which knows) decides a repeat (billing-rules #21).
    """
    claim = claims.get(payment.payment_id)
    if claim is not None and (claim[1] or claim[0] != payment.account_id):
        return _duplicate(payment.payment_id)
    if is_open:
        if isinstance(payment, TopUp) and valid_topup_amount(payment.amount, rules):
            claims[payment.payment_id] = (payment.account_id, True)
        elif isinstance(payment, Redeem) and payment.points >= 1 and claim is None:
            claims[payment.payment_id] = (payment.account_id, False)
    return None


def payment_target(state: AccountState | None, payment: TopUp | Redeem) -> AccountState | Rejection:
    """The account a payment credits, or S14.4 at the account: a repeat, unknown, closed."""
    if state is not None and payment.payment_id in state.payment_ids:
        return _duplicate(payment.payment_id)
    if state is None:
        return Rejection("unknown_account", "no such account")
    if state.status == CLOSED:
        return Rejection("account_closed", "the account is closed")
    return state


def apply_topup(
    state: AccountState | None, t: TopUp, out: Emitter, rules: BillingRules
) -> AccountState | Rejection:
    """Credit a top-up, its rebates and basic points; notify; reconnect when back above 0."""
    target = payment_target(state, t)
    if isinstance(target, Rejection):
        return target
    state = target
    if not valid_topup_amount(t.amount, rules):
        return Rejection(
            "invalid_amount", f"amount must be > 0, ≤ {rules.max_topup}, at most 2 decimals"
        )
    before = state.available_units
    aid, pid = state.account_id, t.payment_id
    state.payment_ids |= {pid}
    post_ledger(
        state, out, kind="topup", amount=t.amount, ts=t.ts, ref=pid, entry_id=f"topup:{aid}:{pid}"
    )
    points = basic_points(t.amount, from_cost(before))
    earn_basic(state, out, points=points, ts=t.ts, payment_id=pid)
    rebate = grant_rebates(state, out, t, rules)
    if t.request_id is not None and state.request is not None and state.request[0] == t.request_id:
        state.request = None
    notify(
        state,
        out,
        "topup_received",
        ts=t.ts,
        cause=pid,
        data={
            "payment_id": pid,
            "amount": money(t.amount),
            "channel": t.channel,
            "rebate": money(rebate),
            "points": points,
            "balance": money(state.balance),
            "available": money(state.available),
        },
    )
    reconnection(state, out, t.ts, pid)
    follow_up(state, out, rules, before=before, ts=t.ts, cause=pid, always_row=True)
    return state


def apply_redeem(
    state: AccountState | None, r: Redeem, out: Emitter, rules: BillingRules
) -> AccountState | Rejection:
    """Redeem points for a credit (oldest lot first); reconnect when back above 0."""
    target = payment_target(state, r)
    if isinstance(target, Rejection):
        return target
    state = target
    if r.points < 1:
        return Rejection("invalid_amount", "redeem at least 1 point")
    if r.points > state.wallet.total:
        return Rejection("insufficient_points", f"{state.wallet.total} points held")
    before = state.available_units
    state.payment_ids |= {r.payment_id}
    redeem(state, out, points=r.points, ts=r.ts, ref=r.payment_id)
    reconnection(state, out, r.ts, r.payment_id)
    follow_up(state, out, rules, before=before, ts=r.ts, cause=r.payment_id, always_row=True)
    return state
