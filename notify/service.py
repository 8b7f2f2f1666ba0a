"""Running the notification worker: as ``wattpay notify`` or as a thread of ``wattpay up``."""

from __future__ import annotations

import logging
from typing import Any

from notify.metrics import create_notify_metrics
from notify.worker import NotifyWorker, build_channels

log = logging.getLogger(__name__)
RESTART_SECONDS = 5.0


def run_notify_in_up(up: Any) -> None:
    """The worker as a thread of a ``wattpay.up.Up``, until its stop event.

    The default ``log`` channel appends the texts to ``<state dir>/notifications.log``. If
    the worker fails (the broker refuses its records, say), it starts again after a pause and
    resumes from its committed position.
    """
    channels = build_channels(up.settings, up.options.state_dir / "notifications.log")
    metrics = create_notify_metrics(up.metrics.registry)
    while not up.stop_event.is_set():
        worker = NotifyWorker(up.settings, up.config, channels=channels, metrics=metrics)
        try:
            worker.run(up.stop_event)
        except Exception:
            log.exception("notification worker failed; restarting in %.0fs", RESTART_SECONDS)
            up.stop_event.wait(RESTART_SECONDS)
