"""The deliberate bad input of an example set: one or more of every kind in SPEC S9 / S14.

Each bad line is counted under the reason the billing engine is expected to give it, so a
replay of the set can be checked against the summary. Reading-level faults that need the
meter's real register (duplicate, conflict, out of order, implausible jump) are planned here
and written by :mod:`simulate.household_sim` next to the reading they spoil.
"""

from __future__ import annotations

import json
import random
from typing import Any

from simulate.example_output import Line, Output
from simulate.scenarios import Premises

READING_FAULTS = ("duplicate", "conflict", "out_of_order", "implausible_jump")
_MALFORMED_READINGS: tuple[tuple[str, bool], ...] = (  # template, is it invalid JSON
    ("reading lost: {m} {ts}", True),
    ('{{"meter_id": "{m}", "ts": "{ts}", "energy_kw', True),
    ('{{"meter_id": "{m}", "ts": "{ts}", "energy_kwh": NaN}}', True),
    ("[1, 2, 3]", False),
    ('{{"ts": "{ts}", "energy_kwh": "{e}"}}', False),
    ('{{"meter_id": "{m}", "ts": "{ts}"}}', False),
    ('{{"meter_id": "{m}", "ts": "{ts}", "energy_kwh": {e}}}', False),
    ('{{"meter_id": "{m}", "ts": "{ts}", "energy_kwh": "NaN"}}', False),
    ('{{"meter_id": "{m}", "ts": "{ts}", "energy_kwh": "Infinity"}}', False),
    ('{{"meter_id": "{m}", "ts": "{ts}", "energy_kwh": "-3.20"}}', False),
    ('{{"meter_id": "{m}", "ts": "{ts}", "energy_kwh": "{e}17"}}', False),
    ('{{"meter_id": "{m}", "ts": "{ts}", "energy_kwh": "1.2345e3"}}', False),
    ('{{"meter_id": "{m}", "ts": "{ts}", "energy_kwh": null}}', False),
    ('{{"meter_id": "{m}", "ts": "{naive}", "energy_kwh": "{e}"}}', False),
    ('{{"meter_id": "{m}", "ts": "2026-02-30T25:10:00+08:00", "energy_kwh": "{e}"}}', False),
    ('{{"meter_id": {n}, "ts": "{ts}", "energy_kwh": "{e}"}}', False),
)


def _when(rng: random.Random, day0: int, end: int, step: int = 1) -> int:
    """Return a random time in the set's period (a multiple of ``step`` s from its start)."""
    return day0 + rng.randrange(3 * 3600, end - day0 - 3600, step)


def plan_reading_faults(
    premises: list[Premises], rng: random.Random, day0: int, end: int, extra: int
) -> None:
    """Mark readings of ordinary quarter-hourly meters to be followed by a faulty copy."""
    hosts = [
        p
        for p in premises
        if p.cadence == "15min"
        and len(p.tenancies) == 1
        and p.replace is None
        and p.regression_ts is None
        and p.tenancies[0].role in ("steady", "rebate")
    ]
    if not hosts:
        return
    faults = list(READING_FAULTS) + [rng.choice(READING_FAULTS) for _ in range(extra)]
    for kind in faults:
        prem = rng.choice(hosts)
        first = prem.tenancies[0].open_ts + 4 * 900
        if first >= end - 2 * 900:
            continue
        t = first + rng.randrange(0, end - 2 * 900 - first, 900)
        prem.bad.setdefault(t, []).append(kind)


