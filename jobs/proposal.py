"""A proposed tariff file: ``[plans.ID]`` tables as in ``wattpay.toml``, checked like a plan.

Each table replaces the plan of that id for a what-if; a bad file is one clear line.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from billing.tariffs import Plan, PlanError, plan_from_config, plan_toml
from config.errors import OperatorError
from jobs.rater import TIERS

MAX_BYTES = 1 << 20


class ProposalError(OperatorError, ValueError):
    """The proposed tariff file cannot be used."""


def read_proposal(path: Path) -> dict[str, Plan]:
    """The proposed plans by id, each checked; ProposalError names the first problem."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as err:
        raise ProposalError(f"{path}: cannot read: {err.strerror or err}") from err
    if len(raw) > MAX_BYTES:
        raise ProposalError(f"{path}: larger than {MAX_BYTES} bytes; a tariff file is small")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ProposalError(f"{path}: not UTF-8 text (byte {err.start})") from err
    except (tomllib.TOMLDecodeError, RecursionError) as err:
        raise ProposalError(f"{path}: not TOML: {err}") from err
    plans = data.get("plans")
    extra = sorted(set(data) - {"plans"})
    if extra:
        raise ProposalError(f"{path}: only [plans.ID] tables belong here, not {extra[0]!r}")
    if not isinstance(plans, dict) or not plans:
        raise ProposalError(f"{path}: no [plans.ID] table")
    found = {}
    for plan_id, spec in plans.items():
        if not isinstance(spec, dict):
            raise ProposalError(f"{path}: plans.{plan_id} must be a table")
        try:
            plan = plan_from_config(plan_id, spec)
        except PlanError as err:
            raise ProposalError(f"{path}: {err}") from err
        if len(plan.tier_bounds) >= TIERS:
            raise ProposalError(f"{path}: plan {plan_id}: at most {TIERS} tiers are supported")
        found[plan_id] = plan
    return found


def scenario_id(proposed: Mapping[str, Plan], start: date, end: date) -> str:
    """A deterministic id for the proposal over a period: the same inputs, the same id."""
    text = "".join(plan_toml(proposed[k]) for k in sorted(proposed))
    digest = hashlib.sha256(f"{start.isoformat()}/{end.isoformat()}\n{text}".encode())
    return digest.hexdigest()[:16]
