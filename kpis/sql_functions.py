"""The functions a mapping's SQL may call: read-only scalar, string, date/time, math, conditional,
aggregate and window functions. Anything else is refused when the config loads (kpis.sql_guard).

Two lists, because the parser (sqlglot) knows many functions by meaning and the rest only by
name: ``KNOWN`` names sqlglot's typed function nodes (the same meaning in every dialect, e.g.
``Substring`` is SUBSTRING or SUBSTR), ``BY_NAME`` the functions each dialect spells itself,
which sqlglot leaves anonymous. Absent on purpose: session and server state (current_setting,
set_config, version, current_user), sequences (nextval, setval), sleeping, locking, files and
large objects, other servers (dblink), SQL run from a string (query_to_xml), random values.
"""

from __future__ import annotations

KNOWN = frozenset({
    # conditional, casts and logic
    "Case", "If", "Coalesce", "Nullif", "Greatest", "Least", "Nvl2", "Cast", "TryCast",
    "CastToStrType", "And", "Or", "Xor", "Exists", "Typeof",
    # aggregates and windows
    "Count", "CountIf", "Sum", "Avg", "Min", "Max", "GroupConcat", "ArrayAgg", "Stddev",
    "StddevPop", "StddevSamp", "Variance", "VariancePop", "Median", "Mode", "PercentileCont",
    "PercentileDisc", "LogicalAnd", "LogicalOr", "AnyValue", "First", "Last", "FirstValue",
    "LastValue", "NthValue", "Lag", "Lead", "RowNumber", "Rank", "DenseRank", "PercentRank",
    "CumeDist", "Ntile", "Corr", "CovarPop", "CovarSamp", "BitwiseAndAgg", "BitwiseOrAgg",
    "BitwiseXorAgg", "Grouping",
    # strings
    "Lower", "Upper", "Trim", "Replace", "Substring", "SubstringIndex", "Left", "Right",
    "Length", "ByteLength", "BitLength", "Concat", "ConcatWs", "Pad", "StrPosition", "SplitPart",
    "Initcap", "Reverse", "Repeat", "Translate", "Ascii", "Chr", "Unicode", "Hex", "Unhex",
    "LowerHex", "RegexpReplace", "RegexpLike", "RegexpILike", "RegexpExtract", "RegexpSubstr",
    "RegexpCount", "RegexpInstr", "StartsWith", "EndsWith", "MD5", "SHA", "SHA2", "Format",
    "Space", "Overlay", "Levenshtein", "Soundex", "ToChar", "ToNumber", "NumberToStr",
    "ArrayToString", "StringToArray", "Array", "ArraySize", "Unnest",
    # dates and times
    "CurrentDate", "CurrentTime", "CurrentTimestamp", "CurrentDatetime", "Localtime",
    "Localtimestamp", "UtcDate", "UtcTime", "UtcTimestamp", "Date", "Datetime", "Time",
    "Timestamp", "DateAdd", "DateSub", "DateDiff", "DateTrunc", "DatetimeAdd", "DatetimeSub",
    "DatetimeDiff", "DatetimeTrunc", "TimestampAdd", "TimestampSub", "TimestampDiff",
    "TimestampTrunc", "TimeAdd", "TimeSub", "TimeDiff", "TimeTrunc", "Extract", "Year", "Month",
    "Day", "DayOfMonth", "DayOfWeek", "DayOfWeekIso", "DayOfYear", "Hour", "Minute", "Second",
    "Week", "WeekOfYear", "Quarter", "Dayname", "Monthname", "LastDay", "AddMonths",
    "MonthsBetween", "MakeInterval", "DateFromParts", "TimeFromParts", "TimestampFromParts",
    "StrToDate", "StrToTime", "StrToUnix", "TimeToStr", "TimeStrToTime", "TimeStrToDate",
    "TimeStrToUnix", "TimeToUnix", "TimeToTimeStr", "UnixToTime", "UnixToStr", "UnixToTimeStr",
    "TsOrDsAdd", "TsOrDsDiff", "TsOrDsToDate", "TsOrDsToTimestamp", "TsOrDsToDatetime",
    "TsOrDsToTime", "TsOrDsToDateStr", "DateStrToDate", "DateToDateStr", "ConvertTimezone",
    "JustifyDays", "JustifyHours", "JustifyInterval", "UnixSeconds", "UnixMillis", "UnixMicros",
    "UnixDate", "ToDays", "DateBin",
    # numbers
    "Abs", "Ceil", "Floor", "Round", "Trunc", "Sign", "Sqrt", "Cbrt", "Exp", "Ln", "Log", "Pow",
    "Pi", "Degrees", "Radians", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Atan2", "Cot",
    "SafeDivide", "IsNan", "IsInf", "WidthBucket",
    # JSON read by path
    "JSONExtract", "JSONExtractScalar", "JSONBExtract", "JSONBExtractScalar", "JSONType",
    "ParseJSON",
})

