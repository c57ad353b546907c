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
  app_form    (PostgreSQL) a stored value as the app's SQLAlchemy keeps it in SQLite (the export back)
  readback_form (SQLite) the export's test of a value's form, exact given its read-back's equality

SQLite's C engine does the per-value work; Python is called only for the rare values that need
it (non-canonical datetimes, NUL stripping) and, once per row in the exact pre-flight, to tell
whether text is UTF-8.
"""

from __future__ import annotations

import codecs
import math
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import Boolean, Column, DateTime, Integer, String, Text

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# SQLAlchemy's SQLite DateTime storage format, and CURRENT_TIMESTAMP's (no fraction).
_TS26 = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]"
_TS19 = _TS26[: _TS26.index(".")]
# The app's format by shape only: the digits, ranges and calendar are PostgreSQL's to judge.
_TS_SHAPE = "????-??-?? ??:??:??.[0-9][0-9][0-9][0-9][0-9][0-9]"
# The same, narrowed to values that are surely real (day <= 28 needs no calendar): the common case.
_TS_SAFE = "[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9]"
# The ISO-8601 spellings converted without loss: extended format only, 't' and 'z' as RFC 3339
# allows them too. Basic format ('20240301T1230') is refused, not guessed: digits alone are as
# likely an epoch number.
_ISO_EXTENDED = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:[Zz]|[+-]\d{2}:\d{2})?)?"
)
_UNIX_EPOCH = datetime(1970, 1, 1)
EPOCH_UNITS = {"seconds": 1_000_000, "milliseconds": 1_000}  # microseconds per unit
# PostgreSQL server encodings and the Python codecs that map Unicode the same way.
PG_ENCODINGS = {
    "LATIN1": "latin-1", "LATIN2": "iso8859-2", "LATIN3": "iso8859-3", "LATIN4": "iso8859-4",
    "LATIN5": "iso8859-9", "LATIN6": "iso8859-10", "LATIN7": "iso8859-13", "LATIN8": "iso8859-14",
    "LATIN9": "iso8859-15", "LATIN10": "iso8859-16", "WIN1250": "cp1250", "WIN1251": "cp1251",
    "WIN1252": "cp1252", "WIN1253": "cp1253", "WIN1254": "cp1254", "WIN1255": "cp1255",
    "WIN1256": "cp1256", "WIN1257": "cp1257", "WIN1258": "cp1258", "WIN866": "cp866", "WIN874": "cp874",
    "KOI8R": "koi8-r", "KOI8U": "koi8-u", "ISO_8859_5": "iso8859-5", "ISO_8859_6": "iso8859-6",
    "ISO_8859_7": "iso8859-7", "ISO_8859_8": "iso8859-8", "EUC_JP": "euc_jp", "EUC_KR": "euc_kr",
    "EUC_CN": "gb2312", "EUC_TW": "euc_tw", "MULE_INTERNAL": None, "EUC_JIS_2004": "euc_jis_2004",
}  # fmt: skip


@dataclass(frozen=True)
class Conversions:
    """How values are converted this run: the user's choices and what the target can hold.

    strip_nul: remove NUL bytes from text (--strip-nul) instead of refusing such values.
    epoch_unit: read numbers in DateTime columns as seconds or milliseconds since 1970 UTC
        (--epoch-unit); without it they are refused, never guessed.
    target_encoding: the PostgreSQL database's encoding (server_encoding); text must fit it.
    """

    strip_nul: bool = False
    epoch_unit: str | None = None
    target_encoding: str = "UTF8"

    @property
    def python_encoding(self) -> str | None:
        """The Python codec that tells whether text fits a single-byte or legacy target."""
        if self.target_encoding in ("UTF8", "SQL_ASCII"):
            return None
        name = PG_ENCODINGS.get(self.target_encoding)
        if name is None:
            return None
        try:
            codecs.lookup(name)
        except LookupError:
            return None
        return name


BOOLEAN_WORDS = {
    "1": "t", "true": "t", "t": "t", "yes": "t", "on": "t",
    "0": "f", "false": "f", "f": "f", "no": "f", "off": "f",
}  # fmt: skip


def canonical_timestamp(value: object) -> str | None:
    """An ISO-8601 text as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, or None if it is not exact.

    Offsets are converted to UTC ('Z' is UTC), date-only values mean midnight. Only ISO-8601's
    extended format is read: more than six fractional digits would be rounded by PostgreSQL, and
    digits without separators could as well be an epoch number, so such values are refused.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or not _ISO_EXTENDED.fullmatch(value):
        return None
    try:
        dt = datetime.fromisoformat(value.upper())  # Python reads 'T' and 'Z' only
        if dt.tzinfo is not None:
            dt = dt.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return None
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond:06d}"
    )


