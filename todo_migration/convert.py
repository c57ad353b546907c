"""Type conversion, in one place: how each model type travels from SQLite to PostgreSQL.

Each value travels as the text PostgreSQL itself prints for the stored value (DateStyle ISO:
't'/'f', '2024-01-01 10:00:00.5'), and rows as CSV quoted the SQL way: SQLite's quote() format
(printf's %Q) on one side, `COPY ... TO STDOUT (FORMAT csv, QUOTE '''', NULL 'NULL',
FORCE_QUOTE *)` on the other. So the bytes sent and the bytes read back are identical when, and
only when, every value arrived, and verification is a comparison of two checksums.

For every column type a Codec gives SQL expressions:
  copy        (SQLite) the value as that text, or NULL
  canonical   (SQLite) true when the stored value needs no conversion (the exact pre-flight test)
  canonical_shape (SQLite) the same, leaving to PostgreSQL what its own parser and the read-back
              decide anyway (a calendar date, an hour below 24): the cheaper test of the fast path
  problem     (SQLite) NULL when the value can be stored exactly, else the kind of problem
  conversions (SQLite) true where a lossless conversion happens (e.g. 'true' -> boolean)
  render      (PostgreSQL) a stored value as the same text (to name a differing column)

SQLite's C engine does the per-value work; Python is called only for the rare values that need
it (non-canonical datetimes, NUL stripping) and, once per row in the exact pre-flight, to tell
whether text is UTF-8.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime

from sqlalchemy import Boolean, Column, DateTime, Integer, String, Text

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# SQLAlchemy's SQLite DateTime storage format, and CURRENT_TIMESTAMP's (no fraction).
_TS26 = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]"
_TS19 = _TS26[: _TS26.index(".")]
# The app's format by shape only: the digits, ranges and calendar are PostgreSQL's to judge.
_TS_SHAPE = "????-??-?? ??:??:??.[0-9][0-9][0-9][0-9][0-9][0-9]"
# The same, narrowed to values that are surely real (day <= 28 needs no calendar): the common case.
_TS_SAFE = "[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9]"
_FRACTION = re.compile(r"[T ]\d{1,2}:\d{2}(?::\d{2})?[.,](\d+)")
BOOLEAN_WORDS = {
    "1": "t", "true": "t", "t": "t", "yes": "t", "on": "t",
    "0": "f", "false": "f", "f": "f", "no": "f", "off": "f",
}  # fmt: skip


def canonical_timestamp(value: object) -> str | None:
    """An ISO-8601 text as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, or None if it is not exact.

    Offsets are converted to UTC ('Z' is UTC), date-only values mean midnight. More than six
    fractional digits would be rounded by PostgreSQL, so such values are refused, not changed.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or value != value.strip() or not value:
        return None
    m = _FRACTION.search(value)
    if m and len(m.group(1)) > 6:
        return None
    try:
        dt = datetime.fromisoformat(value)
        if dt.tzinfo is not None:
            dt = dt.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return None
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond:06d}"
    )


def _strip_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, bytes):
        return value.replace(b"\x00", b"")
    return value


def utf8_valid(value: object) -> bool:
    """PostgreSQL accepts exactly what Python's strict decoder does (no surrogates, no overlong forms)."""
    if not isinstance(value, bytes) or value.isascii():
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def register_sqlite_functions(conn: sqlite3.Connection, *, strip_nul: bool) -> None:
    """Python helpers for the rare values SQL cannot judge. Text reaches them as BLOB: Python's
    sqlite3 cannot hand a function text that is not UTF-8."""
    conn.create_function("utf8_valid", 1, utf8_valid, deterministic=True)
    conn.create_function("canonical_ts", 1, canonical_timestamp, deterministic=True)
    conn.create_function("strip_nul", 1, _strip_nul if strip_nul else (lambda v: v), deterministic=True)