_COMMON = {
    "abs", "avg", "ceil", "ceiling", "coalesce", "concat", "concat_ws", "count", "floor",
    "greatest", "least", "length", "lower", "ltrim", "max", "min", "mod", "nullif", "power",
    "replace", "round", "rtrim", "sign", "sqrt", "substr", "substring", "sum", "trim", "upper",
}

BY_NAME: dict[str, frozenset[str]] = {
    "postgres": frozenset(_COMMON | {
        "age", "array_length", "bool_and", "bool_or", "btrim", "cardinality", "char_length",
        "character_length", "clock_timestamp", "date_bin", "date_part", "date_trunc", "div",
        "every", "isfinite", "json_extract_path_text", "json_typeof", "jsonb_extract_path_text",
        "jsonb_typeof", "justify_days", "justify_hours", "justify_interval", "lpad",
        "make_date", "make_interval", "make_time", "make_timestamp", "make_timestamptz", "now",
        "num_nonnulls", "num_nulls", "octet_length", "regexp_match", "rpad",
        "statement_timestamp", "strpos", "timezone", "to_char", "to_date", "to_number",
        "to_timestamp", "transaction_timestamp", "trunc",
    }),
    "mysql": frozenset(_COMMON | {
        "adddate", "addtime", "bit_and", "bit_or", "bit_xor", "char_length", "character_length",
        "convert_tz", "crc32", "curdate", "current_date", "current_time", "current_timestamp",
        "curtime", "date", "date_add", "date_format", "date_sub", "datediff", "day",
        "dayname", "dayofmonth", "dayofweek", "dayofyear", "elt", "field", "find_in_set",
        "from_days", "from_unixtime", "hour", "if", "ifnull", "instr", "isnull", "json_extract",
        "json_unquote", "json_value", "last_day", "lcase", "left", "locate", "log10", "log2",
        "lpad", "makedate", "maketime", "microsecond", "mid", "minute", "month", "monthname",
        "now", "octet_length", "ord", "period_diff", "pow", "quarter", "right", "rpad",
        "sec_to_time", "second", "std", "stddev", "stddev_pop", "stddev_samp", "str_to_date",
        "subdate", "substring_index", "subtime", "sysdate", "time", "time_format", "time_to_sec",
        "timediff", "timestamp", "timestampadd", "timestampdiff", "to_days", "to_seconds",
        "truncate", "ucase", "unix_timestamp", "utc_date", "utc_time", "utc_timestamp",
        "var_pop", "var_samp", "variance", "week", "weekday", "weekofyear", "year", "yearweek",
    }),
    "sqlite": frozenset(_COMMON | {
        "char", "date", "datetime", "format", "group_concat", "hex", "ifnull", "iif", "instr",
        "json_extract", "json_type", "julianday", "likelihood", "likely", "ln", "log", "log10",
        "log2", "octet_length", "pi", "pow", "printf", "strftime", "string_agg", "time",
        "timediff", "total", "trunc", "typeof", "unicode", "unixepoch", "unlikely",
    }),
}

# Schema-qualified calls are allowed only into the system catalog (pg_catalog.lower(x)).
SYSTEM_SCHEMAS: dict[str, frozenset[str]] = {"postgres": frozenset({"pg_catalog"})}
