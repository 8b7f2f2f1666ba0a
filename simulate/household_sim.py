"""Play out one premises over the example period: consumption, money and the lines it sends.

A :class:`PremisesRun` walks its meter's reading times in order. Between readings it applies the
household's account events and payments, accrues consumption from the load profile (nothing
while the relay is open, unless the household bypasses it), and keeps a :class:`Wallet` so that
top-ups, auto top-up answers and disconnections happen when the billing engine would see them.
Reading lines are yielded as :data:`Line` items for a merge by timestamp; account and payment
lines, which are few, are collected in an :class:`Output`.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from typing import Any

from simulate.example_output import Line, Output, energy_text, fen_of
from simulate.household_money import HouseholdMoney
from simulate.profiles import HouseholdLoad
from simulate.scenarios import CUT_ROLES, REGISTER_MAX_WH, Premises, Tenancy, money_text
from simulate.wallet import (
    DAY,
    DEFAULT_RULES,
    LOCAL_OFFSET,
    UNITS_PER_FEN,
    Wallet,
    WalletRules,
    local_date,
    local_day,
)


class PremisesRun(HouseholdMoney):
    """The simulation of one premises; iterate :meth:`lines` once."""

    def __init__(
        self,
        prem: Premises,
        out: Output,
        end: int,
        *,
        probe: bool = False,
        money: WalletRules = DEFAULT_RULES,
    ) -> None:
        self.p, self.out, self.end, self.probe, self.money = prem, out, end, probe, money
        self.rng = random.Random(f"run:{prem.index}:{prem.register_wh}")
        self.meter_id, self.decimals = prem.meter_id, prem.decimals
        self.base, self.cum, self.a = prem.register_wh, 0, prem.tenancies[0].open_ts
        self.load: HouseholdLoad | None = None
        self._day, self._day_wh = -1, [0] * 96
        self.ten: Tenancy = prem.tenancies[0]
        self.wallet = Wallet("", 0, 0, 0, money=money)
        self.policy, self.last_reg, self.last_ts = "", -1, 0
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.pays: list[tuple[int, int, str, dict[str, Any]]] = []
        self.pay_no, self.planned, self.scheduled, self.seq = 0, False, False, 0
        self.requests, self.stray = 0, ""
        self.probe_log: list[tuple[int, int]] = []
        self.next_at, self._previous = 0, -1

    # -- consumption ---------------------------------------------------------------------------
    def _slot_wh(self, s: int) -> int:
        local = s + LOCAL_OFFSET
        day = local // DAY
        if day != self._day and self.load is not None:
            self._day, self._day_wh = day, self.load.day_wh(local_date(day))
        return self._day_wh[local % DAY // 900]

    def _flowing(self) -> bool:
        return self.load is not None and (not self.wallet.disconnected or self.ten.role == "tamper")

    def _advance(self, x: int) -> None:
        """Accrue consumption up to ``x`` (pro rata inside a quarter hour, floored)."""
        a = self.a
        if x <= a:
            return
        self.a = x
        if not self._flowing():
            return
        if x - a == 900 and (a + LOCAL_OFFSET) % 900 == 0:
            self.cum += self._slot_wh(a)
            return
        total = 0
        while a < x:
            s = a - (a + LOCAL_OFFSET) % 900
            e = min(s + 900, x)
            wh = self._slot_wh(s)
            total += wh * (e - s) // 900 - wh * (a - s) // 900
            a = e
        self.cum += total

    def _register(self) -> int:
        q = 10 if self.decimals == 2 else 1
        return (self.base + self.cum) // q * q

    # -- the run -------------------------------------------------------------------------------
    def lines(self) -> Iterator[Line]:
        """Yield this premises' reading lines (and its bad reading lines) in position order."""
        tenancies, index, bad = self.p.tenancies, self.p.index, self.p.bad
        for k, ten in enumerate(tenancies):
            if ten.open_ts >= self.end:
                break
            stop = min(ten.close_ts or self.end, self.end)
            self._open(ten, first=k == 0)
            for t in self._times(ten.open_ts, stop):
                if t >= self.next_at:
                    self._until(t)
                self._advance(t)
                line = self._reading(t)
                self.seq += 1
                yield (t, index, self.seq, line)
                if self.stray or t in bad:
                    yield from self._followers(t)
            self._until(stop - 1)
            if ten.close_ts is not None and ten.close_ts < self.end:
                self._close(ten)
                nxt = tenancies[k + 1].open_ts if k + 1 < len(tenancies) else self.end
                yield from self._vacant(ten.close_ts, min(nxt, self.end))

    def _times(self, start: int, stop: int) -> Iterator[int]:
        if self.p.cadence == "irregular":
            t = start
            while t < stop:
                yield t
                t += self.rng.randint(700, 5400)
        else:
            yield from range(start, stop, 3600 if self.p.cadence == "hourly" else 900)

    def _open(self, ten: Tenancy, *, first: bool) -> None:
        self.ten, self.load, self._day = ten, ten.load, -1
        if not first:
            self.cum += self.rng.randint(100, 900)  # standby while the flat stood empty
            self.out.fact("move_in", ten.account_id)
        self.a = ten.open_ts
        self.wallet = Wallet(
            ten.plan,
            ten.opening_fen * UNITS_PER_FEN,
            ten.ytd_wh,
            local_day(ten.open_ts),
            auto_fen=ten.auto_fen,
            money=self.money,
        )
        if ten.threshold_fen is not None:
            self.wallet.threshold = ten.threshold_fen * UNITS_PER_FEN
        self.last_reg, self.pays, self.planned, self.next_at = -1, [], False, 0
        self.events = sorted(ten.events, key=lambda e: e[0])
        if self.p.replace is not None and first:
            self.events.append((self.p.replace[0], "replace_meter", {}))
            self.events.sort(key=lambda e: e[0])
        self.policy = {"auto": "auto", "arrears": "on_arrears"}.get(ten.role, "steady")
        if ten.role in CUT_ROLES:
            self.policy = "wait_cut"
        if self.probe:
            self.policy, self.events = "none", []
            return
        payload: dict[str, Any] = {
            "type": "open",
            "account_id": ten.account_id,
            "meter_id": self.meter_id,
            "plan": ten.plan,
            "ts": self.out.ts(ten.open_ts),
            "opening_balance": money_text(ten.opening_fen),
        }
        if ten.threshold_fen is not None:
            payload["low_balance_threshold"] = money_text(ten.threshold_fen)
        if ten.auto_fen is not None:
            payload["auto_topup_amount"] = money_text(ten.auto_fen)
        payload.update(ten.extras)
        self.out.account(ten.open_ts, payload)
        self.out.fact(f"plan:{ten.plan}", ten.account_id)
        if first:
            self.out.fact(f"role:{ten.role}", ten.account_id)
        self.out.fact(f"cadence:{self.p.cadence}", ten.account_id)
        for key in ("ytd_kwh", "phone", "landlord_id"):
            if key in ten.extras:
                self.out.fact(f"open_with_{key}", ten.account_id)
        if ten.auto_fen is not None:
            self.out.fact("auto_topup", ten.account_id)
        if ten.role == "rebate":
            amount = self.rng.choice((10, 16, 20, 40)) * self.money.rebate_minimum() // 10
            self._plan_pay(
                self._later(ten.open_ts, 1800, 6 * 3600),
                "topup",
                {"amount": amount, "channel": self.rng.choice(self.money.rebate_channels())},
            )
            at = max(ten.open_ts + DAY, self.end - self.rng.randint(2, 3) * DAY)
            self._plan_pay(self._later(at, 0, 12 * 3600), "redeem", {})
        elif self.policy == "steady" and ten.opening_fen < ten.trigger_fen:
            self._plan_topup(ten.open_ts, 1800, 5 * 3600)

    def _until(self, t: int) -> None:
        """Apply account events, then payments, with ts ≤ ``t`` in time order."""
        while True:
            te = self.events[0][0] if self.events else 1 << 62
            tp = self.pays[0][0] if self.pays else 1 << 62
            self.next_at = min(te, tp)
            if self.next_at > t:
                return
            if te <= tp:
                at, kind, fields = self.events.pop(0)
                self._advance(at)
                self._account_event(at, kind, fields)
            else:
                at, number, kind, data = heapq.heappop(self.pays)
                self._advance(at)
                self._payment(at, kind, data, number)

    # -- readings ------------------------------------------------------------------------------
    def _reading(self, t: int) -> str:
        """Take the reading at ``t``, rate it, and return its line."""
        reg = self._register()
        previous = self._previous = self.last_reg
        if self.p.regression_ts == t and previous >= 0:
            self.base -= reg - self.rng.randint(0, 2000) * 10  # the register restarts near zero
            reg = self._register()
            self.last_reg, self.last_ts = reg, t
            self.out.bad["readings"]["meter_regression"] += 1
            self.out.fact("meter_regression", self.ten.account_id)
        elif previous < 0:
            self.last_reg, self.last_ts = reg, t
            self.wallet.close_days(t)
        else:
            self._rate(t, reg - previous)
            if reg >= REGISTER_MAX_WH > previous:
                self.out.fact("register_rollover", self.ten.account_id)
        text = energy_text(reg % REGISTER_MAX_WH, self.decimals)
        extra = ', "source": "modbus"' if self.p.source else ""
        if self.p.power:
            extra += f', "power_w": "{self._slot_wh(t) * 4 if self._flowing() else 0}"'
        return (
            f'{{"meter_id": "{self.meter_id}", "ts": "{self.out.ts(t)}", '
            f'"energy_kwh": "{text}"{extra}}}\n'
        )

    def _followers(self, t: int) -> Iterator[Line]:
        """Lines that follow the reading at ``t``: a stale old meter, deliberate faults."""
        if self.stray:
            self.seq += 1
            yield (t, self.p.index, self.seq, self.stray.replace("{ts}", self.out.ts(t)))
            self.stray = ""
            self.out.bad["readings"]["unknown_meter"] += 1
        for kind in self.p.bad.get(t, ()):
            yield from self._bad_reading(kind, t, self.last_reg, self._previous)

    def _rate(self, t: int, delta: int) -> None:
        w = self.wallet
        before = w.available()
        disconnected = w.disconnected
        w.consume(self.last_ts, delta)
        w.close_days(t)
        self.last_reg, self.last_ts = self.last_reg + delta, t
        if self.probe:
            self.probe_log.append((t, -w.available() - w.limit()))
            return
        if disconnected and delta > 10:
            self.out.fact("consumption_while_disconnected", self.ten.account_id)
        self._react(t, w.check(t, before))

    def _bad_reading(self, kind: str, t: int, reg: int, previous: int) -> Iterator[Line]:
        at, ts, energy = t, t, reg
        if kind == "conflict":
            energy = reg + self.rng.randint(5, 90) * 10
        elif kind == "out_of_order":
            ts, energy = t - self.rng.randrange(101, 799, 2), previous
        elif kind == "implausible_jump":
            at = ts = t + self.rng.randrange(181, 599, 2)
            energy = reg + self.rng.randint(40_000, 250_000)
        text = energy_text(energy % REGISTER_MAX_WH, self.decimals)
        self.seq += 1
        self.out.bad["readings"][kind] += 1
        yield (
            at,
            self.p.index,
            self.seq,
            f'{{"meter_id": "{self.meter_id}", "ts": "{self.out.ts(ts)}", '
            f'"energy_kwh": "{text}"}}\n',
        )

    def _vacant(self, closed: int, until: int) -> Iterator[Line]:
        """The head-end still polls a vacated meter twice before it is taken off the route."""
        first = closed + 900 - (closed + LOCAL_OFFSET) % 900
        for t in range(first, min(first + 1800, until), 900):
            self._advance(t)
            text = energy_text(self._register(), self.decimals)
            self.seq += 1
            self.out.bad["readings"]["unknown_meter"] += 1
            yield (
                t,
                self.p.index,
                self.seq,
                f'{{"meter_id": "{self.meter_id}", "ts": "{self.out.ts(t)}", '
                f'"energy_kwh": "{text}"}}\n',
            )
        self.load = None
        self._advance(until)

    # -- money ---------------------------------------------------------------------------------
    def _account_event(self, t: int, kind: str, fields: dict[str, Any]) -> None:
        ten, w = self.ten, self.wallet
        payload: dict[str, Any] = {"type": kind, "account_id": ten.account_id}
        if kind == "change_plan":
            w.plan = str(fields["plan"])
            payload["plan"] = w.plan
        elif kind == "update":
            payload.update(fields)
            if "low_balance_threshold" in fields:
                w.threshold = fen_of(fields["low_balance_threshold"]) * UNITS_PER_FEN
            if "auto_topup_amount" in fields:
                value = fields["auto_topup_amount"]
                w.auto_fen = None if value is None else fen_of(value)
                self.policy = "steady" if value is None else "auto"
                self.out.fact("auto_topup_off" if value is None else "auto_topup", ten.account_id)
        elif kind == "replace_meter":
            assert self.p.replace is not None
            _, new_id, new_initial, decimals = self.p.replace
            old_final = self._register()
            before = w.available()
            if t > self.last_ts and old_final >= self.last_reg >= 0:
                w.consume(self.last_ts, old_final - self.last_reg)
            w.close_days(t)
            old_text = energy_text(old_final, self.decimals)
            payload.update(
                old_meter_id=self.meter_id,
                old_final_kwh=old_text,
                new_meter_id=new_id,
                new_initial_kwh=energy_text(new_initial, decimals),
            )
            self.stray = (
                f'{{"meter_id": "{self.meter_id}", "ts": "{{ts}}", "energy_kwh": "{old_text}"}}\n'
            )
            self.meter_id, self.decimals = new_id, decimals
            self.base = new_initial - self.cum
            self.last_reg, self.last_ts = new_initial, t
            self._react(t, w.check(t, before))
        payload["ts"] = self.out.ts(t)
        self.out.account(t, payload)
        self.out.fact(kind, ten.account_id)

    def _close(self, ten: Tenancy) -> None:
        t = ten.close_ts
        assert t is not None
        self._advance(t)
        final = self._register()
        w = self.wallet
        if t > self.last_ts and final >= self.last_reg >= 0:
            w.consume(self.last_ts, final - self.last_reg)
        w.close_days(t)
        self.out.account(
            t,
            {
                "type": "close",
                "account_id": ten.account_id,
                "ts": self.out.ts(t),
                "final_kwh": energy_text(final, self.decimals),
            },
        )
        self.out.fact("move_out", ten.account_id)
        self.wallet = Wallet("", 0, 0, 0, money=self.money)


