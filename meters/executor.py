"""Applies meter commands to relay coils and reports the outcome (SPEC S7, S13).

A ``disconnect`` switches the relay coil off, a ``reconnect`` on; the coil is read back to
confirm. The outcome ``{command_id, meter_id, ok, ts, error?}`` goes to
the ``meter-command-results`` topic. A meter that does not answer is retried with backoff and
then reported as failed. Applying a command_id again is harmless: successful ids are
remembered, and a repeat only re-confirms the coil (rewriting it only if it drifted), or, once
a newer command has been applied to that meter, returns the remembered outcome untouched.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from meters.clock import SimClock
from meters.modbus import ModbusClient, ModbusError
from meters.poller import Publisher
from meters.registers import MeterEntry

ACTIONS = {"disconnect": False, "reconnect": True}  # the coil state each action asks for
REMEMBERED = 100_000


class CommandExecutor:
    """Switches relays for meter commands; one command at a time per meter."""

    def __init__(
        self,
        meters: Iterable[MeterEntry],
        client: ModbusClient,
        publisher: Publisher | None = None,
        *,
        topic: str | None = None,
        clock: SimClock | None = None,
        attempts: int = 4,
        backoff: float = 0.2,
    ) -> None:
        self.meters = {meter.meter_id: meter for meter in meters}
        self.client = client
        if publisher is not None and not topic:
            raise ValueError("a publisher needs the logical topic of the results")
        self.publisher = publisher
        self.topic = topic or ""
        self.clock = clock or SimClock()
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.applied: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._latest: dict[str, str] = {}  # meter_id → command_id last applied
        self._locks: dict[str, asyncio.Lock] = {}

    async def apply(self, command: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one meter command; return (and publish) its outcome."""
        command_id = command.get("command_id")
        meter_id = command.get("meter_id")
        action = command.get("action")
        if not isinstance(command_id, str) or not command_id or not isinstance(meter_id, str):
            return self._finish(str(command_id or ""), str(meter_id or ""), "malformed")
        if action not in ACTIONS:
            return self._finish(command_id, meter_id, "malformed", f"unknown action {action!r}")
        meter = self.meters.get(meter_id)
        if meter is None:
            return self._finish(command_id, meter_id, "unknown_meter")
        if meter.relay is None:
            return self._finish(command_id, meter_id, "no_relay")
        lock = self._locks.setdefault(meter_id, asyncio.Lock())
        async with lock:
            known = self.applied.get(command_id)
            if known is not None and self._latest.get(meter_id) != command_id:
                return self._publish(known)  # superseded: touching the relay would undo newer
            return await self._switch(command_id, meter, ACTIONS[action], confirm=bool(known))

    async def _switch(
        self, command_id: str, meter: MeterEntry, closed: bool, *, confirm: bool
    ) -> dict[str, Any]:
        """Write the coil (unless only confirming and it is right) and read it back."""
        error, detail = "relay_mismatch", ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                if not (confirm and await self.client.read_relay(meter) == closed):
                    await self.client.write_relay(meter, closed)
                    if await self.client.read_relay(meter) != closed:
                        error, detail = "relay_mismatch", "coil reads back the other state"
                        continue
            except ModbusError as err:
                error, detail = err.kind, err.detail
                continue
            result = self._finish(command_id, meter.meter_id, None)
            self.applied[command_id] = result
            self.applied.move_to_end(command_id)
            while len(self.applied) > REMEMBERED:
                self.applied.popitem(last=False)
            self._latest[meter.meter_id] = command_id
            return result
        return self._finish(command_id, meter.meter_id, error, detail)

    def _finish(
        self, command_id: str, meter_id: str, error: str | None, detail: str = ""
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "command_id": command_id,
            "meter_id": meter_id,
            "ok": error is None,
            "ts": self.clock.now().isoformat(timespec="milliseconds"),
        }
        if error is not None:
            result["error"] = error
            if detail:
                result["detail"] = detail
        return self._publish(result)

    def _publish(self, result: dict[str, Any]) -> dict[str, Any]:
        if self.publisher is not None:
            self.publisher.publish(self.topic, result["meter_id"], result)
            self.publisher.flush()
        return result
