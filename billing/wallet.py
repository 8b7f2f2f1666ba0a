"""A points wallet: lots by the calendar year they were earned, oldest spent first (S14.18)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class PointsWallet:
    """Point lots, oldest year first; redemption takes the oldest lot first."""

    lots: dict[int, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Points held across all lots."""
        return sum(self.lots.values())

    def earn(self, year: int, points: int) -> None:
        """Add points to the lot of ``year``."""
        if points > 0:
            self.lots[year] = self.lots.get(year, 0) + points

    def spend(self, points: int) -> None:
        """Take ``points`` from the oldest lots first (caller checks the total)."""
        if points > self.total:
            raise ValueError("not enough points")
        for year in sorted(self.lots):
            take = min(points, self.lots[year])
            self.lots[year] -= take
            points -= take
            if not self.lots[year]:
                del self.lots[year]
            if not points:
                return

    def held_through(self, year: int) -> int:
        """Points of lots earned in ``year`` or before."""
        return sum(p for y, p in self.lots.items() if y <= year)

    def expire_through(self, year: int) -> int:
        """Drop every lot of ``year`` or before; return how many points expired."""
        expired = self.held_through(year)
        for lot_year in [y for y in self.lots if y <= year]:
            del self.lots[lot_year]
        return expired
