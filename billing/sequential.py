"""A single-threaded billing run over envelopes in processing order (reference and tests)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from billing.directory import MeterDirectory
from billing.engine import apply, finish, route
from billing.messages import Envelope
from billing.outputs import Output
from billing.rejections import Ignored, Rejected
from billing.rules import BillingRules
from billing.state import AccountState


def run_sequential(
    envelopes: Iterable[Envelope], rules: BillingRules, *, close_at_end: bool = True
) -> Iterator[Output]:
    """Route and apply every envelope in order, then (replay) close each account's open day."""
    directory = MeterDirectory()
    states: dict[str, AccountState] = {}
    for envelope in envelopes:
        routed = route(envelope, directory, rules)
        if isinstance(routed, Rejected | Ignored):
            yield from routed
            continue
        account_id, item = routed
        outcome = apply(states.get(account_id), item, rules)
        if outcome.state is not None:
            states[account_id] = outcome.state
        yield from outcome.outputs
    if close_at_end:
        for account_id in sorted(states):
            yield from finish(states[account_id], rules)
