"""Metrics of the notification worker (SPEC S16.5), from one factory that takes a registry.

Labels are channels, types and outcomes only: bounded, never an account id. Seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@dataclass(frozen=True)
class NotifyMetrics:
    """Delivered, retried, failed, held and skipped by channel and type; latency by channel."""

    registry: CollectorRegistry
    delivered: Counter
    retried: Counter
    failed: Counter
    held: Counter
    skipped: Counter
    sms_segments: Counter
    latency: Histogram


def create_notify_metrics(registry: CollectorRegistry | None = None) -> NotifyMetrics:
    """Register the notification metrics on ``registry`` (a fresh one by default)."""
    registry = registry or CollectorRegistry()
    labels = ("channel", "type")
    return NotifyMetrics(
        registry=registry,
        delivered=Counter(
            "wattpay_notifications_delivered", "Notifications delivered", labels, registry=registry
        ),
        retried=Counter(
            "wattpay_notification_retries",
            "Failed attempts that are retried",
            labels,
            registry=registry,
        ),
        failed=Counter(
            "wattpay_notifications_failed",
            "Notifications given up on (failure topic)",
            labels,
            registry=registry,
        ),
        held=Counter(
            "wattpay_notifications_held",
            "SMS reminders held for quiet hours",
            labels,
            registry=registry,
        ),
        skipped=Counter(
            "wattpay_notifications_skipped",
            "Notifications with no address on a channel",
            labels,
            registry=registry,
        ),
        sms_segments=Counter(
            "wattpay_sms_segments", "SMS segments sent, by locale", ("locale",), registry=registry
        ),
        latency=Histogram(
            "wattpay_notification_delivery_seconds",
            "From reading a notification to its delivery on a channel",
            ("channel",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
    )