def _python_arg(c: str) -> str:
    """A value for a Python function: text as its bytes (it may not be UTF-8), the rest as it is."""
    return f"iif(typeof({c}) = 'text', CAST({c} AS BLOB), {c})"


def utf8_row_test(text_columns: list[str]) -> str:
    """SQLite: true when every text value of the row is UTF-8, at one Python call per row (not per
    value). A newline between the values keeps one value's broken tail from pairing with the next
    value's head."""
    joined = " || char(10) || ".join(f"coalesce({c}, '')" for c in text_columns)
    return f"utf8_valid(CAST({joined} AS BLOB))" if text_columns else "1"


def sql_text(value: str) -> str:
    """A string literal for SQLite or PostgreSQL (standard_conforming_strings)."""
    return "'" + value.replace("'", "''") + "'"


def csv_line(values: list[str]) -> str:
    """SQLite: one CSV line from value expressions (text or NULL), each quoted the SQL way.

    printf's %Q is quote() for text (doubled quotes, NULL as the bare word NULL) written straight
    into the line's one buffer: 40 % cheaper per row than quote() calls. printf takes up to 100
    arguments, beyond which a chain of quote()s is used."""
    if len(values) < 100:
        return f"printf('{','.join(['%Q'] * len(values))}' || char(10), {', '.join(values)})"
    return " || ',' || ".join(f"quote({v})" for v in values) + " || char(10)"


class Codec:
    kind = "value"

    def copy(self, c: str) -> str:
        raise NotImplementedError

    def copy_canonical(self, c: str) -> str:
        """`copy` for a table whose values all passed `canonical`: the same text, less work."""
        return self.copy(c)

    def canonical(self, c: str) -> str:
        """SQLite expression, true when a non-NULL value is already in the exact form PostgreSQL
        stores, needing no conversion: the one cheap test every value of a clean table passes."""
        raise NotImplementedError

    def canonical_shape(self, c: str) -> str:
        """`canonical`, less what PostgreSQL checks for us. Sound only together with the read-back:
        a value passing it either makes COPY fail, or is stored and printed back as the exact
        text `copy_canonical` sent (then it was canonical), or is printed back differently."""
        return self.canonical(c)

    def problem(self, c: str) -> str:
        """SQLite expression: NULL if storable, else a problem kind (NULLs are checked elsewhere)."""
        raise NotImplementedError

    def conversions(self, c: str) -> list[tuple[str, str]]:
        """(label, SQLite expression true where that lossless conversion applies)."""
        return []

    def render(self, c: str) -> str:
        raise NotImplementedError


class IntegerCodec(Codec):
    kind = "integer"

    def canonical(self, c: str) -> str:
        return f"typeof({c}) = 'integer' AND {c} BETWEEN {INT32_MIN} AND {INT32_MAX}"

    def copy_canonical(self, c: str) -> str:
        return f"CAST({c} AS TEXT)"

    def copy(self, c: str) -> str:
        return f"CAST(CAST({c} AS INTEGER) AS TEXT)"

    def problem(self, c: str) -> str:
        return (
            f"CASE WHEN typeof({c}) = 'integer' THEN "
            f"CASE WHEN {c} BETWEEN {INT32_MIN} AND {INT32_MAX} THEN NULL ELSE 'integer_out_of_range' END "
            f"WHEN {c} IS NULL THEN NULL "
            f"WHEN typeof({c}) = 'text' AND CAST(CAST({c} AS INTEGER) AS TEXT) = {c} "
            f"THEN CASE WHEN CAST({c} AS INTEGER) BETWEEN {INT32_MIN} AND {INT32_MAX} "
            "THEN NULL ELSE 'integer_out_of_range' END "
            "ELSE 'not_an_integer' END"
        )

    def conversions(self, c: str) -> list[tuple[str, str]]:
        return [("integer stored as text", f"typeof({c}) = 'text'")]

    def render(self, c: str) -> str:
        return f"{c}::text"