def stray_reading_lines(
    premises: list[Premises], out: Output, rng: random.Random, day0: int, end: int, extra: int
) -> list[Line]:
    """Malformed readings and readings of a meter nobody has opened, as merge items."""
    lines: list[tuple[int, str]] = []
    kinds = list(_MALFORMED_READINGS) + [rng.choice(_MALFORMED_READINGS) for _ in range(extra)]
    for template, invalid in kinds:
        prem = rng.choice(premises)
        t = _when(rng, day0, end, 900)
        ts = out.ts(t)
        energy = f"{prem.register_wh // 1000 + rng.randint(1, 99)}.{rng.randint(0, 99):02d}"
        text = template.format(m=prem.meter_id, ts=ts, e=energy, naive=ts[:19], n=prem.index + 1)
        lines.append((t, text + "\n"))
        out.bad["readings"]["malformed"] += 1
        out.non_json["readings"] += invalid
    unknown = f"M{len(premises) + 101:04d}"
    t = _when(rng, day0, end - 3 * 900, 900)
    register = rng.randint(1_000_000, 9_000_000)
    for k in range(3):
        register += rng.randint(20, 400)
        text = f"{register // 1000}.{register % 1000 // 10:02d}"
        lines.append(
            (
                t + k * 900,
                f'{{"meter_id": "{unknown}", "ts": "{out.ts(t + k * 900)}", '
                f'"energy_kwh": "{text}"}}\n',
            )
        )
        out.bad["readings"]["unknown_meter"] += 1
    lines.sort(key=lambda item: item[0])
    return [(t, len(premises), k, line) for k, (t, line) in enumerate(lines)]


def _accounts(out: Output, scenario: str) -> list[str]:
    return list(out.facts.get(scenario, {}))


def _open_ts(out: Output, account_id: str) -> int:
    for t, _, line in out.accounts:
        if f'"account_id": "{account_id}"' in line and '"type": "open"' in line:
            return t
    return 0


def add_bad_events(out: Output, rng: random.Random, day0: int, end: int, households: int) -> None:
    """Account events the engine must reject: malformed, unknown, closed and conflicting."""
    steady = _accounts(out, "role:steady") or _accounts(out, "plan:zhejiang-tiered")
    some = rng.choice(steady)
    ghost = f"A{households + 101:04d}"
    meter = f"M{households + 102:04d}"

    def at() -> int:
        return _when(rng, day0, end)

    def event(kind: str, reason: str, t: int, **fields: Any) -> None:
        out.account(t, {"type": kind, **fields, "ts": out.ts(t)}, reason)

    event("open", "malformed", at(), account_id=ghost, meter_id=meter, plan="beijing-tiered")
    event("open", "malformed", at(), account_id=f"A{households + 102:04d}", plan="zhejiang-tiered")
    event(
        "open",
        "malformed",
        at(),
        account_id=f"A{households + 103:04d}",
        meter_id=meter,
        plan="zhejiang-tiered",
        opening_balance=50,
    )
    event("suspend", "malformed", at(), account_id=some)
    event("update", "malformed", at(), account_id=some, low_balance_threshold="20.005")
    t = at()
    out.raw(
        "accounts",
        t,
        f'{{"type": "change_plan", "account_id": "{some}", '
        f'"plan": "zhejiang-tou", "ts": "{out.ts(t)[:19]}"}}',
        "malformed",
    )
    out.raw("accounts", at(), '{"type": "open", "account_id": ', "malformed")
    out.non_json["accounts"] += 1
    event(
        "change_plan",
        "unknown_account",
        at(),
        account_id=f"A{households + 104:04d}",
        plan="zhejiang-tou",
    )
    event("update", "unknown_account", at(), account_id=ghost, phone="13800000000")
    owner = _open_line(out, some)
    if owner:
        t = max(at(), _open_ts(out, some) + 3600)
        event(
            "open",
            "conflict",
            t,
            account_id=some,
            meter_id=owner["meter_id"],
            plan=owner["plan"],
            opening_balance="100.00",
        )
        event(
            "open",
            "conflict",
            t + 60,
            account_id=f"A{households + 105:04d}",
            meter_id=owner["meter_id"],
            plan="zhejiang-tiered",
        )
    for account in _accounts(out, "replace_meter")[:1]:
        t = next(t for t, _, line in out.accounts if '"replace_meter"' in line and account in line)
        event(
            "replace_meter",
            "unknown_meter",
            t - 180,
            account_id=account,
            old_meter_id=f"M{households + 106:04d}",
            old_final_kwh="1234.00",
            new_meter_id=f"N{households + 106:04d}",
            new_initial_kwh="0.00",
        )
    for account in _accounts(out, "move_out")[:1]:
        closed = next(t for t, _, line in out.accounts if '"close"' in line and account in line)
        if closed + 7200 < end:
            event(
                "update",
                "account_closed",
                closed + 3600 + rng.randint(0, 3000),
                account_id=account,
                phone="13700000000",
            )


