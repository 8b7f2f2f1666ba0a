"""The money settings an account event may carry, checked for sense (SPEC S14.2)."""

from __future__ import annotations

from billing.messages import AccountEvent

INVALID_AMOUNT = "invalid_amount"


def settings_problem(event: AccountEvent) -> str | None:
    """Why ``open`` / ``update`` settings are an ``invalid_amount``, or None when they are fine.

    A negative ``low_balance_threshold`` or an ``auto_topup_amount`` ≤ 0 is refused; an
    ``opening_balance`` may be negative (arrears carried over), and a null auto top-up
    amount turns auto top-up off.
    """
    fields = event.fields
    threshold = fields.get("low_balance_threshold")
    if threshold is not None and threshold < 0:
        return f"low_balance_threshold must be ≥ 0, not {threshold}"
    topup = fields.get("auto_topup_amount")
    if topup is not None and topup <= 0:
        return f"auto_topup_amount must be > 0, not {topup}"
    return None