class TextCodec(Codec):
    kind = "text"

    def __init__(self, length: int | None, strip_nul: bool) -> None:
        self.length = length
        self.strip_nul = strip_nul

    def _value(self, c: str) -> str:
        if self.strip_nul:
            return f"(CASE WHEN instr(CAST({c} AS BLOB), x'00') THEN CAST(strip_nul({_python_arg(c)}) AS TEXT) ELSE {c} END)"
        return c

    def copy(self, c: str) -> str:
        return f"CAST({self._value(c)} AS TEXT)"

    def copy_canonical(self, c: str) -> str:
        return c

    def canonical(self, c: str) -> str:
        # Whether the bytes are UTF-8 is checked once per row, by utf8_row_test.
        test = f"typeof({c}) = 'text' AND NOT instr(CAST({c} AS BLOB), x'00')"
        if self.length is not None:  # bytes are free to count and never fewer than characters
            test += f" AND (length(CAST({c} AS BLOB)) <= {self.length} OR length({c}) <= {self.length})"
        return test

    def problem(self, c: str) -> str:
        checks = [f"WHEN {c} IS NULL THEN NULL", f"WHEN typeof({c}) = 'blob' THEN 'binary_in_text_column'"]
        if not self.strip_nul:
            checks.append(f"WHEN instr(CAST({c} AS BLOB), x'00') THEN 'nul_byte'")
        checks.append(f"WHEN typeof({c}) = 'text' AND NOT utf8_valid(CAST({c} AS BLOB)) THEN 'not_utf8'")
        if self.length is not None:
            # Bytes are never fewer than characters, and their count is free: count characters
            # only for values that could be too long.
            checks.append(
                f"WHEN length(CAST({c} AS BLOB)) > {self.length} AND length({self._value(c)}) > {self.length} "
                "THEN 'too_long'"
            )
        return f"CASE {' '.join(checks)} END"

    def conversions(self, c: str) -> list[tuple[str, str]]:
        result = [("number stored in a text column", f"typeof({c}) IN ('integer', 'real')")]
        if self.strip_nul:
            result.append(("NUL bytes stripped (--strip-nul)", f"instr(CAST({c} AS BLOB), x'00') > 0"))
        return result

    def render(self, c: str) -> str:
        return f"{c}::text"


class BooleanCodec(Codec):
    kind = "boolean"

    def _word(self, c: str) -> str:
        whens = " ".join(f"WHEN {sql_text(k)} THEN {sql_text(v)}" for k, v in BOOLEAN_WORDS.items())
        return f"CASE WHEN typeof({c}) IN ('integer', 'text') THEN CASE lower({c}) {whens} END END"

    def copy(self, c: str) -> str:
        return f"CASE {c} WHEN 1 THEN 't' WHEN 0 THEN 'f' ELSE {self._word(c)} END"

    def canonical(self, c: str) -> str:
        return f"{c} IN (0, 1)"

    def copy_canonical(self, c: str) -> str:
        return f"CASE {c} WHEN 1 THEN 't' WHEN 0 THEN 'f' END"

    def problem(self, c: str) -> str:
        return f"CASE WHEN {c} IN (0, 1) OR {c} IS NULL THEN NULL WHEN ({self._word(c)}) IS NULL THEN 'not_a_boolean' END"

    def conversions(self, c: str) -> list[tuple[str, str]]:
        return [("boolean stored as text", f"typeof({c}) = 'text'")]

    def render(self, c: str) -> str:
        return f"CASE WHEN {c} THEN 't' WHEN NOT {c} THEN 'f' END"


