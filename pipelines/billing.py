"""The billing dataflow: route every input to its account, apply it, emit rows and messages.

Run it from the CLI (``wattpay replay``) or with ``python -m bytewax.run`` on a factory that
supplies the source and sinks; tests hand the same factory Bytewax's testing source and sink.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import Sink

from billing.engine import Routed, apply_all, finish
from billing.messages import Envelope
from billing.outputs import DLQ, Output, Row, TopicMessage
from billing.rules import BillingRules
from billing.state import AccountState
from config.settings import DEFAULT_TOPIC_PREFIX
from pipelines.metrics import Metrics
from pipelines.routing import (
    LIFECYCLE_KEY,
    ClaimLogic,
    LifecycleLogic,
    NumberedSource,
    OrderLogic,
    RouteLogic,
    account_key_of,
    dispatch,
    is_claim,
    is_keyed,
)

REFUSALS_KEY = "refused"  # the key of the outputs of inputs refused before their account


def apply_batch(
    states: dict[str, AccountState],
    batch: list[tuple[str, Routed]],
    rules: BillingRules,
    metrics: Metrics | None,
    scaled_rows: bool = False,
) -> list[Output]:
    """Apply a batch to the accounts of ``states`` in input order; return every output.

    ``billing.engine.apply_all`` (a loop around ``apply``, compiled with the rules);
    ``states`` is updated in place (an account whose state ends is removed). With
    ``scaled_rows``, the readings and intervals rows come as one ``ScaledRows``.
    """
    if metrics is None:
        return apply_all(states, batch, rules, None, scaled_rows)
    counts: dict[tuple[str, str | None], int] = {}
    outputs = apply_all(states, batch, rules, counts, scaled_rows)
    if batch:
        # Counted per batch: every increment takes its metric's lock.
        for (topic, reason), count in counts.items():
            if reason is None:
                metrics.of(metrics.messages_applied, topic).inc(count)
            else:
                metrics.of(metrics.messages_rejected, topic, reason).inc(count)
        metrics.count_outputs(outputs)
        metrics.of(metrics.step_items, "accounts").inc(len(batch))
        metrics.observe_event_time(batch[-1][1].message.ts, datetime.now(UTC))
    return outputs


def finish_all(
    states: Iterable[AccountState], rules: BillingRules, metrics: Metrics | None
) -> list[Output]:
    """End of the input: close the open day of every account (``billing.engine.finish``)."""
    outputs: list[Output] = []
    for state in states:
        outputs += finish(state, rules)
    if metrics is not None:
        metrics.count_outputs(outputs)
    return outputs


class _AccountStep(StatefulLogic[list[tuple[str, Routed]], list[Output], bytes]):
    """What both accounts steps hold besides their accounts; they snapshot the same pickle.

    A snapshot is ``{account_id: state}``; ``take`` keeps the states of one resumed.
    ``scaled_rows``: the readings and intervals rows leave as one ``ScaledRows`` per batch
    (for a flow that turns rows into columns where they are billed).
    """

    __slots__ = ("rules", "close_at_eof", "metrics", "scaled_rows")

    def __init__(  # noqa: PLR0913 - the step's settings
        self,
        rules: BillingRules,
        resume: bytes | None,
        close_at_eof: bool,
        metrics: Metrics | None = None,
        scaled_rows: bool = False,
    ) -> None:
        self.rules = rules
        self.close_at_eof = close_at_eof
        self.metrics = metrics
        self.scaled_rows = scaled_rows
        self.take(pickle.loads(resume) if resume else {})  # noqa: S301 - our own snapshot

    def take(self, states: dict[str, AccountState]) -> None:
        raise NotImplementedError


class AccountsLogic(_AccountStep):
    """The accounts of one key (the replay's: an order bucket), a batch per call.

    Bytewax takes the snapshot only of the keys an epoch touched, right after they changed,
    so it is not kept.
    """

    __slots__ = ("states",)

    def take(self, states: dict[str, AccountState]) -> None:
        self.states = states

    def on_item(self, batch: list[tuple[str, Routed]]) -> tuple[Iterable[list[Output]], bool]:
        outputs = apply_batch(self.states, batch, self.rules, self.metrics, self.scaled_rows)
        return ([outputs] if outputs else []), not self.states

    def on_eof(self) -> tuple[Iterable[list[Output]], bool]:
        if not self.close_at_eof or not self.states:
            return (), StatefulLogic.RETAIN
        self.close_at_eof = False
        return [finish_all(self.states.values(), self.rules, self.metrics)], StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.states, protocol=pickle.HIGHEST_PROTOCOL)


class AccountLogic(_AccountStep):
    """One account, keyed by its id (live billing: a snapshot holds that account alone).

    Bytewax keeps one of these per account, so it keeps the state itself, not a dict of
    one (200 bytes an account). Its snapshot is the same ``{account_id: state}`` pickle as
    ``AccountsLogic``'s, so either resumes the other's recovery store.
    """

    __slots__ = ("account_id", "state")

    def take(self, states: dict[str, AccountState]) -> None:
        self.account_id, self.state = next(iter(states.items()), ("", None))

    def on_item(self, batch: list[tuple[str, Routed]]) -> tuple[Iterable[list[Output]], bool]:
        self.account_id = batch[0][0]
        states = {} if self.state is None else {self.account_id: self.state}
        outputs = apply_batch(states, batch, self.rules, self.metrics, self.scaled_rows)
        self.state = states.get(self.account_id)
        return ([outputs] if outputs else []), self.state is None

    def on_eof(self) -> tuple[Iterable[list[Output]], bool]:
        if not self.close_at_eof or self.state is None:
            return (), StatefulLogic.RETAIN
        self.close_at_eof = False
        return [finish_all([self.state], self.rules, self.metrics)], StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        states = {} if self.state is None else {self.account_id: self.state}
        return pickle.dumps(states, protocol=pickle.HIGHEST_PROTOCOL)


def build_billing_flow(
    rules: BillingRules,
    *,
    source: Source[Envelope],
    rows: Sink[tuple[str, list[Row]]],
    messages: Sink[tuple[str, list[TopicMessage]]],
    close_at_eof: bool = True,
    flow_id: str = "wattpay-billing",
    metrics: Metrics | None = None,
    topic_prefix: str = DEFAULT_TOPIC_PREFIX,
    accounts_by_bucket: bool = True,
    encode_rows: Callable[[list[Row]], object] | None = None,
) -> Dataflow:
    """The billing dataflow from input envelopes to batches of rows and topic messages.

    Readings are routed by route buckets keyed by meter, account events and payments by
    the lifecycle, payment ids claimed in buckets keyed by id, and each account's input
    order restored before its state applies them (``pipelines.routing``), so any number
    of workers and processes gives the results of the sequential reference. Every step
    takes a batch per key per call; batches cross workers as lists of plain tuples
    (``pipelines.wire``). The sinks get ``(key, list)`` items: rows of many tables, or
    messages of one topic (the key). ``accounts_by_bucket`` keys the accounts step by order
    bucket (fewest calls) rather than by account (smallest recovery snapshots).
    ``encode_rows`` turns a batch's rows into what the rows sink takes, in the worker that
    made them (the replay: columns per table, cheap to send to the process that writes). The core
    names input topics by their logical names; rejections leave the flow naming the full
    topic (``topic_prefix``).
    """
    flow = Dataflow(flow_id)
    numbered = op.input("input", flow, NumberedSource(source))
    dispatched = op.branch(
        "to_lifecycle",
        op.flat_map("dispatch", numbered, partial(dispatch, metrics)),
        lambda pair: pair[0] == LIFECYCLE_KEY,
    )
    answered = op.key_rm(
        "answered",
        op.stateful(
            "lifecycle",
            dispatched.trues,
            lambda resume: LifecycleLogic(rules, metrics, resume),
        ),
    )
    answers = op.branch("answers", answered, is_keyed)
    to_claims = op.branch("to_claims", answers.trues, is_claim)
    claimed = op.branch(
        "claimed",
        op.key_rm(
            "claims_out",
            op.stateful(
                "claims", to_claims.trues, lambda resume: ClaimLogic(rules, metrics, resume)
            ),
        ),
        is_keyed,
    )
    to_route = op.merge("to_route", dispatched.falses, to_claims.falses, claimed.trues)
    routed = op.branch(
        "routable",
        op.key_rm(
            "routed",
            op.stateful("route", to_route, lambda resume: RouteLogic(rules, metrics, resume)),
        ),
        is_keyed,
    )
    account_key = account_key_of(accounts_by_bucket)
    by_account = op.key_rm(
        "by_account",
        op.stateful("order", routed.trues, lambda resume: OrderLogic(account_key, resume)),
    )
    logic = AccountsLogic if accounts_by_bucket else AccountLogic
    applied = op.stateful(
        "accounts", by_account, lambda resume: logic(rules, resume, close_at_eof, metrics)
    )
    refused = op.merge("refused", answers.falses, claimed.falses, routed.falses)
    _to_sinks(applied, refused, rows, messages, topic_prefix, encode_rows)
    return flow


def build_routed_flow(
    rules: BillingRules,
    *,
    source: Source[tuple[str, list[tuple[str, Routed]]] | list[Output]],
    rows: Sink[tuple[str, list[Row]]],
    messages: Sink[tuple[str, list[TopicMessage]]],
    flow_id: str = "wattpay-billing",
    topic_prefix: str = DEFAULT_TOPIC_PREFIX,
    encode_rows: Callable[[list[Row]], object] | None = None,
) -> Dataflow:
    """The billing dataflow over a source that routes what it reads (the replay's).

    The source hands on a batch per accounts key and the outputs of what it refused; the
    accounts apply their batches as in ``build_billing_flow``, and the outputs go to the
    same sinks the same way. At the end of the input every open day is closed.
    """
    flow = Dataflow(flow_id)
    routed = op.branch("routable", op.input("input", flow, source), is_keyed)
    # Rows that become columns where they are billed need no row object each.
    scaled_rows = encode_rows is not None
    applied = op.stateful(
        "accounts",
        routed.trues,
        lambda resume: AccountsLogic(rules, resume, close_at_eof=True, scaled_rows=scaled_rows),
    )
    _to_sinks(applied, routed.falses, rows, messages, topic_prefix, encode_rows)
    return flow


def _to_sinks(
    applied: op.KeyedStream[list[Output]],
    refused: op.Stream[list[Output]],
    rows: Sink[tuple[str, list[Row]]],
    messages: Sink[tuple[str, list[TopicMessage]]],
    topic_prefix: str,
    encode_rows: Callable[[list[Row]], object] | None,
) -> None:
    """The accounts' and the refusals' outputs: rows to ``rows``, messages to ``messages``."""
    keyed_refusals = op.map("refusals", refused, lambda outputs: (REFUSALS_KEY, outputs))
    outputs = op.merge("outputs", keyed_refusals, applied)
    batches = op.filter_map("rows", outputs, partial(_rows, topic_prefix))
    if encode_rows is not None:
        batches = op.map("encode_rows", batches, lambda keyed: (keyed[0], encode_rows(keyed[1])))
    op.output("analytics", batches, rows)
    op.output(
        "topics", op.flat_map("messages", outputs, partial(_messages, topic_prefix)), messages
    )


def full_topic_names(output: Output, prefix: str) -> Output:
    """A rejection (``rejected`` row or DLQ message) naming its input topic in full.

    Every other output is returned as it is.
    """
    if isinstance(output, Row):
        if output.table != "rejected":
            return output
        return Row(output.table, {**output.values, "topic": prefix + output.values["topic"]})
    if output.topic != DLQ:
        return output
    return TopicMessage(
        output.topic, output.key, {**output.value, "topic": prefix + output.value["topic"]}
    )


def _rows(prefix: str, keyed: tuple[str, list[Output]]) -> tuple[str, list[Row]] | None:
    """A batch's rows, rejections naming their topic in full; None when it has none."""
    key, outputs = keyed
    rows = [
        full_topic_names(o, prefix) if o.table == "rejected" else o  # type: ignore[misc]
        for o in outputs
        if isinstance(o, Row)
    ]
    return (key, rows) if rows else None  # type: ignore[return-value]


def _messages(prefix: str, keyed: tuple[str, list[Output]]) -> list[tuple[str, list[TopicMessage]]]:
    """A batch's topic messages, one list per topic (the sinks' partitions are by topic)."""
    by_topic: dict[str, list[TopicMessage]] = {}
    for output in keyed[1]:
        if isinstance(output, TopicMessage):
            message = full_topic_names(output, prefix)
            by_topic.setdefault(output.topic, []).append(message)  # type: ignore[arg-type]
    return list(by_topic.items())