def _open_line(out: Output, account_id: str) -> dict[str, Any] | None:
    for _, _, line in out.accounts:
        if f'"account_id": "{account_id}"' in line and '"type": "open"' in line:
            value: dict[str, Any] = json.loads(line)
            return value
    return None


def add_bad_payments(
    out: Output, rng: random.Random, day0: int, end: int, households: int, extra: int
) -> None:
    """Payments the engine must reject: duplicates, bad amounts, unknown or closed accounts."""
    steady = _accounts(out, "role:steady") or _accounts(out, "plan:zhejiang-tiered")

    def at() -> int:
        return _when(rng, day0, end)

    def topup(
        reason: str,
        t: int,
        amount: Any = "100.00",
        channel: str = "wechat",
        account: str | None = None,
    ) -> None:
        account = account or rng.choice(steady)
        out.payment(
            t,
            {
                "type": "topup",
                "payment_id": f"P-{account}-x{t % 9973}",
                "account_id": account,
                "amount": amount,
                "channel": channel,
                "ts": out.ts(t),
            },
            reason,
        )

    originals = [p for p in out.topups if p[1]["channel"] != "bank"]
    for _ in range(1 + extra // 2):
        if originals:
            t, payload = rng.choice(originals)
            out.payment(t, dict(payload), "duplicate_payment")
            if t + 5400 < end:
                again = dict(payload, amount="50.00", ts=out.ts(t + 5400))
                out.payment(t + 5400, again, "duplicate_payment")
    for amount in ("0.00", "-5.00", "20000.00", "12.345"):
        topup("invalid_amount", at(), amount)
    topup("malformed", at(), 100)
    topup("malformed", at(), "100.00", "paypal")
    topup("unknown_account", at(), account=f"A{households + 107:04d}")
    t = at()
    out.payment(
        t,
        {
            "type": "topup",
            "payment_id": f"P-x{t % 9973}",
            "amount": "100.00",
            "channel": "app",
            "ts": out.ts(t),
        },
        "malformed",
    )
    t = at()
    out.payment(
        t,
        {
            "type": "refund",
            "payment_id": f"P-x{t % 9973}",
            "account_id": steady[0],
            "amount": "100.00",
            "channel": "app",
            "ts": out.ts(t),
        },
        "malformed",
    )
    t = at()
    out.raw(
        "payments",
        t,
        f'{{"type": "topup", "payment_id": "P-x{t % 9973}", "account_id": '
        f'"{steady[-1]}", "amount": "80.00", "channel": "alipay", '
        f'"ts": "{out.ts(t)[:19]}"}}',
        "malformed",
    )
    out.raw("payments", at(), "{payment: oops}", "malformed")
    out.non_json["payments"] += 1
    redeemers = _accounts(out, "redeem") or steady
    for points, reason in (
        (999_999, "insufficient_points"),
        (0, "invalid_amount"),
        ("300", "malformed"),
    ):
        t = at()
        out.payment(
            t,
            {
                "type": "redeem",
                "payment_id": f"R-x{t % 9973}",
                "account_id": rng.choice(redeemers),
                "points": points,
                "ts": out.ts(t),
            },
            reason,
        )
    for account in _accounts(out, "move_out")[:1]:
        closed = next(t for t, _, line in out.accounts if '"close"' in line and account in line)
        if closed + 7200 < end:
            topup(
                "account_closed", closed + 1800 + rng.randint(0, 3600), "50.00", "alipay", account
            )
