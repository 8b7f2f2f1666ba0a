"""How an example household pays: top-ups when money runs low, bank answers, reactions to cuts.

:class:`HouseholdMoney` is mixed into :class:`simulate.household_sim.PremisesRun`. It plans
payments on a small heap, applies them to the household's :class:`Wallet` and follows the
engine's decisions (auto top-up requests, disconnections, reconnections) the way people do.
"""

from __future__ import annotations

import heapq
import random
from typing import Any

from simulate.example_output import Output
from simulate.scenarios import Tenancy, money_text
from simulate.wallet import UNITS_PER_FEN, Wallet, WalletRules, seconds_of_day

CHANNEL_WEIGHTS = {"alipay": 30, "wechat": 30, "app": 15, "counter": 15, "bank": 10}


class HouseholdMoney:
    """Payment behaviour of the household currently living in a premises."""

    rng: random.Random
    out: Output
    end: int
    ten: Tenancy
    wallet: Wallet
    money: WalletRules
    policy: str
    pays: list[tuple[int, int, str, dict[str, Any]]]
    pay_no: int
    planned: bool
    scheduled: bool
    requests: int
    next_at: int

    def _later(self, t: int, low: int, high: int) -> int:
        """A time ``low``–``high`` s after ``t`` moved into waking hours, with odd seconds."""
        at = t + self.rng.randint(low, high)
        hour = seconds_of_day(at) // 3600
        if hour < 7:
            at += (7 - hour) * 3600
        elif hour >= 23:
            at += (31 - hour) * 3600
        return at - at % 60 + self.rng.randint(0, 59)

    def _plan_pay(self, t: int, kind: str, data: dict[str, Any]) -> None:
        if t < self.end and (self.ten.close_ts is None or t < self.ten.close_ts):
            self.pay_no += 1
            heapq.heappush(self.pays, (t, self.pay_no, kind, data))
            self.next_at = min(self.next_at, t)

    def _plan_topup(self, t: int, low: int, high: int) -> None:
        self.planned = True
        self._plan_pay(self._later(t, low, high), "topup", {})

    def _payment(self, t: int, kind: str, data: dict[str, Any], number: int) -> None:
        w, ten = self.wallet, self.ten
        before = w.available()
        payload: dict[str, Any]
        if kind == "redeem":
            points = min(w.points // 100 * 100, self.rng.choice((100, 200, 300, 500)))
            if points < 100:
                return
            w.redeem(points)
            payload = {
                "type": "redeem",
                "payment_id": f"R-{ten.account_id}-{number}",
                "account_id": ten.account_id,
                "points": points,
                "ts": self.out.ts(t),
            }
            self.out.fact("redeem", ten.account_id)
        else:
            amount = data.get("amount") or self._amount()
            channel = data.get("channel") or self._channel()
            self.out.channels.add(channel)
            rebate = w.top_up(amount, channel, t, data.get("request_at"))
            payload = {
                "type": "topup",
                "payment_id": f"P-{ten.account_id}-{number}",
                "account_id": ten.account_id,
                "amount": money_text(amount),
                "channel": channel,
                "ts": self.out.ts(t),
            }
            if "request_at" in data:
                trigger = self.out.ts(data["request_at"])
                payload["request_id"] = f"autotopup:{ten.account_id}:{trigger}"
                self.out.fact("auto_topup_answered", ten.account_id)
            else:
                self.planned = False
            self.out.fact(f"channel:{channel}", ten.account_id)
            if rebate:
                self.out.fact("rebate", ten.account_id)
        self.out.payment(t, payload)
        self._react(t, w.check(t, before, credit=True))

    def _amount(self) -> int:
        """A top-up amount in fen that leaves the household comfortably in credit."""
        need = max(-self.wallet.available(), 0) // UNITS_PER_FEN + 5000
        if self.ten.role == "rebate":
            amount = self.rng.choice((10, 12, 20)) * self.money.rebate_minimum() // 10
        else:
            amount = self.rng.choice((50, 100, 100, 100, 150, 200, 200, 300, 500)) * 100
        return max(amount, -(-need // 5000) * 5000)

    def _channel(self) -> str:
        """A payment channel; until every channel has been seen once, an unused one."""
        rebate_channels = self.money.rebate_channels()
        names = rebate_channels if self.ten.role == "rebate" else tuple(CHANNEL_WEIGHTS)
        unused = [name for name in names if name not in self.out.channels]
        if unused:
            return unused[0]
        if self.ten.role == "rebate":
            return self.rng.choice(rebate_channels)
        return self.rng.choices(names, weights=list(CHANNEL_WEIGHTS.values()))[0]

    def _react(self, t: int, actions: list[str]) -> None:
        """Follow the engine's decisions, then let the household act on its balance."""
        ten, w = self.ten, self.wallet
        for action in actions:
            if action == "request":
                self.requests += 1
                self.out.fact("auto_topup_request", ten.account_id)
                if ten.bank_fails_once and self.requests == 1:
                    self.out.fact("auto_topup_unanswered", ten.account_id)
                else:
                    self._plan_pay(
                        self._later(t, 3600, 8 * 3600),
                        "topup",
                        {"amount": w.auto_fen, "channel": "bank", "request_at": t},
                    )
            elif action == "scheduled":
                self.scheduled = True
                self.out.fact("disconnect_scheduled", ten.account_id)
            elif action == "cut":
                name = "after_schedule" if self.scheduled else "in_window"
                self.out.fact(f"disconnected_{name}", ten.account_id)
                self.scheduled = False
                if self.policy == "wait_cut" or not self.planned:
                    delay = (10, 30) if ten.role == "tamper" else (2, 14)
                    self.policy = "after_cut"
                    self._plan_topup(t, delay[0] * 3600, delay[1] * 3600)
            elif action == "reconnect":
                self.out.fact("reconnected", ten.account_id)
                self.policy, ten.trigger_fen = "steady", min(ten.trigger_fen, 2000)
        available = w.available()
        if available < 0:
            self.out.fact("arrears", ten.account_id)
            if self.policy == "on_arrears" and not self.planned:
                self.policy = "steady"
                self._plan_topup(t, 3600, 8 * 3600)
        low = available < ten.trigger_fen * UNITS_PER_FEN
        if self.policy == "steady" and not self.planned and low:
            self._plan_topup(t, 1800, 18 * 3600)
