"""Metrics counted by the billing flow (SPEC S12), including the conservation invariant."""

import json
from collections import Counter
from decimal import Decimal

from bytewax.testing import TestingSource

from billing.rules import BillingRules
from pipelines.billing import build_billing_flow
from pipelines.metrics import create_metrics
from pipelines.replay_files import merged_envelopes
from tests.flow.conftest import BatchesSink, RunFlow
from tests.paths import CONFORMANCE


def sample(metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return value or 0.0


def test_messages_in_equal_applied_plus_rejected_per_topic(run_flow: RunFlow) -> None:
    metrics = create_metrics()
    envelopes = list(merged_envelopes(CONFORMANCE / "sample1"))
    flow = build_billing_flow(
        BillingRules(),
        source=TestingSource(envelopes),
        rows=BatchesSink([]),
        messages=BatchesSink([]),
        metrics=metrics,
    )
    run_flow(flow)
    expected = json.loads((CONFORMANCE / "sample1" / "expected.json").read_text())
    rejected = Counter(
        (r["topic"].removeprefix("wattpay."), r["reason"]) for r in expected["rejected"]
    )
    for topic in ("accounts", "payments", "readings"):
        lines = sum(1 for e in envelopes if e.topic == topic)
        received = sample(metrics, "wattpay_messages_in_total", {"topic": topic})
        applied = sample(metrics, "wattpay_messages_applied_total", {"topic": topic})
        refused = sum(
            sample(metrics, "wattpay_messages_rejected_total", {"topic": topic, "reason": reason})
            for (t, reason) in rejected
            if t == topic
        )
        assert received == lines
        assert applied + refused == received
        assert refused == sum(n for (t, _), n in rejected.items() if t == topic)
    types = Counter(n["type"] for n in expected["notifications"])
    for kind, count in types.items():
        assert sample(metrics, "wattpay_notifications_total", {"type": kind}) == count
    assert sample(metrics, "wattpay_meter_commands_total", {"action": "disconnect"}) == 2
    charged = sum(-float(r["amount"]) for r in expected["ledger"] if r["kind"] == "charge")
    assert abs(sample(metrics, "wattpay_yuan_charged_total") - charged) < 1e-6
    # Every rated kWh is in some day's usage; credits are counted by their kind.
    used = sum(Decimal(d["kwh"]) for d in expected["daily_usage"])
    assert abs(sample(metrics, "wattpay_kwh_rated_total") - float(used)) < 1e-6
    credits: dict[str, Decimal] = {}
    for row in expected["ledger"]:
        if row["kind"] != "charge" and Decimal(row["amount"]) > 0:
            credits[row["kind"]] = credits.get(row["kind"], Decimal(0)) + Decimal(row["amount"])
    assert credits
    for kind, amount in credits.items():
        got = sample(metrics, "wattpay_yuan_credited_total", {"kind": kind})
        assert abs(got - float(amount)) < 1e-6, kind
    requests = sample(metrics, "wattpay_payment_requests_total")
    assert requests == len(expected["payment_requests"])
    routed = sample(metrics, "wattpay_step_items_total", {"step": "route"})
    decided = sample(metrics, "wattpay_step_items_total", {"step": "lifecycle"})
    readings = sum(1 for e in envelopes if e.topic == "readings")
    assert (routed, decided) == (readings, len(envelopes) - readings)
    applied_or_account_rejected = sample(metrics, "wattpay_step_items_total", {"step": "accounts"})
    assert 0 < applied_or_account_rejected < routed + decided
