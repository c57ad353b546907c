"""An independent check of a migration: every todo.db row is in PostgreSQL or in the rejects file.

It does not import todo_migration and does not trust the tool's verification. It reads both databases
itself and asserts, per model table:

- every source row — enumerated by a full scan (by rowid where the table has one, else by the
  WITHOUT ROWID key), whatever its id's type or NULL-ness, and counted again with count(*) — is
  EITHER in PostgreSQL with every model column equal to the value the rules below expect, OR in the
  rejects file with its original values, exactly once;
- PostgreSQL holds no other row, and no id twice.

Its own conversion rules, written from models.py (not copied from the tool):

- Integer: an SQLite integer, or text that is a decimal integer ('42', '-7'), in PostgreSQL
  integer's range;
- Boolean: 0/1, or the text true/false/t/f/yes/no/on/off/1/0 (any case);
- DateTime: text 'YYYY-MM-DD HH:MM:SS[.ffffff]' (SQLAlchemy's form) or ISO 8601 extended ('T'
  separator, seconds optional, 'Z' or ±HH:MM converted to UTC, a date alone = midnight), at most 6
  fractional digits, a real calendar date; numbers (integer, real, or numeric text) only when the run
  used --epoch-unit, as seconds or milliseconds since 1970-01-01 UTC, exactly. Compared as whole
  microseconds since 1970 (so no year limit of Python's datetime gets in the way);
- String(n) / Text: text whose bytes are UTF-8, without NUL, at most n characters (n bytes in an
  SQL_ASCII database), encodable in the target's encoding, arriving byte-identical; an integer as its
  decimal text; a real r as any text t with float(t) == r exactly (never an infinity);
- NULL where the model allows it; a model column missing from the source gets its server default.

Rejects file: JSON lines, parsed strictly (no bare NaN/Infinity), each
{"table", "id", "rowid" (for tables with a rowid), "reason", "kind", "row": {column: original value}}
with bytes as {"base64": …}. A record is matched to its source row by rowid when it has one, else by
its original values.

    result = compare("todo.db", "postgresql://…", schema="public", rejects="todo.db.rejects.jsonl")
    result.tables["tasks"].source_rows, .in_pg, .rejected, .rejected_rows
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import sqlite3
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import psycopg2
from sqlalchemy import Boolean, DateTime, Integer, String, false, true
from sqlalchemy.sql.elements import TextClause

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import Base  # noqa: E402

TABLES = ("users", "tasks", "recurring_patterns")
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# PostgreSQL timestamp's range, in microseconds since 1970-01-01 (its limits are 4714-11-24 BC and
# 294276-12-31 23:59:59.999999 AD, held as microseconds since 2000-01-01).
_PG_2000 = 946_684_800_000_000
TS_MIN = -211_813_488_000_000_000 + _PG_2000
TS_END = 9_223_371_331_200_000_000 + _PG_2000  # exclusive
BOOL_WORDS = {
    "true": True, "t": True, "yes": True, "on": True, "1": True,
    "false": False, "f": False, "no": False, "off": False, "0": False,
}  # fmt: skip
ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?([Zz]|[+-]\d{2}:\d{2})?)?"
)
DECIMAL_INT = re.compile(r"[+-]?\d+")
DECIMAL_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
EPOCH_UNITS = {"seconds": 1_000_000, "milliseconds": 1_000}
LONG = 200  # longer strings are compared by SHA-256 (keeps memory small with 50 KB values)
PYTHON_CODECS = {"LATIN1": "latin-1", "WIN1252": "cp1252", "LATIN9": "iso8859-15", "UTF8": "utf-8"}


class ComparisonError(AssertionError):
    """The migration lost, changed, invented or double-counted rows; the message lists them."""


@dataclass
class Rejected:
    rowid: int | None  # the source rowid (None for a WITHOUT ROWID table)
    id: object  # the source id as SQLite holds it (int, str, bytes, float or None)
    kind: str
    reason: str


@dataclass
class TableResult:
    name: str
    source_name: str | None  # the table's name in todo.db ('Users'), None when it is missing
    has_rowid: bool
    source_rows: int = 0
    in_pg: int = 0
    rejected: int = 0
    rejected_rows: list[Rejected] = field(default_factory=list)

    def rejected_ids(self) -> dict[object, str]:
        """Source id -> kind (ids that occur once among the rejected rows)."""
        return {r.id: r.kind for r in self.rejected_rows}


@dataclass
class CompareResult:
    tables: dict[str, TableResult]
    rejects: list[dict]
    target_encoding: str

    def counts(self) -> dict[str, tuple[int, int, int]]:
        """table -> (source rows, in PostgreSQL, rejected)."""
        return {n: (t.source_rows, t.in_pg, t.rejected) for n, t in self.tables.items()}


# --- values ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealText:
    """Expected text for a REAL in a text column: any t with float(t) == value."""

    value: float


class Unconvertible(Exception):
    pass


def _shrink(value: object) -> object:
    if isinstance(value, str) and len(value) > LONG:
        return ("sha256", len(value), hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest())
    return value


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Unconvertible("not_utf8") from None


def _iso_to_micros(text: str) -> int:
    m = ISO.fullmatch(text)
    if not m:
        raise Unconvertible(f"bad_datetime {text[:40]!r}")
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))
    except ValueError:
        raise Unconvertible(f"bad_datetime {text!r}") from None
    micros = (dt - datetime(1970, 1, 1)) // timedelta(microseconds=1) + int((frac or "0").ljust(6, "0"))
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        micros -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60) * 1_000_000
    return micros


def _epoch_to_micros(value: Fraction, unit: str | None, shown: object) -> int:
    if unit is None:
        raise Unconvertible(f"epoch_number {shown!r} without --epoch-unit")
    exact = value * EPOCH_UNITS[unit]
    micros = round(exact)  # exact for every value this suite stores; half-even otherwise
    return micros


def expect_value(column, typ: str, raw: object, *, epoch_unit: str | None, encoding: str) -> object:
    """The value PostgreSQL must hold for the SQLite value `raw` = (typeof, value), or Unconvertible."""
    kind, value = raw
    if kind == "null":
        if not column.nullable:
            raise Unconvertible("null_in_not_null")
        return None
    if typ == "integer":
        if kind == "integer":
            number = value
        elif kind == "text" and DECIMAL_INT.fullmatch(_text(value)):
            number = int(_text(value))
        elif kind == "real" and float(value).is_integer():
            number = int(value)
        else:
            raise Unconvertible(f"not_an_integer {kind} {value!r}")
        if not INT_MIN <= number <= INT_MAX:
            raise Unconvertible(f"integer_out_of_range {number}")
        return number
    if typ == "boolean":
        if kind == "integer" and value in (0, 1):
            return bool(value)
        if kind == "text" and _text(value).lower() in BOOL_WORDS:
            return BOOL_WORDS[_text(value).lower()]
        raise Unconvertible(f"not_a_boolean {kind} {value!r}")
    if typ == "datetime":
        if kind == "integer":
            micros = _epoch_to_micros(Fraction(value), epoch_unit, value)
        elif kind == "real":
            if not math.isfinite(value):
                raise Unconvertible("bad_datetime: not finite")
            micros = _epoch_to_micros(Fraction(value), epoch_unit, value)
        elif kind == "text":
            text = _text(value)
            if DECIMAL_NUMBER.fullmatch(text):
                micros = _epoch_to_micros(Fraction(text), epoch_unit, text)
            else:
                micros = _iso_to_micros(text)
        else:
            raise Unconvertible("bad_datetime: a blob")
        if not TS_MIN <= micros < TS_END:
            raise Unconvertible("bad_datetime: outside PostgreSQL's timestamp range")
        return micros
    # String(n) / Text
    if kind == "integer":
        text = str(value)
    elif kind == "real":
        if not math.isfinite(value):
            raise Unconvertible("inexact_real: no exact text form")
        return RealText(value)
    elif kind == "text":
        text = _text(value)
    else:
        raise Unconvertible("binary_in_text_column")
    if "\x00" in text:
        raise Unconvertible("nul_byte")
    length = column.type.length
    if encoding == "SQL_ASCII":
        size = len(text.encode("utf-8"))  # SQL_ASCII counts bytes
    else:
        size = len(text)
        codec = PYTHON_CODECS.get(encoding)
        if codec and codec != "utf-8":
            try:
                text.encode(codec)
            except UnicodeEncodeError:
                raise Unconvertible(f"not_in_target_encoding {encoding}") from None
    if length is not None and size > length:
        raise Unconvertible(f"too_long {size} > {length}")
    return _shrink(text)


def _type_of(column) -> str:
    t = column.type
    if isinstance(t, Boolean):
        return "boolean"
    if isinstance(t, DateTime):
        return "datetime"
    if isinstance(t, Integer):
        return "integer"
    if isinstance(t, String):
        return "text"
    raise TypeError(f"no rule for {column}: {t!r}")


def _server_default(column) -> object:
    """The value PostgreSQL fills in for a model column the source lacks."""
    default = column.server_default
    if default is None:
        return None
    arg = default.arg
    if isinstance(arg, type(true())) or arg is True:
        return True
    if isinstance(arg, type(false())) or arg is False:
        return False
    text = arg.text if isinstance(arg, TextClause) else str(arg)
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    return int(text)


# --- the rejects file --------------------------------------------------------------------------------


def _no_constants(name: str) -> object:
    raise ValueError(f"bare {name} in the rejects file (not JSON)")


def read_rejects(path: Path | str | None) -> list[dict]:
    """Strict JSON lines; every record has the documented keys."""
    if path is None or not Path(path).exists():
        return []
    records = []
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line, parse_constant=_no_constants)
        except ValueError as e:
            raise ComparisonError(f"rejects line {n} is not strict JSON ({e}): {line[:120]}") from None
        if not isinstance(record, dict):
            raise ComparisonError(f"rejects line {n} is not an object: {line[:80]}")
        missing = {"table", "id", "reason", "kind", "row"} - set(record)
        if missing:
            raise ComparisonError(f"rejects line {n} lacks {sorted(missing)}: {line[:120]}")
        if not isinstance(record["row"], dict):
            raise ComparisonError(f"rejects line {n}: row is not an object")
        records.append(record)
    return records


def _json_matches(raw: tuple[str, object], jv: object) -> bool:
    """Whether a rejects record's value is the original SQLite value."""
    kind, value = raw
    if isinstance(jv, dict) and kind != "real":
        if set(jv) != {"base64"}:
            return False
        try:
            data = base64.b64decode(jv["base64"], validate=True)
        except (ValueError, TypeError):
            return False
        if kind in ("text", "blob"):
            return data == value
        return False
    if kind == "null":
        return jv is None
    if kind == "integer":
        if isinstance(jv, bool):
            return False
        return (isinstance(jv, int) and jv == value) or (isinstance(jv, str) and jv == str(value))
    if kind == "real":
        if not math.isfinite(value):  # no JSON number can hold it: any spelling that says which
            spelled = json.dumps(jv).lower()
            return (
                isinstance(jv, (str, dict))
                and ("inf" in spelled or "nan" in spelled)
                and (("-" in spelled) == (value < 0))
            )
        return isinstance(jv, (int, float)) and not isinstance(jv, bool) and jv == value
    if kind == "text":
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            return False
        if isinstance(jv, str):
            return jv == text
        # a number for numeric-looking text ('5' shown as 5) is accepted
        return isinstance(jv, (int, float)) and not isinstance(jv, bool) and str(jv) == text
    return False  # a blob must be {"base64": …}


