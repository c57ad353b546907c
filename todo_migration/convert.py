"""Type conversion, in one place: how each model type travels from SQLite to PostgreSQL.

For every column type a Codec gives four SQL expressions:
  copy      (SQLite) the value as PostgreSQL COPY text: escaped, with NULL as \\N
  problem   (SQLite) NULL when the value can be stored exactly, else the kind of problem
  conversions (SQLite) true where a lossless conversion happens (e.g. 'true' -> boolean)
  render    (PostgreSQL) the stored value as the same COPY text

SQLite's C engine does the per-value work; Python is called only for the rare values that need
it (non-canonical datetimes, NUL stripping). Because `copy` and `render` produce identical text
for identical values, checksums of the two agree exactly when every value arrived.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime

from sqlalchemy import Boolean, Column, DateTime, Integer, String, Text

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
NULL_TEXT = r"\N"

# SQLAlchemy's SQLite DateTime storage format, and CURRENT_TIMESTAMP's.
_TS26 = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]"
_TS19 = _TS26[: _TS26.index(".")]
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


def register_sqlite_functions(conn: sqlite3.Connection, *, strip_nul: bool) -> None:
    conn.create_function("canonical_ts", 1, canonical_timestamp, deterministic=True)
    conn.create_function("strip_nul", 1, _strip_nul if strip_nul else (lambda v: v), deterministic=True)


def sql_text(value: str) -> str:
    """A string literal for SQLite or PostgreSQL (standard_conforming_strings)."""
    return "'" + value.replace("'", "''") + "'"


class Codec:
    kind = "value"

    def copy(self, c: str) -> str:
        raise NotImplementedError

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

    def copy(self, c: str) -> str:
        return f"coalesce(CAST({c} AS TEXT), '{NULL_TEXT}')"

    def problem(self, c: str) -> str:
        return (
            f"CASE WHEN {c} IS NULL THEN NULL "
            f"WHEN typeof({c}) = 'text' AND CAST(CAST({c} AS INTEGER) AS TEXT) = {c} "
            f"THEN CASE WHEN CAST({c} AS INTEGER) BETWEEN {INT32_MIN} AND {INT32_MAX} "
            "THEN NULL ELSE 'integer_out_of_range' END "
            f"WHEN typeof({c}) <> 'integer' THEN 'not_an_integer' "
            f"WHEN {c} NOT BETWEEN {INT32_MIN} AND {INT32_MAX} THEN 'integer_out_of_range' END"
        )

    def conversions(self, c: str) -> list[tuple[str, str]]:
        return [("integer stored as text", f"typeof({c}) = 'text'")]

    def render(self, c: str) -> str:
        return f"coalesce({c}::text, '{NULL_TEXT}')"


class TextCodec(Codec):
    kind = "text"

    def __init__(self, length: int | None, strip_nul: bool) -> None:
        self.length = length
        self.strip_nul = strip_nul

    def _value(self, c: str) -> str:
        if self.strip_nul:
            return f"(CASE WHEN instr(CAST({c} AS BLOB), x'00') THEN strip_nul({c}) ELSE {c} END)"
        return c

    def copy(self, c: str) -> str:
        v = f"CAST({self._value(c)} AS TEXT)"
        for raw, escaped in (
            ("'\\'", "'\\\\'"),
            ("char(9)", "'\\t'"),
            ("char(10)", "'\\n'"),
            ("char(13)", "'\\r'"),
        ):
            v = f"replace({v}, {raw}, {escaped})"
        return f"coalesce({v}, '{NULL_TEXT}')"

    def problem(self, c: str) -> str:
        checks = [f"WHEN {c} IS NULL THEN NULL", f"WHEN typeof({c}) = 'blob' THEN 'binary_in_text_column'"]
        if not self.strip_nul:
            checks.append(f"WHEN instr(CAST({c} AS BLOB), x'00') THEN 'nul_byte'")
        if self.length is not None:
            checks.append(f"WHEN length({self._value(c)}) > {self.length} THEN 'too_long'")
        return f"CASE {' '.join(checks)} END"

    def conversions(self, c: str) -> list[tuple[str, str]]:
        result = [("number stored in a text column", f"typeof({c}) IN ('integer', 'real')")]
        if self.strip_nul:
            result.append(("NUL bytes stripped (--strip-nul)", f"instr(CAST({c} AS BLOB), x'00') > 0"))
        return result

    def render(self, c: str) -> str:
        v = f"{c}::text"
        for raw, escaped in (
            ("'\\'", "'\\\\'"),
            ("E'\\t'", "'\\t'"),
            ("E'\\n'", "'\\n'"),
            ("E'\\r'", "'\\r'"),
        ):
            v = f"replace({v}, {raw}, {escaped})"
        return f"coalesce({v}, '{NULL_TEXT}')"


class BooleanCodec(Codec):
    kind = "boolean"

    def _word(self, c: str) -> str:
        whens = " ".join(f"WHEN {sql_text(k)} THEN {sql_text(v)}" for k, v in BOOLEAN_WORDS.items())
        return f"CASE WHEN typeof({c}) IN ('integer', 'text') THEN CASE lower({c}) {whens} END END"

    def copy(self, c: str) -> str:
        return f"CASE WHEN {c} IS NULL THEN '{NULL_TEXT}' ELSE {self._word(c)} END"

    def problem(self, c: str) -> str:
        return f"CASE WHEN {c} IS NOT NULL AND ({self._word(c)}) IS NULL THEN 'not_a_boolean' END"

    def conversions(self, c: str) -> list[tuple[str, str]]:
        return [("boolean stored as text", f"typeof({c}) = 'text'")]

    def render(self, c: str) -> str:
        return f"CASE WHEN {c} THEN 't' WHEN NOT {c} THEN 'f' ELSE '{NULL_TEXT}' END"


class TimestampCodec(Codec):
    kind = "timestamp"

    def copy(self, c: str) -> str:
        return (
            f"CASE WHEN {c} IS NULL THEN '{NULL_TEXT}' WHEN {c} GLOB '{_TS26}' THEN {c} "
            f"WHEN {c} GLOB '{_TS19}' THEN {c} || '.000000' ELSE canonical_ts({c}) END"
        )

    def problem(self, c: str) -> str:
        # Fast path: the app's own format with a real calendar date; anything else asks Python.
        head = f"substr({c}, 1, 19)"
        exact = (
            f"typeof({c}) = 'text' AND ({c} GLOB '{_TS26}' OR {c} GLOB '{_TS19}') "
            f"AND substr({c}, 1, 4) <> '0000' "
            f"AND strftime('%Y-%m-%d %H:%M:%S', julianday({head})) = {head}"
        )
        return (
            f"CASE WHEN {c} IS NULL THEN NULL WHEN {exact} THEN NULL "
            f"WHEN canonical_ts({c}) IS NULL THEN 'bad_datetime' END"
        )

    def conversions(self, c: str) -> list[tuple[str, str]]:
        return [
            ("datetime without microseconds padded", f"{c} GLOB '{_TS19}'"),
            ("ISO datetime normalized (T, Z, offset to UTC, date only)",
             f"{c} IS NOT NULL AND NOT ({c} GLOB '{_TS26}' OR {c} GLOB '{_TS19}') AND canonical_ts({c}) IS NOT NULL"),
        ]  # fmt: skip

    def render(self, c: str) -> str:
        return f"coalesce(to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US'), '{NULL_TEXT}')"


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
