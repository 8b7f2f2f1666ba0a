"""The ClickHouse functions an analyst's query may call: arithmetic, logic, text, dates, arrays.

An allow-list, not a deny-list: a function ClickHouse adds later stays refused until it is
listed here. Nothing that reads files or the network, runs programs, reads dictionaries or
other tables, sleeps, or reveals the host is listed (no ``file``, ``url``, ``s3``, ``remote``,
``executable``, ``input``, ``dictGet``, ``joinGet``, ``sleep``, ``hostName``, ``getMacro``…).
Names compare case-insensitively, as several of ClickHouse's own do.
"""

from __future__ import annotations

_SCALAR = """
plus minus multiply divide intDiv intDivOrZero modulo moduloOrZero positiveModulo negate abs
gcd lcm divideDecimal multiplyDecimal
equals notEquals less greater lessOrEquals greaterOrEquals and or not xor
in notIn nullIn notNullIn like notLike ilike notILike match multiSearchAny
if multiIf isNull isNotNull ifNull nullIf coalesce assumeNotNull toNullable isFinite isNaN
isInfinite ifNotFinite greatest least
CAST accurateCast accurateCastOrNull toTypeName toColumnTypeName
toString toFixedString toInt8 toInt16 toInt32 toInt64 toInt128 toInt256 toUInt8 toUInt16
toUInt32 toUInt64 toUInt128 toUInt256 toFloat32 toFloat64 toDecimal32 toDecimal64
toDecimal128 toDecimal256 toInt32OrZero toInt64OrZero toInt64OrNull toUInt64OrZero
toUInt64OrNull toFloat64OrZero toFloat64OrNull toDecimal64OrNull toDecimal128OrNull
toDecimalString toBool reinterpretAsString parseDateTimeBestEffort
parseDateTimeBestEffortOrNull parseDateTime64BestEffort parseDateTime64BestEffortOrNull
round roundBankers floor ceil trunc truncate sqrt cbrt exp log ln log2 log10 pow power sign
toDate toDate32 toDateTime toDateTime64 toDateOrNull toDateTimeOrNull toTimeZone timeZone
toTimezone now now64 today yesterday toYear toQuarter toMonth toDayOfMonth toDayOfWeek
toDayOfYear toHour toMinute toSecond toISOWeek toISOYear toWeek toYearWeek
toStartOfYear toStartOfQuarter toStartOfMonth toStartOfWeek toMonday toStartOfDay
toStartOfHour toStartOfMinute toStartOfFifteenMinutes toStartOfFiveMinutes
toStartOfTenMinutes toStartOfInterval toLastDayOfMonth toUnixTimestamp toUnixTimestamp64Milli
fromUnixTimestamp fromUnixTimestamp64Milli toYYYYMM toYYYYMMDD toYYYYMMDDhhmmss
formatDateTime dateDiff date_diff dateAdd dateSub date_add date_sub addDays addHours
addMinutes addMonths addSeconds addWeeks addYears subtractDays subtractHours subtractMinutes
subtractMonths subtractSeconds subtractWeeks subtractYears age timeSlot
toIntervalSecond toIntervalMinute toIntervalHour toIntervalDay toIntervalWeek
toIntervalMonth toIntervalQuarter toIntervalYear
length lengthUTF8 empty notEmpty lower upper lowerUTF8 upperUTF8 concat concatWithSeparator
substring substr substringUTF8 left right leftPad rightPad trim trimLeft trimRight trimBoth
replaceAll replaceOne replaceRegexpAll replaceRegexpOne position positionCaseInsensitive
startsWith endsWith splitByChar splitByString splitByRegexp reverse repeat format
formatReadableSize formatReadableQuantity extract extractAll toValidUTF8 leftUTF8 rightUTF8
JSONExtract JSONExtractString JSONExtractInt JSONExtractUInt JSONExtractFloat JSONExtractBool
JSONExtractRaw JSONExtractKeys JSONHas JSONLength JSONType JSONExtractArrayRaw
JSONExtractKeysAndValues simpleJSONExtractString simpleJSONExtractRaw
array tuple tupleElement arrayElement has hasAll hasAny indexOf arrayJoin arrayMap arrayFilter
arrayExists arrayAll arrayCount arraySum arrayAvg arrayMin arrayMax arraySort
arrayReverseSort arrayDistinct arrayUniq arrayConcat arraySlice arrayPushBack
arrayPushFront arrayEnumerate arrayZip arrayFirst arrayLast arrayReduce arrayStringConcat
arrayCumSum arrayDifference arrayCompact arrayFlatten arrayIntersect range emptyArrayString
map mapKeys mapValues mapContains untuple lambda
toStartOfWeek identity materialize
cityHash64 sipHash64 xxHash64 farmHash64 murmurHash3_64 MD5 SHA256 hex unhex
bar currentDatabase getSetting
"""

_AGGREGATE = """
count sum avg min max any anyLast anyHeavy argMin argMax uniq uniqExact uniqCombined
uniqHLL12 groupArray groupUniqArray groupArraySorted groupBitAnd groupBitOr
quantile quantiles quantileExact quantilesExact quantileTDigest quantileTiming median
medianExact stddevPop stddevSamp varPop varSamp covarPop covarSamp corr topK
sumWithOverflow avgWeighted simpleLinearRegression first_value last_value
row_number rank dense_rank percent_rank cume_dist ntile lagInFrame leadInFrame nth_value
lag lead
"""

_COMBINATORS = ("if", "distinct", "ornull", "ordefault", "array", "foreach", "merge", "state")

AGGREGATES = frozenset(name.lower() for name in _AGGREGATE.split())
FUNCTIONS = frozenset(name.lower() for name in _SCALAR.split()) | AGGREGATES


def allowed_function(name: str) -> bool:
    """Whether an analyst's query may call ``name`` (an aggregate may carry combinators)."""
    lowered = name.lower()
    return lowered in FUNCTIONS or _is_aggregate(lowered)


def _is_aggregate(lowered: str) -> bool:
    """Whether a lower-cased name is an aggregate, possibly with combinators (``sumIfOrNull``)."""
    if lowered in AGGREGATES:
        return True
    return any(
        lowered.endswith(c) and len(lowered) > len(c) and _is_aggregate(lowered[: -len(c)])
        for c in _COMBINATORS
    )
