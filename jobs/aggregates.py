"""The batch rater's input pre-aggregated in ClickHouse: merged quarter hours, raw spans, bases.

Almost every span between consecutive readings is a regular quarter hour that no plan cuts.
Tier quantities and costs are additive over consecutive parts of one account in the same
calendar year under the same plan and period, so ClickHouse sums those spans per account ×
local day × segment of the day (the day cut at every period start of every plan of the run,
and at any extra clock asked for) and hands each sum to `jobs.rating.rate` as one part whose
start is the first span's start. Everything else goes the polars path (`cut_points`, `parts`)
as raw spans: spans crossing a local midnight or strictly containing a segment clock, spans
before the account's ``open``, every span of an account with more than one plan-timeline
entry, spans on a day whose UTC offset changes before they end (a precaution), and every
span of an account whose meter had a ``meter_regression`` rebase (rebuilt in polars by
`jobs.rater.spans` from its readings). In a zone that skips a local midnight in the year
(no cut there), everything goes the polars path.

The parts `rate` sees for one account in one segment of a day all have the same plan,
year and period under every plan, and no other part of the account starts inside their
span of time, so they fill one contiguous stretch of the year's cumulative at one price
per tier: summing them (or ordering two meters' spans differently after a replacement)
changes no day's kWh, tiers, cost or ytd. A raw span keeps its own cuts per plan: one that
contains another plan's clock but none of its own plan's is still one part for its plan.

The calendar-year cumulative at a local midnight does not depend on the plan (a midnight is
always a cut and cumulative rounding telescopes), so a window of days is rated from a base:
the opening ``ytd_kwh`` plus every part of the year before the window (summed in ClickHouse
from readings, or the stream's ``ytd_kwh`` of the day before the window).
Energy in thousandths of a kWh, instants in epoch microseconds, integers only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from jobs import tables
from jobs.rater import US_PER_DAY, PlanData, _clock_us, opening_ytd, spans
from jobs.rating import BY_SPAN, cut_points, parts, rate
from store.clickhouse import ClickHouseStore

_I64 = pl.Int64()
_IN_RANGE = "account_id BETWEEN {first:String} AND {last:String}"


@dataclass(frozen=True)
class Window:
    """Local days ``first`` to ``after`` (excluded) in ``zone``, as epoch µs from midnight."""

    first: date
    after: date
    zone: str

    @property
    def start(self) -> int:
        """Epoch µs of the first day's local midnight."""
        return tables.midnight_us(self.first, self.zone)

    @property
    def end(self) -> int:
        """Epoch µs of the local midnight that ends the window."""
        return tables.midnight_us(self.after, self.zone)

    @property
    def new_year(self) -> int:
        """Epoch µs of 1 January's local midnight in the first day's year."""
        return tables.midnight_us(self.first.replace(month=1, day=1), self.zone)


@dataclass(frozen=True)
class Aggregated:
    """What the rater needs for a window: merged parts, raw spans, year bases at its start.

    ``merged``: account_id, start, end, milli (whole, uncut spans summed; inside the window).
    ``raw``: span, account_id, t0, t1, delta (spans overlapping the window, for the polars
    path; their parts before the window's start or from its end on are dropped after cutting).
    ``bases``: account_id, year, base (the opening ``ytd_kwh`` and, for the window's first
    year, every part of that year before the window).
    """

    window: Window
    merged: pl.DataFrame
    raw: pl.DataFrame
    bases: pl.DataFrame

    def only(self, accounts: pl.DataFrame) -> Aggregated:
        """The same restricted to the ``account_id`` values of ``accounts``."""
        return Aggregated(
            self.window,
            self.merged.join(accounts, on="account_id", how="semi"),
            self.raw.join(accounts, on="account_id", how="semi"),
            self.bases.join(accounts, on="account_id", how="semi"),
        )


def segment_clocks(plans: Iterable[PlanData], extra: Iterable[int] = ()) -> list[int]:
    """Every period start clock (µs after local midnight) of ``plans``, with ``extra``, sorted."""
    found = {_clock_us(start) for plan in plans for start, _ in plan.periods}
    return sorted(c for c in found | set(extra) if 0 < c < US_PER_DAY)


