"""Top-up rebates (充值立返): which campaigns a top-up earns, each once a month (SPEC S6)."""

from __future__ import annotations

from decimal import Decimal

from billing.emitter import Emitter
from billing.ledger import post_ledger
from billing.messages import TopUp
from billing.rules import BillingRules, RebateCampaign
from billing.state import AccountState


def claim_campaigns(state: AccountState, t: TopUp, rules: BillingRules) -> list[RebateCampaign]:
    """The campaigns ``t`` earns: each it matches while the account's monthly limit lasts.

    Each one earned is counted against its limit for the top-up's local calendar month
    (billing-rules #23); every matching campaign applies (S14.18).
    """
    month = t.ts.strftime("%Y-%m")
    earned = []
    for campaign in rules.campaigns:
        used = state.rebates.get((campaign.campaign_id, month), 0)
        if (
            campaign.matches(t.amount, t.channel, t.ts.date())
            and used < campaign.per_account_per_month
        ):
            state.rebates[(campaign.campaign_id, month)] = used + 1
            earned.append(campaign)
    return earned


def grant_rebates(state: AccountState, out: Emitter, t: TopUp, rules: BillingRules) -> Decimal:
    """Post a ``rebate`` credit per earned campaign, right after the top-up; return the total."""
    total = Decimal("0.00")
    aid, pid = state.account_id, t.payment_id
    for campaign in claim_campaigns(state, t, rules):
        total += campaign.rebate
        post_ledger(
            state,
            out,
            kind="rebate",
            amount=campaign.rebate,
            ts=t.ts,
            ref=pid,
            entry_id=f"rebate:{aid}:{pid}:{campaign.campaign_id}",
        )
    return total
