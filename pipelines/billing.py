"""The billing dataflow: route every input to its account, apply it, emit rows and messages.

Run it from the CLI (``wattpay replay``) or with ``python -m bytewax.run`` on a factory that
supplies the source and sinks; tests hand the same factory Bytewax's testing source and sink.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import Sink

from billing.engine import Routed, apply, finish
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
    dispatch,
    is_claim,
    is_keyed,
    outputs_of,
)
from pipelines.wire import PackedRouted, unpack_routed


class AccountLogic(StatefulLogic[PackedRouted, Output, bytes]):
    """One account's state inside the flow; closes the open day at end of input if asked.

    Snapshots are the pickled state (cheaper than a deep copy, and immutable).
    """

    def __init__(
        self,
        rules: BillingRules,
        resume: bytes | None,
        close_at_eof: bool,
        metrics: Metrics | None = None,
    ) -> None:
        self.rules = rules
        self.state: AccountState | None = pickle.loads(resume) if resume else None  # noqa: S301
        self.close_at_eof = close_at_eof
        self.metrics = metrics

    def on_item(self, packed: PackedRouted) -> tuple[Iterable[Output], bool]:
        value: Routed = unpack_routed(packed)
        outcome = apply(self.state, value, self.rules)
        self.state = outcome.state
        if self.metrics is not None:
            self.metrics.of(self.metrics.step_items, "accounts").inc()
            reason = outcome.rejection.reason if outcome.rejection else None
            _tally(self.metrics, value.envelope, reason, outcome.outputs)
            self.metrics.observe_event_time(value.message.ts, datetime.now(UTC))
        return outcome.outputs, self.state is None

    def on_eof(self) -> tuple[Iterable[Output], bool]:
        if self.close_at_eof and self.state is not None:
            outputs = finish(self.state, self.rules)
            self.close_at_eof = False
            if self.metrics is not None:
                self.metrics.count_outputs(outputs)
            return outputs, StatefulLogic.RETAIN
        return (), StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


def _tally(metrics: Metrics, envelope: Envelope, reason: str | None, outputs: list[Output]) -> None:
    """Applied (``reason`` None) or rejected with its reason, and what the message produced."""
    if reason is None:
        metrics.of(metrics.messages_applied, envelope.topic).inc()
    else:
        metrics.of(metrics.messages_rejected, envelope.topic, reason).inc()
    metrics.count_outputs(outputs)


def build_billing_flow(
    rules: BillingRules,
    *,
    source: Source[Envelope],
    rows: Sink[tuple[str, Row]],
    messages: Sink[tuple[str, TopicMessage]],
    close_at_eof: bool = True,
    flow_id: str = "wattpay-billing",
    metrics: Metrics | None = None,
    topic_prefix: str = DEFAULT_TOPIC_PREFIX,
) -> Dataflow:
    """The billing dataflow from input envelopes to analytics rows and topic messages.

    Readings are routed by route buckets keyed by meter, account events and payments by
    the lifecycle, payment ids claimed in buckets keyed by id, and each account's input
    order restored before its state applies them (``pipelines.routing``), so any number
    of workers and processes gives the results of the sequential reference. Items cross
    workers as plain tuples (``pipelines.wire``). The core names input topics by their
    logical names; rejections leave the flow naming the full topic (``topic_prefix``).
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
    by_account = op.key_rm("by_account", op.stateful("order", routed.trues, OrderLogic))
    applied = op.stateful(
        "accounts", by_account, lambda resume: AccountLogic(rules, resume, close_at_eof, metrics)
    )
    rejected = op.flat_map(
        "rejections",
        op.merge("refused", answers.falses, claimed.falses, routed.falses),
        outputs_of,
    )
    outputs = op.merge("outputs", rejected, op.key_rm("unkey", applied))
    op.output("analytics", op.filter_map("rows", outputs, partial(_row, topic_prefix)), rows)
    op.output(
        "topics", op.filter_map("messages", outputs, partial(_message, topic_prefix)), messages
    )
    return flow


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


def _row(prefix: str, output: Output) -> tuple[str, Row] | None:
    if not isinstance(output, Row):
        return None
    if output.table == "rejected":
        output = full_topic_names(output, prefix)  # type: ignore[assignment]
    return str(output.values.get("account_id") or output.table), output


def _message(prefix: str, output: Output) -> tuple[str, TopicMessage] | None:
    if not isinstance(output, TopicMessage):
        return None
    return output.topic, full_topic_names(output, prefix)  # type: ignore[return-value]
