"""A single-threaded billing run over envelopes in processing order (reference and tests)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from billing.account import AccountState
from billing.account_events import with_account_event
from billing.directory import MeterDirectory
from billing.engine import apply, finish, route
from billing.messages import Envelope
from billing.outputs import Output
from billing.rules import BillingRules


def run_sequential(
    envelopes: Iterable[Envelope], rules: BillingRules, *, close_at_end: bool = True
) -> Iterator[Output]:
    """Route and apply every envelope in order, then (replay) close each account's open day."""
    directory = MeterDirectory()
    states: dict[str, AccountState] = {}
    for envelope in envelopes:
        routed = route(envelope, directory, rules)
        if isinstance(routed, list):
            yield from routed
            continue
        account_id, item = routed
        state, outputs = apply(states.get(account_id), item, rules)
        outputs = with_account_event(state, item.envelope, item.message, outputs)
        if state is not None:
            states[account_id] = state
        yield from outputs
    if close_at_end:
        for account_id in sorted(states):
            yield from finish(states[account_id], rules)