def _midnights_exist(window: Window) -> bool:
    """True when every local midnight from 1 January to the window's end is a real instant."""
    zone = ZoneInfo(window.zone)
    day = window.first.replace(month=1, day=1)
    while day <= window.after:
        local = datetime.combine(day, time(0), tzinfo=zone)
        back = local.astimezone(ZoneInfo("UTC")).astimezone(zone)
        if back.replace(tzinfo=None) != local.replace(tzinfo=None):
            return False
        day += timedelta(days=1)
    return True


def _steady_offset(window: Window) -> int | None:
    """The zone's UTC offset in µs when it is one from 1 January to the window's end, else None.

    Checked at every hour: a zone's offset changes on the hour or within it, never twice.
    """
    zone = ZoneInfo(window.zone)
    hour = timedelta(hours=1)
    moment = datetime.fromtimestamp(window.new_year / 1_000_000, tz=ZoneInfo("UTC"))
    offset = moment.astimezone(zone).utcoffset()
    end = datetime.fromtimestamp(window.end / 1_000_000, tz=ZoneInfo("UTC"))
    while moment <= end:
        if moment.astimezone(zone).utcoffset() != offset:
            return None
        moment += hour
    return None if offset is None else (offset // timedelta(microseconds=1))


def _local(column: str, zone: str) -> str:
    return f"fromUnixTimestamp64Micro({column}, '{zone}')"


def _span_sql(
    zone: str, clocks: Sequence[int], merge: bool, range_filter: str, meter_filter: str
) -> str:
    """Spans of the accounts without rebases, classified and grouped (see `aggregated`)."""
    x0, x1 = _local("t0", zone), _local("t1", zone)
    midnight = f"toInt64(toUnixTimestamp(toStartOfDay({x0}))) * 1000000"
    listed = f"[{', '.join(map(str, clocks)) or '0'}]"
    segment = f"arrayCount(c -> c <= clock0, {listed})"
    inside = f"arrayExists(c -> c > clock0 AND c < clock0 + (t1 - t0), {listed})"
    merged = (
        "NOT (several OR t0 < since"
        f" OR toDate({x0}) != toDate({_local('t1 - 1', zone)})"
        f" OR timeZoneOffset({x0}) != timeZoneOffset(toStartOfDay({x0}))"
        f" OR timeZoneOffset({x1}) != timeZoneOffset({x0})"
        f" OR {inside})"
    )
    if not merge:
        merged = "0"
    return f"""
WITH
    points AS (
        SELECT account_id, meter_id, toUnixTimestamp64Micro(ts) AS us,
            toInt64(energy_kwh * 1000) AS milli
        FROM readings FINAL
        WHERE {meter_filter}{range_filter} AND NOT has({{rebased:Array(String)}}, account_id)
            AND ts >= fromUnixTimestamp64Micro({{history:Int64}})
    ),
    series AS (
        SELECT account_id, meter_id, lagInFrame(toNullable(us)) OVER w AS prev_us, us AS t1,
            milli - lagInFrame(milli) OVER w AS rise
        FROM points
        WINDOW w AS (PARTITION BY account_id, meter_id ORDER BY us
            ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
    ),
    timelines AS (
        SELECT account_id, count() AS entries, min(toUnixTimestamp64Micro(ts)) AS opened
        FROM account_events FINAL
        WHERE type IN ('open', 'change_plan') AND {range_filter}
        GROUP BY account_id
    ),
    classified AS (
        SELECT account_id, meter_id, assumeNotNull(prev_us) AS t0, t1,
            if(rise >= 0, rise, rise + {{register_max:Int64}}) AS delta,
            toInt64(toUnixTimestamp64Micro({x0})) - {midnight} AS clock0,
            coalesce(entries, 0) != 1 AS several,
            coalesce(opened, 0) AS since
        FROM series
        LEFT JOIN timelines USING (account_id)
        WHERE prev_us IS NOT NULL AND t1 > {{new_year:Int64}} AND prev_us < {{end:Int64}}
    ),
    kinded AS (
        SELECT *, multiIf(t1 <= {{start:Int64}}, 0, {merged}, 2, 1) AS kind,
            toInt128(delta) AS d, toInt128(t1 - t0) AS total,
            greatest(t0, {{new_year:Int64}}) AS lo, least(t1, {{start:Int64}}) AS hi,
            multiIf(kind = 1, t0, kind = 2, toInt64(toDate({x0})), 0) AS part,
            if(kind = 2, {segment}, 0) AS segment
        FROM classified
    )
SELECT account_id, kind, min(t0) AS first, max(t1) AS last, sum(delta) AS milli,
    toInt64(sum(
        if(hi > lo,
            if(hi >= t1, d, intDiv(2 * d * toInt128(hi - t0) + total, 2 * total))
            - if(lo <= t0, toInt128(0), intDiv(2 * d * toInt128(lo - t0) + total, 2 * total)),
            toInt128(0))
    )) AS before
FROM kinded
GROUP BY account_id, meter_id, kind, part, segment
"""


def _cumulative(frame: pl.DataFrame, at: pl.Expr) -> pl.Expr:
    """Cumulative-rounded energy of each span (t0, t1, delta) up to instant ``at`` (S4)."""
    wide = pl.Int128
    d, total = pl.col("delta").cast(wide), (pl.col("t1") - pl.col("t0")).cast(wide)
    inner = (2 * d * (at - pl.col("t0")).cast(wide) + total) // (2 * total)
    return (
        pl.when(at >= pl.col("t1"))
        .then(d)
        .when(at <= pl.col("t0"))
        .then(pl.lit(0, wide))
        .otherwise(inner)
    )


def _before(span_frame: pl.DataFrame, new_year: int, start: int) -> pl.DataFrame:
    """(account_id, before): each account's parts in [new_year, start), summed."""
    lo = pl.max_horizontal(pl.col("t0"), pl.lit(new_year))
    hi = pl.min_horizontal(pl.col("t1"), pl.lit(start))
    value = (
        pl.when(hi > lo)
        .then(_cumulative(span_frame, hi) - _cumulative(span_frame, lo))
        .otherwise(pl.lit(0, pl.Int128))
    )
    return span_frame.group_by("account_id").agg(before=value.sum().cast(pl.Int64))


def aggregated(
    store: ClickHouseStore,
    window: Window,
    plans: Iterable[PlanData],
    rebases: pl.DataFrame,
    opening: pl.DataFrame,
    register_max_milli: int,
    accounts: tables.AccountRange | None = None,
    extra_clocks: Iterable[int] = (),
) -> Aggregated:
    """The merged parts, raw spans and year bases of ``accounts`` (all when None) for ``window``.

    ``plans`` are every plan the result will be rated under (their period starts cut the
    days into segments); ``extra_clocks`` further local clocks (µs) no merged part may cross.
    ``rebases`` are the ``meter_regression`` rebases (`tables.regressions`), ``opening`` the
    opening ``ytd_kwh`` bases (`jobs.rater.opening_ytd`).
    """
    _check_zone(window.zone)
    params = _parameters(window, register_max_milli)
    if accounts is None:
        selection = _Selection("1", "", params)
    else:
        selection = _Selection(
            _IN_RANGE,
            f"meter_id IN (SELECT meter_id FROM account_events WHERE {_IN_RANGE}) AND ",
            {**params, "first": accounts[0], "last": accounts[1]},
        )
    rebased = _rebased_accounts(store, rebases, selection.accounts, selection.params)
    merged, raw, before = _from_readings(
        store,
        window,
        segment_clocks(plans, extra_clocks),
        rebases,
        rebased,
        register_max_milli,
        selection,
    )
    if accounts is not None:
        # Only the range's own accounts: every pass over the bases then follows the range.
        opening = opening.filter(
            pl.col("account_id").is_between(pl.lit(accounts[0]), pl.lit(accounts[1]))
        )
    return _assembled(window, merged, raw, before, opening)


def from_intervals(
    store: ClickHouseStore,
    window: Window,
    plans: Iterable[PlanData],
    rebases: pl.DataFrame,
    events: pl.DataFrame,
    register_max_milli: int,
) -> Aggregated:
    """What `aggregated` gives for every account, read mostly from the stream's ``intervals``.

    The same days, tiers and money wherever there is consumption: a span of no energy has no
    rated part, so a day with none has no row here where `aggregated` gives it one of zeros.

    The stream cuts every span at each local midnight, at its own plan's period starts and at
    plan changes, with cumulative rounding (SPEC S4), so the energy of any run of a span's
    consecutive parts is what the rater's cut of that span at the run's ends gives. Where no
    cut of ``plans`` falls strictly inside any part of an account, its parts stand in for its
    spans: summed per local day × segment as merged spans are (one plan all along), or each
    as a raw span of its own (plan changes). Only the window's parts are read: an account's
    base is the stream's ``ytd_kwh`` of the day before the window (`_year_before`).
    ``intervals`` has no text to parse and no window function to run.

    A ``meter_regression`` rebase is a gap in the parts: the stream starts the series again
    from the rejected reading without a charge, as the rater does (S14.3).

    Read from ``readings`` as `aggregated` does, through their meters: the accounts with a
    part that a cut of ``plans`` falls inside (a flat account's gap across 08:00, rated on
    TOU), or a part in the window before their ``open``, or no ``open`` (a precaution: a
    reading is its meter's owner's at its ts, SPEC S14.3, so the stream rates no part before
    an ``open``). In a zone whose UTC offset changes in the year, everything is read there.
    ``events`` are the applied account events (`tables.account_events`).
    """
    zone = window.zone
    _check_zone(zone)
    opening = opening_ytd(events, zone)
    offset = _steady_offset(window)
    if offset is None:
        return aggregated(store, window, plans, rebases, opening, register_max_milli)
    clocks = segment_clocks(plans)
    params = _parameters(window, register_max_milli)
    timelines = (
        events.filter(pl.col("type").is_in(["open", "change_plan"]))
        .group_by("account_id")
        .agg(entries=pl.len(), opened=pl.col(tables.US).min())
    )
    several = timelines.filter(pl.col("entries") > 1).get_column("account_id").sort().to_list()
    found = pl.DataFrame(
        store.query_arrow(_parts_sql(clocks), {**params, "offset": offset, "several": several})
    ).cast(
        {
            "account_id": pl.String(),
            **dict.fromkeys(("first", "last", "milli"), _I64),
            "odd": pl.Boolean(),
        }
    )
    listed = (
        found.group_by("account_id")
        .agg(earliest=pl.col("first").min(), odd=pl.col("odd").any())
        .join(timelines, on="account_id", how="left")
        .filter(
            pl.col("odd") | pl.col("opened").is_null() | (pl.col("earliest") < pl.col("opened"))
        )
        .get_column("account_id")
        .sort()
        .to_list()
    )
    found = found.filter(~pl.col("account_id").is_in(listed))
    before = _year_before(store, window, found.get_column("account_id").unique(), opening)
    apart = pl.col("account_id").is_in(several)
    merged = found.filter(~apart).select("account_id", start="first", end="last", milli="milli")
    raw = found.filter(apart).select("account_id", t0="first", t1="last", delta="milli")
    if listed:
        only = "has({only:Array(String)}, account_id)"
        selection = _Selection(
            only,
            f"meter_id IN (SELECT meter_id FROM account_events WHERE {only}) AND ",
            {**params, "only": listed},
        )
        rebased = _rebased_accounts(store, rebases, selection.accounts, selection.params)
        more_merged, more_raw, more_before = _from_readings(
            store, window, clocks, rebases, rebased, register_max_milli, selection
        )
        merged = pl.concat([merged, more_merged])
        raw = pl.concat([raw, more_raw])
        before = pl.concat([before, more_before])
    return _assembled(window, merged, raw, before, opening)


def _year_before(
    store: ClickHouseStore, window: Window, accounts: pl.Series, opening: pl.DataFrame
) -> pl.DataFrame:
    """(account_id, before): every part of ``accounts`` in the year before the window, summed.

    The stream's ``ytd_kwh`` of the day before the window is the year's opening base plus
    every part of the year up to that day's end (SPEC S14: a day closes before any later part
    is rated), so it gives the sum without reading the year's parts. An account whose day
    before has not closed (no row) has its parts summed from ``intervals``, a slice of such
    accounts at a time (their ids bound to the query).
    """
    schema = pl.Schema({"account_id": pl.String(), "before": _I64})
    eve = window.first - timedelta(days=1)
    if eve.year != window.first.year or not accounts.len():
        return pl.DataFrame(schema=schema)
    wanted = accounts.to_frame("account_id")
    ytd = pl.DataFrame(
        store.query_arrow(
            "SELECT account_id, toInt64(ytd_kwh * 1000) AS ytd FROM daily_usage FINAL"
            " WHERE day = {eve:Date}",
            {"eve": eve},
        )
    ).cast({"account_id": pl.String(), "ytd": _I64})
    base = opening.filter(pl.col("year") == window.first.year).select("account_id", "base")
    closed = (
        ytd.join(wanted, on="account_id", how="semi")
        .join(base, on="account_id", how="left")
        .select("account_id", before=pl.col("ytd") - pl.col("base").fill_null(0))
    )
    unclosed = wanted.join(ytd, on="account_id", how="anti").get_column("account_id").sort()
    summed = tables.of_accounts(
        store,
        "SELECT account_id, sum(toInt64(kwh * 1000)) AS before FROM intervals FINAL"
        " WHERE account_id IN {accounts:Array(String)}"
        " AND `start` >= fromUnixTimestamp64Micro({new_year:Int64})"
        " AND `start` < fromUnixTimestamp64Micro({start:Int64}) GROUP BY account_id",
        {"account_id": pl.String(), "before": _I64},
        {"new_year": window.new_year, "start": window.start},
        unclosed.to_list(),
    )
    return pl.concat([closed, summed])


@dataclass(frozen=True)
class _Selection:
    """Which accounts a readings query reads: their condition, their meters', the parameters."""

    accounts: str
    meters: str
    params: dict[str, object]


def _check_zone(zone: str) -> None:
    if not tables.ZONE_NAME.fullmatch(zone):
        raise ValueError(f"not a zone name: {zone!r}")


def _parameters(window: Window, register_max_milli: int) -> dict[str, object]:
    return {
        "new_year": window.new_year,
        "start": window.start,
        "end": window.end,
        "register_max": register_max_milli,
        "rebased": [],
    }


def _parts_sql(clocks: Sequence[int]) -> str:
    """The rated parts of the window, summed as `from_intervals` uses them.

    Local days and clocks from the zone's one UTC offset (``offset``, µs). The parts of an
    account with ``several`` plan entries stay apart; every other account's are summed per
    local day and segment. ``odd``: a clock falls strictly inside a part, or a part crosses
    a local midnight (the stream cuts there; a precaution).
    """
    # Comparisons with each clock written out: a lambda over an array costs a third more here.
    segment = " + ".join(f"(clock0 >= {int(c)})" for c in clocks) or "0"
    inside = " OR ".join(f"({int(c)} > clock0 AND {int(c)} < clock0 + (e - s))" for c in clocks)
    return f"""
SELECT account_id, meter_id, min(s) AS first, max(e) AS last, sum(milli) AS milli,
    max(odd) AS odd
FROM (
    SELECT account_id, meter_id, toUnixTimestamp64Micro(`start`) AS s,
        toUnixTimestamp64Micro(`end`) AS e, toInt64(kwh * 1000) AS milli,
        s + {{offset:Int64}} AS local_us,
        local_us % {US_PER_DAY} AS clock0,
        account_id IN {{several:Array(String)}} AS apart,
        if(apart, s, toInt64(intDiv(local_us, {US_PER_DAY}))) AS key1,
        if(apart, e, toInt64({segment})) AS key2,
        clock0 + (e - s) > {US_PER_DAY} OR {inside or "0"} AS odd
    FROM intervals FINAL
    WHERE `start` >= fromUnixTimestamp64Micro({{start:Int64}})
        AND `start` < fromUnixTimestamp64Micro({{end:Int64}})
)
GROUP BY account_id, meter_id, key1, key2
"""


def _from_readings(  # noqa: PLR0913 - the window, its cuts, the rebases and the selection
    store: ClickHouseStore,
    window: Window,
    clocks: Sequence[int],
    rebases: pl.DataFrame,
    rebased: list[str],
    register_max_milli: int,
    selection: _Selection,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(merged, raw, before) of the selected accounts, from their ``readings``."""
    sql = _span_sql(
        window.zone, clocks, _midnights_exist(window), selection.accounts, selection.meters
    )
    names = ("kind", "first", "last", "milli", "before")
    params = {
        **selection.params,
        "rebased": rebased,
        "history": _history_start(store, window, selection),
    }
    rows = pl.DataFrame(store.query_arrow(sql, params)).cast(
        {"account_id": pl.String(), **dict.fromkeys(names, _I64)}
    )
    merged = rows.filter(pl.col("kind") == 2).select(
        "account_id", start="first", end="last", milli="milli"
    )
    raw = rows.filter(pl.col("kind") == 1).select(
        "account_id", t0="first", t1="last", delta="milli"
    )
    before = rows.group_by("account_id").agg(pl.col("before").sum())
    if rebased:
        readings = _readings_of(store, rebased)
        series = spans(readings, rebases, register_max_milli).filter(
            (pl.col("t1") > window.new_year) & (pl.col("t0") < window.end)
        )
        raw = pl.concat(
            [
                raw,
                series.filter(pl.col("t1") > window.start).select(
                    "account_id", "t0", "t1", "delta"
                ),
            ]
        )
        before = pl.concat([before, _before(series, window.new_year, window.start)])
    return merged, raw, before


def _history_start(store: ClickHouseStore, window: Window, selection: _Selection) -> int:
    """Epoch µs from which the selected readings hold every span that reaches into the year.

    The earliest of the selected series' last readings at or before 1 January's midnight (0
    when none has one): a span before it ends before the year, so the spans query reads the
    years before its window no further back than that, not the meters' whole history.
    """
    _, rows = store.query(
        "SELECT min(last) FROM (SELECT max(toUnixTimestamp64Micro(ts)) AS last FROM readings"
        f" WHERE {selection.meters}{selection.accounts}"
        " AND ts <= fromUnixTimestamp64Micro({new_year:Int64}) GROUP BY account_id, meter_id)",
        {**selection.params, "new_year": window.new_year},
    )
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _assembled(
    window: Window,
    merged: pl.DataFrame,
    raw: pl.DataFrame,
    before: pl.DataFrame,
    opening: pl.DataFrame,
) -> Aggregated:
    """The `Aggregated` of merged parts, raw spans and the parts before the window."""
    raw = (
        raw.sort("account_id", "t0")
        .with_row_index(BY_SPAN)
        .with_columns(pl.col(BY_SPAN).cast(pl.UInt32))
    )
    bases = (
        opening.join(
            before.filter(pl.col("before") != 0).with_columns(
                year=pl.lit(window.first.year, pl.Int32)
            ),
            on=["account_id", "year"],
            how="full",
            coalesce=True,
        )
        .with_columns(
            base=pl.col("base").fill_null(0) + pl.col("before").fill_null(0),
        )
        .select("account_id", "year", "base")
    )
    return Aggregated(window, merged, raw, bases)


def _rebased_accounts(
    store: ClickHouseStore, rebases: pl.DataFrame, range_filter: str, params: Mapping[str, object]
) -> list[str]:
    """The accounts of the range that read a meter with a ``meter_regression`` rebase."""
    if not rebases.height:
        return []
    meters = rebases["meter_id"].unique().sort().to_list()
    _, rows = store.query(
        "SELECT DISTINCT account_id FROM readings FINAL"
        f" WHERE {range_filter} AND has({{meters:Array(String)}}, meter_id) ORDER BY account_id",
        {**params, "meters": meters},
    )
    return [r[0] for r in rows]


def _readings_of(store: ClickHouseStore, accounts: list[str]) -> pl.DataFrame:
    """Every reading of ``accounts``, read through the meters their events name.

    An account's readings are on the meters of its ``open`` and ``replace_meter`` events
    (the rule `tables.readings` reads a range by), and ``meter_id`` leads the table's key:
    ClickHouse reads those meters' granules instead of every reading's ``account_id``.
    """
    sql = (
        "SELECT account_id, meter_id, toUnixTimestamp64Micro(ts) AS us,"
        " toInt64(energy_kwh * 1000) AS milli FROM readings FINAL"
        " WHERE meter_id IN (SELECT meter_id FROM account_events"
        " WHERE has({accounts:Array(String)}, account_id))"
        " AND has({accounts:Array(String)}, account_id)"
    )
    frame = pl.DataFrame(store.query_arrow(sql, {"accounts": accounts}))
    return frame.cast(
        {"account_id": pl.String(), "meter_id": pl.String(), "us": _I64, "milli": _I64}
    )


def rated(found: Aggregated, timeline: pl.DataFrame, plans: Mapping[str, PlanData]) -> pl.DataFrame:
    """Every part of the window rated under ``plans`` (`jobs.rating.rate`'s columns)."""
    zone, start, end = found.window.zone, found.window.start, found.window.end
    cuts = cut_points(found.raw, timeline, plans, zone)
    cut = parts(found.raw, cuts).filter((pl.col("start") >= start) & (pl.col("start") < end))
    return rate(pl.concat([found.merged, cut]), timeline, found.bases, plans, zone)