def epoch_timestamp(value: object, unit: str | None) -> str | None:
    """A number of seconds or milliseconds since 1970 UTC as 'YYYY-MM-DD HH:MM:SS.ffffff', or
    None unless that is exact: converting the result back must give the very same number."""
    per_unit = EPOCH_UNITS.get(unit or "")
    if per_unit is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        return None
    micros = number * per_unit
    if micros != micros.to_integral_value():
        return None  # finer than a microsecond: PostgreSQL would round it
    try:
        dt = _UNIX_EPOCH + timedelta(microseconds=int(micros))
    except OverflowError:
        return None
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond:06d}"
    )


def real_text(value: object) -> str | None:
    """A REAL stored in a text column as the shortest text that reads back as the same number
    (Python's repr): SQLite's own CAST keeps 15 digits (0.30000000000000004 -> '0.3'). None for
    infinities, which have no numeric text."""
    if not isinstance(value, float) or not math.isfinite(value):
        return None
    return repr(value)


def in_encoding(value: object, encoding: str) -> bool:
    """Whether text (as UTF-8 bytes) has an equivalent for every character in `encoding`."""
    if not isinstance(value, bytes) or value.isascii():
        return True
    try:
        value.decode("utf-8").encode(encoding)
    except (UnicodeDecodeError, UnicodeEncodeError):
        return False
    return True


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


def register_sqlite_functions(conn: sqlite3.Connection) -> None:
    """Python helpers for the rare values SQL cannot judge. Text reaches them as BLOB: Python's
    sqlite3 cannot hand a function text that is not UTF-8. Whether a codec calls them is the
    codec's choice (Conversions), so every connection registers the same set."""
    conn.create_function("utf8_valid", 1, utf8_valid, deterministic=True)
    conn.create_function("in_encoding", 2, in_encoding, deterministic=True)
    conn.create_function("canonical_ts", 1, canonical_timestamp, deterministic=True)
    conn.create_function("epoch_ts", 2, epoch_timestamp, deterministic=True)
    conn.create_function("real_text", 1, real_text, deterministic=True)
    conn.create_function("strip_nul", 1, _strip_nul, deterministic=True)


def _python_arg(c: str) -> str:
    """A value for a Python function: text as its bytes (it may not be UTF-8), the rest as it is."""
    return f"iif(typeof({c}) = 'text', CAST({c} AS BLOB), {c})"


def text_row_test(text_columns: list[str], conversions: Conversions) -> str:
    """SQLite: true when every text value of the row is UTF-8 (and fits the target's encoding),
    at one Python call per row, not per value. A newline between the values keeps one value's
    broken tail from pairing with the next value's head."""
    if not text_columns:
        return "1"
    joined = " || char(10) || ".join(f"coalesce({c}, '')" for c in text_columns)
    joined = f"CAST({joined} AS BLOB)"
    test = f"utf8_valid({joined})"
    if conversions.python_encoding:
        test += f" AND in_encoding({joined}, {sql_text(conversions.python_encoding)})"
    return test


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

    def to_sqlite(self, c: str) -> str:
        """(SQLite) the other way: PostgreSQL's text for a value (as `copy` sends it and COPY TO
        prints it) back to the form the app's SQLAlchemy stores in SQLite."""
        raise NotImplementedError

    def readback_form(self, c: str) -> str | None:
        """(SQLite) for the export's verification: true when a non-NULL value whose `copy_canonical`
        text equals PostgreSQL's own is in the app's form (None: the equality alone proves it).
        `canonical` less what that equality already makes certain (ranges, lengths, calendars),
        as that is the one test run on every value of the file."""
        return self.canonical(c)

    def app_form(self, c: str) -> str:
        """(PostgreSQL) `to_sqlite` done by PostgreSQL: a stored value as the app's SQLAlchemy
        keeps it in SQLite, so that the export back only binds and stores it. Whatever has no
        such form stays as PostgreSQL prints it, and the export's verification refuses it."""
        return c

    def has_app_form(self, c: str) -> str | None:
        """(PostgreSQL) true for a non-NULL value the app can keep in SQLite (None: every value
        of the type can), so that the way back refuses the others before it writes anything."""
        return None


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
            # A whole REAL (2.0: a column of REAL or no affinity keeps it so) is that integer exactly.
            f"WHEN typeof({c}) = 'real' AND {c} = CAST({c} AS INTEGER) "
            f"THEN CASE WHEN {c} BETWEEN {INT32_MIN} AND {INT32_MAX} THEN NULL ELSE 'integer_out_of_range' END "
            "ELSE 'not_an_integer' END"
        )

    def conversions(self, c: str) -> list[tuple[str, str]]:
        return [
            ("integer stored as text", f"typeof({c}) = 'text'"),
            ("whole number stored as a real", f"typeof({c}) = 'real'"),
        ]

    def render(self, c: str) -> str:
        return f"{c}::text"

    def to_sqlite(self, c: str) -> str:
        return f"CAST({c} AS INTEGER)"

    def readback_form(self, c: str) -> str:
        return f"typeof({c}) = 'integer'"  # text '5' reads back as 5 does; a real as '5.0'