def _canon_id(raw: tuple[str, object]) -> object:
    kind, value = raw
    if kind == "text":
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return ("bytes", value)
        return int(value) if DECIMAL_INT.fullmatch(value) else value
    if kind == "real" and math.isfinite(value) and value == int(value):
        return int(value)
    return value


def _canon_json_id(jv: object) -> object:
    if isinstance(jv, dict) and "base64" in jv:
        try:
            data = base64.b64decode(jv["base64"])
        except (ValueError, TypeError):
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return ("bytes", data)
        return int(text) if DECIMAL_INT.fullmatch(text) else text
    if isinstance(jv, str) and DECIMAL_INT.fullmatch(jv):
        return int(jv)
    if isinstance(jv, float) and math.isfinite(jv) and jv == int(jv):
        return int(jv)
    return jv


def _python_id(raw: tuple[str, object]) -> object:
    kind, value = raw
    if kind == "text":
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


# --- the comparison ------------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pg_rows(pg, schema: str, table, dt_columns: set[str]) -> dict[object, list[tuple]]:
    """id -> the rows PostgreSQL holds (streamed; long strings as digests, timestamps as microseconds)."""
    select = []
    for col in table.columns:
        q = _quote(col.name)
        select.append(f"(extract(epoch from {q}) * 1000000)" if col.name in dt_columns else q)
    rows: dict[object, list[tuple]] = {}
    id_index = [c.name for c in table.columns].index("id")
    with pg.cursor(name=f"compare_{table.name}") as cur:
        cur.itersize = 500
        cur.execute(f"SELECT {', '.join(select)} FROM {_quote(schema)}.{_quote(table.name)}")
        for row in cur:
            values = []
            for v in row:
                if isinstance(v, Decimal):
                    v = int(v) if v.is_finite() and v == v.to_integral_value() else ("timestamp", str(v))
                values.append(_shrink(v))
            rows.setdefault(row[id_index], []).append(tuple(values))
    return rows


