"""The monthly run inside ``wattpay up``: the month that just ended on day 1, and on request.

On the first local day of a month it bills the month before; any month asked for with
``wattpay bills --now`` (a request file in the jobs folder) is billed at once.

``wattpay up`` holds its embedded ClickHouse, so another process cannot bill from it; it asks
the running system instead, by writing ``.request-YYYY-MM`` into ``up``'s jobs folder. The
scheduler answers with ``.billed-YYYY-MM`` (the number of bills) or ``.failed-YYYY-MM``.
"""

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

REQUEST, BILLED, FAILED = ".request-", ".billed-", ".failed-"


def due_month(today: date, done: set[date]) -> date | None:
    """The month to bill on ``today``: the previous one, on the first day, unless already done."""
    if today.day != 1:
        return None
    month = month_before(today)
    return None if month in done else month


def _months(folder: Path, prefix: str) -> set[date]:
    found = set()
    for path in folder.glob(f"{prefix}*"):
        try:
            found.add(date.fromisoformat(path.name.removeprefix(prefix) + "-01"))
        except ValueError:
            continue
    return found


def request_bills(folder: Path, month: date) -> Path:
    """Ask a running ``wattpay up`` to bill ``month``; return the file that answers."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in (BILLED, FAILED):
        (folder / f"{prefix}{month:%Y-%m}").unlink(missing_ok=True)
    (folder / f"{REQUEST}{month:%Y-%m}").write_text("\n")
    return folder / f"{BILLED}{month:%Y-%m}"


def monthly_scheduler(
    settings: Settings,
    kafka: Mapping[str, str],
    out_dir: Path,
    stop: threading.Event,
    *,
    every_seconds: float = 2.0,
    today: Callable[[], date] | None = None,
) -> Callable[[], None]:
    """A thread body that bills each month that ends while ``up`` runs, and each request.

    Notices go to the running system's notifications topic. The ``.billed-`` marker keeps a
    restart on day 1 from billing the month again (a second run would rewrite the same ids).
    """
    brokers = kafka.get("bootstrap.servers", settings.brokers)
    job_settings = replace(settings, brokers=brokers)
    clock = today or (lambda: datetime.now(settings.rules.zone).date())

    def bill(month: date) -> None:
        from jobs.monthly import run_monthly

        name = f"{month:%Y-%m}"
        try:
            result = run_monthly(job_settings, month, out_dir, today=clock())
        except Exception as err:  # the billing system keeps running; the error is reported
            log.exception("monthly bills for %s failed", name)
            (out_dir / f"{FAILED}{name}").write_text(f"{type(err).__name__}: {err}\n")
        else:
            (out_dir / f"{BILLED}{name}").write_text(f"{len(result.bills)}\n")
            log.info("monthly bills for %s: %d bills", name, len(result.bills))
        (out_dir / f"{REQUEST}{name}").unlink(missing_ok=True)

    def run() -> None:
        while not stop.wait(every_seconds):
            out_dir.mkdir(parents=True, exist_ok=True)
            for month in sorted(_months(out_dir, REQUEST)):
                bill(month)
            month = due_month(clock(), _months(out_dir, BILLED) | _months(out_dir, FAILED))
            if month is not None:
                bill(month)

    return run
