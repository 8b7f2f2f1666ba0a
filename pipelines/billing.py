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

from billing.directory import MeterDirectory
from billing.engine import Routed, apply, finish, route
from billing.messages import Envelope
from billing.outputs import DLQ, Output, Row, TopicMessage
from billing.rejections import Rejected
from billing.rules import BillingRules
from billing.state import AccountState
from config.settings import DEFAULT_TOPIC_PREFIX
from pipelines.wire import (
    PackedEnvelope,
    PackedRouted,
    pack_envelope,
    pack_routed,
    unpack_envelope,
    unpack_routed,
)
from sinks.metrics import Metrics

DIRECTORY_KEY = "directory"


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
            self.metrics.step_items.labels("accounts").inc()
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
        metrics.messages_applied.labels(envelope.topic).inc()
    else:
        metrics.messages_rejected.labels(envelope.topic, reason).inc()
    metrics.count_outputs(outputs)


class DirectoryLogic(StatefulLogic[PackedEnvelope, object, bytes]):
    """The meter directory: routes every message, in input order, to its account.

    It is one key that changes with every message, so its snapshot is taken as pickled
    bytes (several times cheaper than the deep copy of a plain stateful map; see
    BENCHMARKS.md "Recovery snapshots").
    """

    def __init__(self, rules: BillingRules, metrics: Metrics | None, resume: bytes | None) -> None:
        self.rules = rules
        self.metrics = metrics
        self.directory: MeterDirectory = pickle.loads(resume) if resume else MeterDirectory()  # noqa: S301 - our own snapshot

    def on_item(self, packed: PackedEnvelope) -> tuple[Iterable[object], bool]:
        value = unpack_envelope(packed)
        routed = route(value, self.directory, self.rules)
        if self.metrics is not None:
            self.metrics.step_items.labels("route").inc()
            self.metrics.messages_in.labels(value.topic).inc()
            if isinstance(routed, Rejected):
                _tally(self.metrics, value, routed.reason, routed)
        if isinstance(routed, Rejected):
            return (routed,), StatefulLogic.RETAIN
        account_id, item = routed
        return ((account_id, pack_routed(item)),), StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.directory, protocol=pickle.HIGHEST_PROTOCOL)


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

    The meter directory (who owns which meter when, and the account lifecycle checks) is
    one keyed state that sees every message in input order; accounts are keyed by id, so
    any number of workers gives the same per-account results. Items cross workers as
    plain tuples (``pipelines.wire``). The core names input topics
    by their logical names; rejections leave the flow naming the full topic (``topic_prefix``).
    """
    flow = Dataflow(flow_id)
    envelopes = op.map("pack", op.input("input", flow, source), pack_envelope)
    keyed = op.key_on("to_directory", envelopes, lambda _e: DIRECTORY_KEY)
    routed = op.key_rm(
        "routed", op.stateful("route", keyed, lambda resume: DirectoryLogic(rules, metrics, resume))
    )
    split = op.branch("routable", routed, lambda r: isinstance(r, tuple))
    rejected = op.flat_map("rejections", split.falses, lambda outputs: outputs)
    by_account = op.map("by_account", split.trues, lambda pair: pair)
    applied = op.stateful(
        "accounts", by_account, lambda resume: AccountLogic(rules, resume, close_at_eof, metrics)
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