def _equal(expected: object, got: object) -> bool:
    if isinstance(expected, RealText):
        if not isinstance(got, str):
            return False
        try:
            return float(got) == expected.value
        except ValueError:
            return False
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and expected == got
    return expected == got


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def compare(
    sqlite_path: Path | str,
    pg_url: str,
    *,
    schema: str = "public",
    rejects: Path | str | None = None,
    epoch_unit: str | None = None,
    tables: tuple[str, ...] = TABLES,
) -> CompareResult:
    """Check the guarantee; raise ComparisonError listing every difference (the first 30)."""
    if epoch_unit not in (None, *EPOCH_UNITS):
        raise ValueError(f"epoch_unit must be one of {list(EPOCH_UNITS)}")
    records = read_rejects(rejects)
    problems: list[str] = []
    results: dict[str, TableResult] = {}
    by_table: dict[str, list[dict]] = {}
    for record in records:
        name = str(record["table"]).lower()
        if name not in tables:
            problems.append(f"rejects file names table {record['table']!r}, not one of the app's")
            continue
        by_table.setdefault(name, []).append(record)

    src = sqlite3.connect(f"file:{Path(sqlite_path).resolve()}?mode=ro", uri=True)
    src.text_factory = bytes
    pg = psycopg2.connect(pg_url)
    try:
        pg.set_client_encoding("UTF8")
        with pg.cursor() as cur:
            cur.execute("SHOW server_encoding")
            encoding = cur.fetchone()[0]
        src.execute("BEGIN")  # one snapshot for the count and the scan
        for name in tables:
            results[name] = _compare_table(
                src,
                pg,
                schema,
                Base.metadata.tables[name],
                by_table.get(name, []),
                epoch_unit,
                encoding,
                problems,
            )
        src.rollback()
    finally:
        src.close()
        pg.rollback()
        pg.close()
    if problems:
        shown = "\n  ".join(problems[:30])
        more = f"\n  … and {len(problems) - 30} more" if len(problems) > 30 else ""
        raise ComparisonError(
            f"{len(problems)} differences between todo.db and PostgreSQL + rejects:\n  {shown}{more}"
        )
    return CompareResult(results, records, encoding)