class TimestampCodec(Codec):
    """Naive UTC timestamps. PostgreSQL prints microseconds without trailing zeros, so we send them so."""

    kind = "timestamp"

    def copy(self, c: str) -> str:
        return (
            f"CASE WHEN {c} IS NULL THEN NULL WHEN {c} GLOB '{_TS26}' THEN rtrim(rtrim({c}, '0'), '.') "
            f"WHEN {c} GLOB '{_TS19}' THEN {c} ELSE rtrim(rtrim(canonical_ts({_python_arg(c)}), '0'), '.') END"
        )

    def copy_canonical(self, c: str) -> str:
        return f"rtrim(rtrim({c}, '0'), '.')"

    def canonical(self, c: str) -> str:
        # The app's format, narrowed by GLOB; the calendar is consulted only for days 29-31, by a
        # round trip through julianday (SQLite's date() alone keeps '2023-02-30' as it is).
        return (
            f"{c} GLOB '{_TS_SAFE}.[0-9][0-9][0-9][0-9][0-9][0-9]' AND substr({c}, 6, 2) BETWEEN '01' AND '12' "
            f"AND substr({c}, 12, 2) < '24' AND substr({c}, 1, 4) <> '0000' AND substr({c}, 9, 2) <> '00' "
            f"AND (substr({c}, 9, 2) <= '28' OR date(julianday(substr({c}, 1, 10))) = substr({c}, 1, 10))"
        )

    def canonical_shape(self, c: str) -> str:
        # PostgreSQL prints a timestamp as 'YYYY-MM-DD HH:MM:SS[.f]' (' BC' after a digit for
        # old dates). A value of this shape that reads back unchanged (trailing zeros trimmed)
        # is therefore all digits, with a real date and time, after year 0 and not BC. The six
        # fraction digits keep rtrim from eating into anything but zeros.
        return f"{c} GLOB '{_TS_SHAPE}'"

    def problem(self, c: str) -> str:
        # The common case: the app's own format with a date that surely exists. Days 29-31, month or
        # hour out of range, and every other spelling are checked exactly (the calendar, or Python).
        fast = (
            f"{c} GLOB '{_TS_SAFE}*' AND ({c} GLOB '{_TS26}' OR {c} GLOB '{_TS19}') "
            f"AND substr({c}, 6, 2) BETWEEN '01' AND '12' AND substr({c}, 9, 2) BETWEEN '01' AND '28' "
            f"AND substr({c}, 12, 2) < '24' AND substr({c}, 1, 4) <> '0000'"
        )
        head = f"substr({c}, 1, 19)"
        exact = (
            f"typeof({c}) = 'text' AND ({c} GLOB '{_TS26}' OR {c} GLOB '{_TS19}') AND substr({c}, 1, 4) <> '0000' "
            f"AND strftime('%Y-%m-%d %H:%M:%S', julianday({head})) = {head}"
        )
        return (
            f"CASE WHEN {c} IS NULL THEN NULL WHEN {fast} THEN NULL WHEN {exact} THEN NULL "
            f"WHEN canonical_ts({_python_arg(c)}) IS NULL THEN 'bad_datetime' END"
        )

    def conversions(self, c: str) -> list[tuple[str, str]]:
        return [
            ("datetime without fractional seconds", f"{c} GLOB '{_TS19}'"),
            ("ISO datetime normalized (T, Z, offset to UTC, date only)",
             f"CASE WHEN {c} IS NULL OR {c} GLOB '{_TS26}' OR {c} GLOB '{_TS19}' THEN 0 "
             f"ELSE canonical_ts({_python_arg(c)}) IS NOT NULL END"),
        ]  # fmt: skip

    def render(self, c: str) -> str:
        return f"{c}::text"


def codec_for(column: Column, *, strip_nul: bool = False) -> Codec:
    """The codec for a model column, from its SQLAlchemy type (never from SQLite's type names)."""
    t = column.type
    if isinstance(t, Boolean):
        return BooleanCodec()
    if isinstance(t, DateTime):
        if t.timezone:
            raise NotImplementedError(f"{column} is timezone-aware; the models use naive UTC")
        return TimestampCodec()
    if isinstance(t, Integer):
        return IntegerCodec()
    if isinstance(t, (String, Text)):
        return TextCodec(getattr(t, "length", None), strip_nul)
    raise NotImplementedError(f"no conversion for column {column} of type {t!r}")