class TextCodec(Codec):
    kind = "text"

    def __init__(self, length: int | None, conversions: Conversions) -> None:
        self.length = length
        self.strip_nul = conversions.strip_nul
        # In SQL_ASCII every byte is a character: varchar(n) then counts bytes.
        self.count_bytes = conversions.target_encoding == "SQL_ASCII"
        self.python_encoding = conversions.python_encoding

    def _value(self, c: str) -> str:
        if self.strip_nul:
            return f"(CASE WHEN instr(CAST({c} AS BLOB), x'00') THEN CAST(strip_nul({_python_arg(c)}) AS TEXT) ELSE {c} END)"
        return c

    def copy(self, c: str) -> str:
        return f"CASE WHEN typeof({c}) = 'real' THEN real_text({c}) ELSE CAST({self._value(c)} AS TEXT) END"

    def copy_canonical(self, c: str) -> str:
        return c

    def _fits(self, c: str, value: str) -> str:
        """SQL: the value is at most `length` long, as the target counts (bytes are free to count
        and never fewer than characters, so characters are counted only when bytes exceed)."""
        if self.count_bytes:
            return f"length(CAST({c} AS BLOB)) <= {self.length}"
        return f"(length(CAST({c} AS BLOB)) <= {self.length} OR length({value}) <= {self.length})"

    def canonical(self, c: str) -> str:
        # Whether the bytes are UTF-8 (and fit the target's encoding) is checked once per row,
        # by text_row_test.
        test = f"typeof({c}) = 'text' AND NOT instr(CAST({c} AS BLOB), x'00')"
        if self.length is not None:
            test += f" AND {self._fits(c, c)}"
        return test

    def problem(self, c: str) -> str:
        checks = [f"WHEN {c} IS NULL THEN NULL", f"WHEN typeof({c}) = 'blob' THEN 'binary_in_text_column'",
                  f"WHEN typeof({c}) = 'real' AND real_text({c}) IS NULL THEN 'inexact_real'"]  # fmt: skip
        if not self.strip_nul:
            checks.append(f"WHEN instr(CAST({c} AS BLOB), x'00') THEN 'nul_byte'")
        checks.append(f"WHEN typeof({c}) = 'text' AND NOT utf8_valid(CAST({c} AS BLOB)) THEN 'not_utf8'")
        if self.python_encoding:
            checks.append(
                f"WHEN typeof({c}) = 'text' AND NOT in_encoding(CAST({c} AS BLOB), {sql_text(self.python_encoding)}) "
                "THEN 'not_in_target_encoding'"
            )
        if self.length is not None:
            value = f"({self.copy(c)})"
            checks.append(f"WHEN NOT {self._fits(value, value)} THEN 'too_long'")
        return f"CASE {' '.join(checks)} END"

    def conversions(self, c: str) -> list[tuple[str, str]]:
        result = [("number stored in a text column", f"typeof({c}) IN ('integer', 'real')")]
        if self.strip_nul:
            result.append(("NUL bytes stripped (--strip-nul)", f"instr(CAST({c} AS BLOB), x'00') > 0"))
        return result

    def render(self, c: str) -> str:
        return f"{c}::text"

    def to_sqlite(self, c: str) -> str:
        return f"CAST({c} AS TEXT)"

    def readback_form(self, c: str) -> str:
        # A number reads back as its text; text reads back only up to a NUL byte.
        return f"typeof({c}) = 'text' AND NOT instr(CAST({c} AS BLOB), x'00')"


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

    def to_sqlite(self, c: str) -> str:
        return f"CASE {c} WHEN 't' THEN 1 WHEN 'f' THEN 0 END"

    def app_form(self, c: str) -> str:
        return f"{c}::int"

    def readback_form(self, c: str) -> None:
        return None  # only 0 and 1 read back as 'f' and 't' (copy_canonical)


