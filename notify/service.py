"""Running the notification worker as a service of ``wattpay up``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry

from config.settings import Settings
from notify.metrics import create_notify_metrics
from notify.worker import NotifyWorker, build_channels

log = logging.getLogger(__name__)
RESTART_SECONDS = 5.0


def run_notify_service(
    settings: Settings,
    config: Mapping[str, str],
    log_file: Path,
    registry: CollectorRegistry,
    stop: threading.Event,
) -> None:
    """The worker as a service of ``wattpay up``, until ``stop`` is set.

    The default ``log`` channel appends the texts to ``log_file``. If the worker fails (the
    broker refuses its records, say), it starts again after a pause and resumes from its
    committed position.
    """
    channels = build_channels(settings, log_file)
    metrics = create_notify_metrics(registry)
    while not stop.is_set():
        worker = NotifyWorker(settings, dict(config), channels=channels, metrics=metrics)
        try:
            worker.run(stop)
        except Exception:
            log.exception("notification worker failed; restarting in %.0fs", RESTART_SECONDS)
            stop.wait(RESTART_SECONDS)
