"""The ``[retention]`` section: how long the embedded broker keeps topic data (``wattpay up``).

Example::

    [retention]
    enabled = true
    derived_hours = 24      # facts and outputs, once every consumer group has committed past them
    input_days = 7          # readings, payments, relay results: and as long as recovery needs them
    interval_seconds = 300  # how often the janitor looks
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RetentionSettings:
    """Ages below which nothing is deleted (``wattpay/retention.py`` says what else holds data)."""

    enabled: bool = True
    derived_hours: float = 24.0
    input_days: float = 7.0
    interval_seconds: float = 300.0


def retention_settings(raw: Mapping[str, Any], problems: list[str]) -> RetentionSettings:
    """The section checked; every problem is added to ``problems``."""
    base = RetentionSettings()
    enabled = raw.get("enabled", base.enabled)
    if not isinstance(enabled, bool):
        if str(enabled).lower() in ("true", "1", "yes"):
            enabled = True
        elif str(enabled).lower() in ("false", "0", "no"):
            enabled = False
        else:
            problems.append(f"retention.enabled must be true or false: {enabled!r}")
            enabled = base.enabled
    return RetentionSettings(
        enabled=enabled,
        derived_hours=_age(raw, "derived_hours", base.derived_hours, problems),
        input_days=_age(raw, "input_days", base.input_days, problems),
        interval_seconds=_age(raw, "interval_seconds", base.interval_seconds, problems, least=1.0),
    )


def _age(
    raw: Mapping[str, Any], key: str, default: float, problems: list[str], least: float = 0.0
) -> float:
    value = raw.get(key, default)
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
    except (TypeError, ValueError):
        problems.append(f"retention.{key} must be a number: {value!r}")
        return default
    if not math.isfinite(number) or number < least:
        problems.append(f"retention.{key} must be {least:g} or more: {value!r}")
        return default
    return number