def _compare_table(src, pg, schema, table, records, epoch_unit, encoding, problems) -> TableResult:
    name = table.name
    found = src.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND lower(name) = ?", (name,)
    ).fetchone()
    source_name = found[0].decode() if found else None
    result = TableResult(name, source_name, has_rowid=False)
    columns = list(table.columns)
    id_index = [c.name for c in columns].index("id")
    types = {c.name: _type_of(c) for c in columns}

    with pg.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{_quote(schema)}.{_quote(name)}",))
        if cur.fetchone()[0] is None:
            problems.append(f"{name}: no such table in PostgreSQL schema {schema}")
            return result
    pg_rows = _pg_rows(pg, schema, table, {c for c, t in types.items() if t == "datetime"})
    for pg_id, rows in pg_rows.items():
        if len(rows) > 1:
            problems.append(f"{name}: PostgreSQL holds id {pg_id} {len(rows)} times")

    # rejects records of this table: by rowid, or (without one) by original values
    by_rowid: dict[int, dict] = {}
    unkeyed: dict[object, list[dict]] = {}
    for record in records:
        rowid = record.get("rowid")
        if rowid is not None:
            if not isinstance(rowid, int) or isinstance(rowid, bool):
                problems.append(f"{name}: rejects record with a rowid that is not an integer: {rowid!r}")
            elif rowid in by_rowid:
                problems.append(f"{name}: rowid {rowid} is in the rejects file twice")
            else:
                by_rowid[rowid] = record
        else:
            row = {str(k).lower(): v for k, v in record["row"].items()}
            unkeyed.setdefault(_canon_json_id(row.get("id", record["id"])), []).append(record)

    if source_name is None:
        for record in records:
            problems.append(f"{name}: rejects record for a table todo.db does not have: {record}")
        for pg_id in pg_rows:
            problems.append(f"{name}: PostgreSQL holds id {pg_id}, but todo.db has no {name} table")
        return result

    q = _quote(source_name)
    source_cols = {
        r[1].decode().lower(): r[1].decode() for r in src.execute(f"PRAGMA table_info({q})").fetchall()
    }
    present = [c for c in columns if c.name in source_cols]
    try:
        src.execute(f"SELECT rowid FROM {q} LIMIT 0")
        result.has_rowid = True
    except sqlite3.OperationalError:
        result.has_rowid = False
    if "id" not in source_cols:
        problems.append(f"{name}: todo.db's {source_name} has no id column")
        return result
    select = ", ".join(
        f"typeof({_quote(source_cols[c.name])}), {_quote(source_cols[c.name])}" for c in present
    )
    scan = f"SELECT {'rowid' if result.has_rowid else 'NULL'}, {select} FROM {q}"
    if result.has_rowid:
        scan += " ORDER BY rowid"
    (count,) = src.execute(f"SELECT count(*) FROM {q}").fetchone()
    defaults = {c.name: _server_default(c) for c in columns if c.name not in source_cols}

    seen_rowids: set[int] = set()
    scanned = 0
    for row in src.execute(scan):
        scanned += 1
        rowid = row[0]
        raw = {
            c.name: (row[1 + 2 * i].decode(), row[2 + 2 * i]) for i, c in enumerate(present)
        }  # column -> (typeof, value)
        where = (
            f"{name} rowid {rowid} id {_python_id(raw['id'])!r}"
            if rowid is not None
            else f"{name} id {_python_id(raw['id'])!r}"
        )
        if rowid is not None:
            seen_rowids.add(rowid)

        # 1. in the rejects file?
        record = by_rowid.pop(rowid, None) if rowid is not None else None
        if record is not None:
            bad = _record_differs(record, raw)
            if bad:
                problems.append(
                    f"{where}: the rejects record for this rowid differs from the source in {bad}"
                )
        else:
            candidates = unkeyed.get(_canon_id(raw["id"]), [])
            for i, candidate in enumerate(candidates):
                if not _record_differs(candidate, raw):
                    record = candidates.pop(i)
                    break
        if record is not None:
            result.rejected += 1
            result.rejected_rows.append(
                Rejected(rowid, _python_id(raw["id"]), str(record["kind"]), str(record["reason"]))
            )
            continue

        # 2. otherwise in PostgreSQL, value for value
        expected = []
        unconvertible = None
        for c in columns:
            if c.name not in raw:
                expected.append(defaults[c.name])
                continue
            try:
                expected.append(
                    expect_value(c, types[c.name], raw[c.name], epoch_unit=epoch_unit, encoding=encoding)
                )
            except Unconvertible as e:
                unconvertible = f"column {c.name} = {_show(_python_id(raw[c.name]))}: {e}"
                break
        if unconvertible:
            problems.append(
                f"{where}: cannot be stored as it is ({unconvertible}) but is not in the rejects file"
            )
            continue
        pg_id = expected[id_index]
        got_rows = pg_rows.get(pg_id)
        if not got_rows:
            problems.append(f"{where}: neither in PostgreSQL nor in the rejects file")
            continue
        got = got_rows.pop(0)
        if not got_rows:
            del pg_rows[pg_id]
        diffs = [
            f"{c.name}: expected {_show(e)}, PostgreSQL has {_show(g)}"
            for c, e, g in zip(columns, expected, got, strict=True)
            if not _equal(e, g)
        ]
        if diffs:
            problems.append(f"{where}: differs in PostgreSQL: {'; '.join(diffs)}")
        result.in_pg += 1

    result.source_rows = scanned
    if scanned != count:
        problems.append(f"{name}: count(*) says {count} rows, a full scan found {scanned}")
    for rowid, record in by_rowid.items():
        problems.append(
            f"{name}: rejects record for rowid {rowid}, which todo.db does not have: {_show(record)}"
        )
    for candidates in unkeyed.values():
        for record in candidates:
            problems.append(f"{name}: rejects record that matches no remaining source row: {_show(record)}")
    for pg_id, rows in pg_rows.items():
        for _ in rows:
            problems.append(
                f"{name}: PostgreSQL holds id {pg_id}, which no unrejected source row accounts for"
            )
    return result


def _record_differs(record: dict, raw: dict[str, tuple[str, object]]) -> list[str]:
    """The columns in which a rejects record's row is not the source row (empty list: it is)."""
    row = {str(k).lower(): v for k, v in record["row"].items()}
    bad = [c for c, value in raw.items() if c not in row or not _json_matches(value, row[c])]
    return bad
