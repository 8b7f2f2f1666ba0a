"""The monthly run inside ``wattpay up``: bills for the month that just ended, on day 1 (local)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

from config.settings import Settings
from jobs.money import month_before

log = logging.getLogger(__name__)


def due_month(today: date, done: set[date]) -> date | None:
    """The month to bill on ``today``: the previous one, on the first day, unless already done."""
    if today.day != 1:
        return None
    month = month_before(today)
    return None if month in done else month


def monthly_scheduler(
    settings: Settings,
    kafka: Mapping[str, str],
    out_dir: Path,
    stop: threading.Event,
    *,
    every_seconds: float = 60.0,
    today: Callable[[], date] | None = None,
) -> Callable[[], None]:
    """A thread body that runs `run_monthly` once for each month that ends while ``up`` runs.

    Notices go to the running system's notifications topic. A marker file per month under
    ``out_dir`` keeps a restart on day 1 from billing the month again (a second run would
    only rewrite the same ids anyway).
    """
    brokers = kafka.get("bootstrap.servers", settings.brokers)
    job_settings = replace(settings, brokers=brokers)
    clock = today or (lambda: datetime.now(settings.rules.zone).date())

    def run() -> None:
        from jobs.monthly import run_monthly

        while not stop.wait(every_seconds):
            done = {
                date.fromisoformat(p.name.removeprefix(".billed-") + "-01")
                for p in out_dir.glob(".billed-*")
            }
            month = due_month(clock(), done)
            if month is None:
                continue
            try:
                result = run_monthly(job_settings, month, out_dir, today=clock())
            except Exception:  # the billing system keeps running; the next check retries
                log.exception("monthly bills for %s failed", f"{month:%Y-%m}")
                continue
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / f".billed-{month:%Y-%m}").write_text(f"{len(result.bills)}\n")
            log.info("monthly bills for %s: %d bills", f"{month:%Y-%m}", len(result.bills))

    return run