def choose_cut_opening(
    prem: Premises, end: int, rng: random.Random, money: WalletRules = DEFAULT_RULES
) -> None:
    """Pick the opening balance so the overdraft runs out inside or outside the cut window.

    A dry run with an opening balance of 0 gives h(t) = cost so far − overdraft limit at each
    reading; an opening balance O is used up (available < −limit) at the first reading where
    h > O. Among the readings that set a new maximum of h, one in the wanted class is chosen.
    """
    ten = prem.tenancies[0]
    ten.opening_fen = 0
    probe = PremisesRun(prem, Output(), end, probe=True, money=money)
    for _ in probe.lines():
        pass
    low, high = ten.open_ts + 8 * 3600, end - 12 * 3600
    best, fallback, peak = [], [], 0
    for t, h in probe.probe_log:
        if h > peak:
            opening = -(-peak // UNITS_PER_FEN)
            if opening * UNITS_PER_FEN < h and low <= t <= high:
                wanted = money.in_window(t) == (ten.cut_target == "cut_in")
                (best if wanted else fallback).append(opening)
            peak = h
    choices = best or fallback
    if choices:
        ten.opening_fen = max(rng.choice(choices[len(choices) // 2 :]), 0)
    else:
        ten.role, ten.opening_fen = "arrears", rng.randint(5, 25) * 100