class TimestampCodec(Codec):
    """Naive UTC timestamps. PostgreSQL prints microseconds without trailing zeros, so we send them so."""

    kind = "timestamp"

    def __init__(self, epoch_unit: str | None = None) -> None:
        self.epoch_unit = epoch_unit

    @staticmethod
    def _is_number(c: str) -> str:
        """SQL: an epoch number, not a date (an INTEGER or REAL, or text of digits alone)."""
        return (
            f"(typeof({c}) IN ('integer', 'real') OR (typeof({c}) = 'text' AND {c} GLOB '[0-9]*' "
            f"AND NOT {c} GLOB '*[^0-9.]*'))"
        )

    def _from_number(self, c: str) -> str:
        if self.epoch_unit is None:  # refused by pre-flight; PostgreSQL would refuse it too
            return f"CAST({c} AS TEXT)"
        return f"rtrim(rtrim(epoch_ts({_python_arg(c)}, {sql_text(self.epoch_unit)}), '0'), '.')"

    def copy(self, c: str) -> str:
        return (
            f"CASE WHEN {c} IS NULL THEN NULL WHEN {c} GLOB '{_TS_SHAPE}' THEN rtrim(rtrim({c}, '0'), '.') "
            f"WHEN {c} GLOB '{_TS19}' THEN {c} WHEN {self._is_number(c)} THEN {self._from_number(c)} "
            f"ELSE rtrim(rtrim(canonical_ts({_python_arg(c)}), '0'), '.') END"
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
        if self.epoch_unit is None:
            number = "'epoch_number'"
        else:
            number = f"CASE WHEN epoch_ts({_python_arg(c)}, {sql_text(self.epoch_unit)}) IS NULL THEN 'bad_datetime' END"
        return (
            f"CASE WHEN {c} IS NULL THEN NULL WHEN {fast} THEN NULL WHEN {exact} THEN NULL "
            f"WHEN {self._is_number(c)} THEN {number} "
            f"WHEN canonical_ts({_python_arg(c)}) IS NULL THEN 'bad_datetime' END"
        )

    def conversions(self, c: str) -> list[tuple[str, str]]:
        result = [
            ("datetime without fractional seconds", f"{c} GLOB '{_TS19}'"),
            ("ISO datetime normalized (T, Z, offset to UTC, date only)",
             f"CASE WHEN {c} IS NULL OR {c} GLOB '{_TS26}' OR {c} GLOB '{_TS19}' OR {self._is_number(c)} THEN 0 "
             f"ELSE canonical_ts({_python_arg(c)}) IS NOT NULL END"),
        ]  # fmt: skip
        if self.epoch_unit is not None:
            result.append((f"epoch {self.epoch_unit} converted (--epoch-unit)", self._is_number(c)))
        return result

    def render(self, c: str) -> str:
        return f"{c}::text"

    def to_sqlite(self, c: str) -> str:
        # PostgreSQL drops trailing zeros of the fraction; SQLAlchemy's SQLite form has six digits.
        return f"CASE WHEN instr({c}, '.') THEN substr({c} || '000000', 1, 26) ELSE {c} || '.000000' END"

    def readback_form(self, c: str) -> str:
        # Trimmed of its zeros, a value of this shape equals PostgreSQL's text only if it is that
        # timestamp with six fractional digits (canonical_shape's argument).
        return self.canonical_shape(c)

    def app_form(self, c: str) -> str:
        # to_char would print 44 BC as 0044 and infinity as NULL: those stay PostgreSQL's text,
        # which is not the app's form (refused before the export, and by its verification).
        return f"CASE WHEN {self.has_app_form(c)} THEN to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US') ELSE {c}::text END"

    def has_app_form(self, c: str) -> str:
        # Python's datetime, which the app's SQLAlchemy reads the text into, holds years 1 to 9999.
        return f"{c} BETWEEN '0001-01-01' AND '9999-12-31 23:59:59.999999'"


def codec_for(column: Column, conversions: Conversions | None = None) -> Codec:
    """The codec for a model column, from its SQLAlchemy type (never from SQLite's type names)."""
    conversions = conversions or Conversions()
    t = column.type
    if isinstance(t, Boolean):
        return BooleanCodec()
    if isinstance(t, DateTime):
        if t.timezone:
            raise NotImplementedError(f"{column} is timezone-aware; the models use naive UTC")
        return TimestampCodec(conversions.epoch_unit)
    if isinstance(t, Integer):
        return IntegerCodec()
    if isinstance(t, (String, Text)):
        return TextCodec(getattr(t, "length", None), conversions)
    raise NotImplementedError(f"no conversion for column {column} of type {t!r}")
