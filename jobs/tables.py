"""ClickHouse tables read into polars frames for the batch jobs (SPEC S15).

Money is read as Int64 fen, energy as Int64 thousandths of a kWh (``milli``), timestamps as
Int64 microseconds since the epoch turned into zone-aware datetimes: exact all the way, no
float ever holds an amount.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import polars as pl

from jobs.money import month_after, month_before
from store.clickhouse import ClickHouseStore

US = "us"


def _frame(
    store: ClickHouseStore,
    sql: str,
    schema: dict[str, pl.DataType],
    parameters: dict[str, object] | None = None,
) -> pl.DataFrame:
    return pl.DataFrame(store.query_arrow(sql, parameters)).cast(schema)  # type: ignore[arg-type]


def local_ts(column: str | pl.Expr, zone: str) -> pl.Expr:
    """Epoch microseconds in ``column`` as a datetime in the local ``zone``."""
    return (
        pl.from_epoch(pl.col(column) if isinstance(column, str) else column, time_unit="us")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(zone)
    )


def with_local(frame: pl.DataFrame, column: str, zone: str, name: str = "local") -> pl.DataFrame:
    """``frame`` with ``column`` (epoch µs) as a local datetime ``name``, in the same order.

    The zone's rules run once per distinct instant: meters read on a shared quarter-hour
    clock, so millions of rows share a few thousand instants.
    """
    instants = frame.select(pl.col(column).unique())
    local = instants.with_columns(local_ts(column, zone).alias(name))
    return frame.join(local, on=column, how="left", maintain_order="left")


_STR, _I64 = pl.String(), pl.Int64()
ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-/]{1,64}")
"""What a zone name written into a query may contain (the zone comes from the settings)."""


AccountRange = tuple[str, str]
"""The first and last account id of a slice of the accounts (both included)."""

_IN_RANGE = "account_id BETWEEN {first:String} AND {last:String}"


def _range_parameters(accounts: AccountRange | None) -> dict[str, object] | None:
    return None if accounts is None else {"first": accounts[0], "last": accounts[1]}


def readings(
    store: ClickHouseStore, zone: str, accounts: AccountRange | None = None
) -> pl.DataFrame:
    """Accepted readings: account_id, meter_id, us, milli (of a range of accounts if given).

    A range reads the meters its accounts ever had (the table's key), then their readings.
    """
    where = ""
    if accounts is not None:
        where = (
            " WHERE meter_id IN (SELECT meter_id FROM account_events"
            f" WHERE {_IN_RANGE}) AND {_IN_RANGE}"
        )
    sql = (
        "SELECT account_id, meter_id, toUnixTimestamp64Micro(ts) AS us,"
        f" toInt64(energy_kwh * 1000) AS milli FROM readings FINAL{where}"
    )
    schema = {"account_id": _STR, "meter_id": _STR, US: _I64, "milli": _I64}
    return _frame(store, sql, schema, _range_parameters(accounts))


def regressions(store: ClickHouseStore) -> pl.DataFrame:
    """Readings rejected as ``meter_regression``: they rebase the series (S14.3)."""
    _, rows = store.query(
        "SELECT payload FROM rejected FINAL"
        " WHERE topic = 'wattpay.readings' AND reason = 'meter_regression'"
    )
    out: dict[str, list[object]] = {"meter_id": [], US: [], "milli": []}
    for (payload,) in rows:
        body = json.loads(payload)
        ts = datetime.fromisoformat(body["ts"])
        out["meter_id"].append(str(body["meter_id"]))
        out[US].append(_epoch_us(ts))
        out["milli"].append(int(Decimal(str(body["energy_kwh"])) * 1000))
    return pl.DataFrame(out, schema={"meter_id": _STR, US: _I64, "milli": _I64})


def midnight_us(day: date, zone: str) -> int:
    """Epoch microseconds of 00:00 local time on ``day``."""
    return _epoch_us(datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)))


def _epoch_us(ts: datetime) -> int:
    delta = ts - datetime.fromisoformat("1970-01-01T00:00:00+00:00")
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def account_events(store: ClickHouseStore) -> pl.DataFrame:
    """Applied account events: account_id, us, type, meter_id, plan, payload."""
    sql = (
        "SELECT account_id, toUnixTimestamp64Micro(ts) AS us, toString(type) AS type,"
        " meter_id, plan, payload FROM account_events FINAL"
    )
    schema = {
        "account_id": _STR,
        US: _I64,
        "type": _STR,
        "meter_id": _STR,
        "plan": _STR,
        "payload": _STR,
    }
    return _frame(store, sql, schema)


def daily_usage(
    store: ClickHouseStore,
    until: date | None = None,
    accounts: AccountRange | None = None,
    since: date | None = None,
) -> pl.DataFrame:
    """``daily_usage`` rows, energy in milli and money in fen (of a range of accounts if given).

    Days from ``since`` (when given) to before ``until`` (when given).
    """
    conditions = [f"day < toDate('{until.isoformat()}')"] if until else []
    if since is not None:
        conditions.append(f"day >= toDate('{since.isoformat()}')")
    if accounts is not None:
        conditions.append(_IN_RANGE)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    energy = ("kwh", "kwh_peak", "kwh_valley", "kwh_tier1", "kwh_tier2", "kwh_tier3", "ytd_kwh")
    picks = ", ".join(f"toInt64({c} * 1000) AS {c}" for c in energy)
    sql = (
        f"SELECT account_id, day, {picks}, toInt64(charge * 100) AS charge,"
        f" toInt64(closing_balance * 100) AS closing_balance FROM daily_usage FINAL{where}"
    )
    schema: dict[str, pl.DataType] = {"account_id": _STR, "day": pl.Date()}
    schema.update({c: _I64 for c in energy})
    schema.update({"charge": _I64, "closing_balance": _I64})
    return _frame(store, sql, schema, _range_parameters(accounts))


THIS_MONTH, PREVIOUS_MONTH, YEAR_AGO, EARLIER = 0, -1, -12, -99
"""The buckets a month's bill reads history in: the month itself, the one before, the same
month a year before, and every other month before it (`month_buckets`)."""


def month_firsts(month: date) -> dict[str, date]:
    """The first days that bound the buckets of ``month`` (each bucket up to the next)."""
    return {
        "year_ago": month_before(month, 12),
        "year_ago_end": month_before(month, 11),
        "previous": month_before(month),
        "start": month,
        "end": month_after(month),
    }


def month_bounds(month: date, zone: str) -> dict[str, int]:
    """Epoch µs of the local midnights that bound `month_buckets`' buckets of ``month``."""
    return {name: midnight_us(day, zone) for name, day in month_firsts(month).items()}


def _bucket_of(moment: str) -> str:
    """SQL: the bucket of an epoch-µs ``moment`` before the month's end (`month_bounds`)."""
    return (
        f"multiIf({moment} < {{year_ago:Int64}}, {EARLIER},"
        f" {moment} < {{year_ago_end:Int64}}, {YEAR_AGO},"
        f" {moment} < {{previous:Int64}}, {EARLIER},"
        f" {moment} < {{start:Int64}}, {PREVIOUS_MONTH}, {THIS_MONTH})"
    )


def month_buckets(
    store: ClickHouseStore,
    table: str,
    value: str,
    closing: tuple[str, ...],
    month: date,
    zone: str,
) -> pl.DataFrame:
    """Entries of ``table`` up to ``month``'s end summed per account × kind × bucket.

    account_id, kind, bucket, ``value`` (the sum), entries (their count). An entry's bill
    day is the local date of its ts, or of ts − 1 µs for the ``closing`` kinds (made by a
    day close, SPEC S15.1), so the month's bounds compare with the ts alone: the history is
    folded where it is kept, and only a few rows per account leave ClickHouse.
    """
    if table not in ("ledger", "points_ledger") or value not in ("amount", "points"):
        raise ValueError(f"not an entries table and value: {table!r}, {value!r}")
    picked = "toInt64(amount * 100)" if value == "amount" else "points"
    sql = (
        f"SELECT account_id, kind, {_bucket_of('moment')} AS bucket,"
        f" sum(picked) AS {value}, count() AS entries FROM ("
        f" SELECT account_id, toString(kind) AS kind, {picked} AS picked,"
        " toUnixTimestamp64Micro(ts) - has({closing:Array(String)}, kind) AS moment"
        f" FROM {table} FINAL) WHERE moment < {{end:Int64}}"
        " GROUP BY account_id, kind, bucket"
    )
    params = {**month_bounds(month, zone), "closing": list(closing)}
    schema = {"account_id": _STR, "kind": _STR, "bucket": _I64, value: _I64, "entries": _I64}
    return _frame(store, sql, schema, params)


def usage_before(store: ClickHouseStore, month: date) -> pl.DataFrame:
    """The energy (milli) of the month before ``month`` and of the same month a year before.

    account_id, bucket (`PREVIOUS_MONTH` or `YEAR_AGO`), kwh: one row per account and month
    with a ``daily_usage`` row in it.
    """
    sql = (
        f"SELECT account_id, if(day >= {{previous:Date}}, {PREVIOUS_MONTH}, {YEAR_AGO}) AS bucket,"
        " sum(toInt64(kwh * 1000)) AS kwh FROM daily_usage FINAL"
        " WHERE (day >= {year_ago:Date} AND day < {year_ago_end:Date})"
        " OR (day >= {previous:Date} AND day < {start:Date})"
        " GROUP BY account_id, bucket"
    )
    params: dict[str, object] = dict(month_firsts(month))
    return _frame(store, sql, {"account_id": _STR, "bucket": _I64, "kwh": _I64}, params)


ID_SLICE = 5_000
"""Account ids bound to one query at most (a query's parameters are sent with its text)."""


def of_accounts(
    store: ClickHouseStore,
    sql: str,
    schema: dict[str, pl.DataType],
    parameters: dict[str, object],
    accounts: Sequence[str],
) -> pl.DataFrame:
    """``sql`` run for `ID_SLICE` of ``accounts`` at a time (bound as ``{accounts}``), joined."""
    found = [
        _frame(store, sql, schema, {**parameters, "accounts": list(accounts[i : i + ID_SLICE])})
        for i in range(0, len(accounts), ID_SLICE)
    ]
    return pl.concat(found) if found else pl.DataFrame(schema=schema)


def last_ytd(store: ClickHouseStore, until: date, accounts: list[str]) -> pl.DataFrame:
    """account_id, ytd_kwh (milli) of each account's last ``daily_usage`` row before ``until``."""
    sql = (
        "SELECT account_id, argMax(toInt64(ytd_kwh * 1000), day) AS ytd_kwh"
        " FROM daily_usage FINAL WHERE account_id IN {accounts:Array(String)}"
        " AND day < {until:Date} GROUP BY account_id"
    )
    schema: dict[str, pl.DataType] = {"account_id": _STR, "ytd_kwh": _I64}
    return of_accounts(store, sql, schema, {"until": until}, accounts)


def days_with_usage(store: ClickHouseStore, first: date, last: date) -> int:
    """How many local days from ``first`` to ``last`` have a ``daily_usage`` row of anyone."""
    _, rows = store.query(
        "SELECT uniqExact(day) FROM daily_usage WHERE day BETWEEN {first:Date} AND {last:Date}",
        {"first": first, "last": last},
    )
    return int(rows[0][0]) if rows else 0


def accounts(store: ClickHouseStore) -> pl.DataFrame:
    """Latest account state: account_id, meter_id, plan, status, opening_balance (fen)."""
    sql = (
        "SELECT account_id, meter_id, plan, toString(status) AS status,"
        " toInt64(opening_balance * 100) AS opening_balance, landlord_id FROM accounts FINAL"
    )
    schema = {
        "account_id": _STR,
        "meter_id": _STR,
        "plan": _STR,
        "status": _STR,
        "opening_balance": _I64,
        "landlord_id": _STR,
    }
    return _frame(store, sql, schema)


def events_in_month(store: ClickHouseStore, kind: str, month: date, zone: str) -> pl.DataFrame:
    """account_id, events: how many events of one type (``disconnected``…) in the local month."""
    sql = (
        "SELECT account_id, count() AS events FROM events FINAL WHERE type = {kind:String}"
        " AND toUnixTimestamp64Micro(ts) >= {start:Int64}"
        " AND toUnixTimestamp64Micro(ts) < {end:Int64} GROUP BY account_id"
    )
    bounds = month_bounds(month, zone)
    params = {"kind": kind, "start": bounds["start"], "end": bounds["end"]}
    return _frame(store, sql, {"account_id": _STR, "events": _I64}, params)


def _interval_window(start: date, end: date, zone: str) -> str:
    """SQL: an interval starts on a local day of ``zone`` from ``start`` to before ``end``.

    Compared as instants (the days' local midnights), so the month's partitions and the
    table's key pick the rows, whatever the column's own time zone.
    """
    first, after = midnight_us(start, zone), midnight_us(end, zone)
    return (
        f"`start` >= fromUnixTimestamp64Micro(toInt64({first}))"
        f" AND `start` < fromUnixTimestamp64Micro(toInt64({after}))"
    )


def _zone_sql(zone: str) -> str:
    if not ZONE_NAME.fullmatch(zone):
        raise ValueError(f"not a zone name: {zone!r}")
    return f"'{zone}'"


def interval_hours(store: ClickHouseStore, start: date, end: date, zone: str) -> pl.DataFrame:
    """Rated intervals starting in [start, end), summed per account and local hour of start.

    account_id, hour (0–23 in ``zone``), milli.
    """
    sql = (
        f"SELECT account_id, toHour(toTimeZone(`start`, {_zone_sql(zone)})) AS hour,"
        f" sum(toInt64(kwh * 1000)) AS milli FROM intervals FINAL"
        f" WHERE {_interval_window(start, end, zone)} GROUP BY account_id, hour"
    )
    return _frame(store, sql, {"account_id": _STR, "hour": _I64, "milli": _I64})


def interval_nights(store: ClickHouseStore, start: date, end: date, zone: str) -> pl.DataFrame:
    """Each local day's lowest mean power (W) among intervals starting 00–06 in ``zone``.

    account_id, day, watts: the intervals starting in [start, end) with the same account,
    start and end summed, W = kWh ÷ h × 1000 = milli × 3.6e9 ÷ µs rounded half up.
    """
    local = f"toTimeZone(`start`, {_zone_sql(zone)})"
    # The night's filter after FINAL, in a query of its own: beside the window's condition it
    # made FINAL read several times slower (its expression is not the key's).
    sql = (
        "SELECT account_id, day, min(watts) AS watts FROM ("
        f" SELECT account_id, toDate({local}) AS day,"
        " toUnixTimestamp64Micro(`end`) - toUnixTimestamp64Micro(`start`) AS length,"
        " if(length = 0, NULL, toInt64(intDiv(2 * toInt128(sum(toInt64(kwh * 1000)))"
        " * 3600000000 + length, 2 * toInt128(length)))) AS watts"
        " FROM (SELECT account_id, `start`, `end`, kwh FROM intervals FINAL"
        f" WHERE {_interval_window(start, end, zone)}) WHERE toHour({local}) < 6"
        " GROUP BY account_id, `start`, `end`"
        ") GROUP BY account_id, day"
    )
    return _frame(store, sql, {"account_id": _STR, "day": pl.Date(), "watts": _I64})
