"""Compare the schema PostgreSQL holds with the one the models create (for --verify-only).

Values can match while the schema has drifted: a dropped unique index, foreign key, NOT NULL or
default, or a changed type, would let the app write what it never could before. Expectations come
from the SQLAlchemy models through the PostgreSQL dialect, the facts from pg_catalog (three
queries for all tables, qualified by schema, read-only). Indexes and constraints are matched by
meaning (columns, uniqueness, referenced column, ON DELETE), never by name; an index PostgreSQL
has beyond the models' is not a difference.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field

from psycopg2.extensions import cursor as PgCursor
from sqlalchemy import Column, Index, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import DefaultClause

from .source import as_text, quote_ident

DIALECT = postgresql.dialect()

_COLUMNS_SQL = """
SELECT c.relname::text, a.attname::text,
       pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity <> ''
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')
ORDER BY c.relname, a.attnum
"""

# Key and referenced columns by name, in key order; the referenced table with its schema.
_CONSTRAINTS_SQL = """
SELECT c.relname::text, con.contype, con.convalidated, con.confdeltype,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
             ORDER BY k.ord),
       rn.nspname::text, rc.relname::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num
             ORDER BY k.ord)
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid
LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
WHERE n.nspname = %s AND c.relname = ANY(%s) AND con.contype IN ('p', 'f')
"""

# Only indexes that serve every row of plain columns: a partial, expression or invalid (failed
# CREATE INDEX CONCURRENTLY) index neither enforces uniqueness nor stands in for the models' one.
# Key columns only (indnkeyatts): INCLUDE columns do not count.
_INDEXES_SQL = """
SELECT c.relname::text, i.indisunique,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
             WHERE k.ord <= i.indnkeyatts ORDER BY k.ord)
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = ANY(%s)
  AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
"""

_ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass
class _PgColumn:
    type: str
    not_null: bool
    default: str | None
    identity: bool


@dataclass
class _PgForeignKey:
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str
    validated: bool


@dataclass
class _PgTable:
    columns: dict[str, _PgColumn] = field(default_factory=dict)
    primary_key: tuple[str, ...] | None = None
    foreign_keys: list[_PgForeignKey] = field(default_factory=list)
    indexes: set[tuple[tuple[str, ...], bool]] = field(default_factory=set)  # (columns, unique)


_EXTRA_RULES_SQL = """
SELECT c.relname::text, 'unique index ' || ic.relname::text,
       CASE WHEN i.indpred IS NULL AND i.indexprs IS NULL THEN
         ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
               WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) END,
       pg_catalog.pg_get_indexdef(i.indexrelid)
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s) AND i.indisunique AND NOT i.indisprimary
UNION ALL
SELECT c.relname::text, 'trigger ' || t.tgname::text, NULL, pg_catalog.pg_get_triggerdef(t.oid)
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s) AND NOT t.tgisinternal
UNION ALL
SELECT c.relname::text, 'check constraint ' || k.conname::text, NULL, pg_catalog.pg_get_constraintdef(k.oid)
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s) AND k.contype = 'c'
ORDER BY 1, 2
"""


def extra_rules(cur: PgCursor, tables: list[Table], schema: str) -> list[str]:
    """What PostgreSQL enforces on the app's tables beyond the models: a unique index they do not
    make (partial and expression ones included), a trigger, a CHECK constraint. The values may all
    match, but the app's writes would be refused or changed there, as they never are on SQLite."""
    expected = {t.name: {cols for cols, unique in _expected_indexes(t) if unique} for t in tables}
    cur.execute(_EXTRA_RULES_SQL, {"schema": schema, "names": [t.name for t in tables]})
    extras = []
    for table, what, columns, definition in cur.fetchall():
        if columns is not None and tuple(columns) in expected.get(table, set()):
            continue
        extras.append(f"{table}: {what} that models.py does not make ({' '.join(definition.split())[:120]})")
    return extras


def schema_differences(cur: PgCursor, tables: list[Table], schema: str) -> list[str]:
    """One short phrase per way `schema` in PostgreSQL differs from what the models create.

    Reads pg_catalog only, so it is safe inside a read-only transaction. An empty list means the
    tables have the models' columns, types, NOT NULLs, defaults, keys and indexes.
    """
    found = _read_catalog(cur, [t.name for t in tables], schema)
    problems: list[str] = []
    for table in tables:
        pg = found.get(table.name)
        if pg is None:
            problems.append(f"{table.name}: table missing")
            continue
        problems += _column_differences(table, pg)
        problems += _key_differences(table, pg, schema)
        problems += _index_differences(table, pg)
    return problems


# --- reading the catalog ---------------------------------------------------------------------


def _read_catalog(cur: PgCursor, names: list[str], schema: str) -> dict[str, _PgTable]:
    tables: dict[str, _PgTable] = {}
    cur.execute(_COLUMNS_SQL, (schema, names))
    for table, column, type_, not_null, default, identity in cur.fetchall():
        pg = tables.setdefault(table, _PgTable())
        if column is not None:  # None: a table with no columns left
            pg.columns[column] = _PgColumn(type_, not_null, default, identity)
    cur.execute(_CONSTRAINTS_SQL, (schema, names))
    for table, kind, validated, on_delete, cols, ref_schema, ref_table, ref_cols in cur.fetchall():
        if kind == "p":
            tables[table].primary_key = tuple(cols)
        else:
            tables[table].foreign_keys.append(
                _PgForeignKey(
                    tuple(cols), ref_schema, ref_table, tuple(ref_cols), _ON_DELETE[on_delete], validated
                )
            )
    cur.execute(_INDEXES_SQL, (schema, names))
    for table, unique, cols in cur.fetchall():
        if table in tables:  # not an index on a materialized view of that name
            tables[table].indexes.add((tuple(cols), unique))
    return tables


# --- columns ---------------------------------------------------------------------------------


def _column_differences(table: Table, pg: _PgTable) -> list[str]:
    problems = []
    for col in table.columns:
        found = pg.columns.get(col.name)
        if found is None:
            problems.append(f"{table.name}.{col.name}: column missing")
            continue
        problems += [f"{table.name}.{col.name}: {p}" for p in _column_problems(table, col, found)]
    for name in pg.columns:
        if name not in table.columns:
            problems.append(f"{table.name}.{name}: column not in the models")
    return problems


def _column_problems(table: Table, col: Column, pg: _PgColumn) -> list[str]:
    problems = []
    expected_type = pg_type_name(col.type.compile(dialect=DIALECT))
    if pg_type_name(pg.type) != expected_type:
        problems.append(f"type {pg.type}, models say {expected_type}")
    if not col.nullable and not pg.not_null:
        problems.append("NOT NULL missing")
    elif col.nullable and pg.not_null:
        problems.append("NOT NULL, models say nullable")
    if col is table.autoincrement_column and col.server_default is None:
        if not pg.identity and not (pg.default or "").startswith("nextval("):
            problems.append("no sequence default")
        return problems
    problems += _default_problems(col, pg.default)
    return problems


def _default_problems(col: Column, pg_default: str | None) -> list[str]:
    if col.server_default is not None and not isinstance(col.server_default, DefaultClause):
        return []  # FetchedValue: the server fills it by means the models do not describe
    expected = DIALECT.ddl_compiler(DIALECT, None).get_column_default_string(col)
    if expected is None and pg_default is None:
        return []
    if expected is None:
        return [f"default {normalize_default(pg_default)} not in the models"]
    if pg_default is None:
        return [f"default {expected} missing"]
    if normalize_default(expected) != normalize_default(pg_default):
        return [f"default {normalize_default(pg_default)}, models say {expected}"]
    return []


# format_type's spelling of the names SQLAlchemy's PostgreSQL compiler (or a person) may write.
_TYPE_ALIASES = {
    "varchar": "character varying",
    "char": "character",
    "bpchar": "character",
    "nchar": "character",
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "serial": "integer",
    "bigserial": "bigint",
    "smallserial": "smallint",
    "float8": "double precision",
    "float4": "real",
    "bool": "boolean",
    "decimal": "numeric",
    "timestamptz": "timestamp with time zone",
    "timetz": "time with time zone",
    "varbit": "bit varying",
}
_ZONED = ("timestamp", "time")
_TYPE_RE = re.compile(
    r"^(?P<base>[a-z0-9_ .\"]+?)\s*(?P<mod>\([^)]*\))?\s*(?P<zone>with(?:out)? time zone)?\s*(?P<array>(\[\d*\])*)$"
)


def pg_type_name(text: str) -> str:
    """A type as PostgreSQL's format_type spells it: VARCHAR(255) → character varying(255)."""
    spelled = " ".join(text.strip().lower().split())
    m = _TYPE_RE.match(spelled)
    if not m:
        return spelled
    base = _TYPE_ALIASES.get(m["base"], m["base"])
    mod = (m["mod"] or "").replace(" ", "")
    array = "[]" if m["array"] else ""
    if base == "float":  # FLOAT(p): real up to 24 bits of precision, double precision above
        precision = int(mod[1:-1]) if mod[1:-1].isdigit() else 53
        return ("real" if precision <= 24 else "double precision") + array
    if base in _ZONED:
        zone = m["zone"] or "without time zone"
        return f"{base}{mod} {zone}{array}"
    if base.endswith(" with time zone") or base.endswith(" without time zone"):
        head, _, zone = base.partition(" with")
        return f"{head}{mod} with{zone}{array}"
    return f"{base}{mod}{array}"


# --- defaults --------------------------------------------------------------------------------

_STRING_RE = re.compile(r"'(?:[^']|'')*'")
_CAST_RE = re.compile(
    r"::\s*(?:\"[^\"]+\"|[a-z_][\w.]*(?:\s+(?:varying|precision|with(?:out)?\s+time\s+zone))?)"
    r"(?:\s*\([^)]*\))?(?:\s*\[\])*",
    re.IGNORECASE,
)
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$")


def normalize_default(expr: str) -> str:
    """A default expression in one spelling, so the models' text and pg_get_expr's compare equal.

    Casts go ('medium'::character varying → 'medium'), redundant outer parentheses go, words
    outside string literals are lower-cased and a quoted number or boolean is unquoted
    (PostgreSQL stores DEFAULT '1' on an integer as 1, and DEFAULT -1 as '-1'::integer).
    """
    parts = []
    last = 0
    for m in _STRING_RE.finditer(expr):
        parts.append(_normalize_code(expr[last : m.start()]))
        parts.append(m.group())
        last = m.end()
    parts.append(_normalize_code(expr[last:]))
    text = _strip_parentheses("".join(parts).strip())
    if _STRING_RE.fullmatch(text):
        inner = text[1:-1]
        if _NUMBER_RE.match(inner) or inner.lower() in ("true", "false"):
            return inner.lower()
    return text


def _normalize_code(code: str) -> str:
    return " ".join(_CAST_RE.sub("", code).lower().split())


def _strip_parentheses(text: str) -> str:
    while text.startswith("(") and text.endswith(")") and _closing_paren(text) == len(text) - 1:
        text = text[1:-1].strip()
    return text


def _closing_paren(text: str) -> int:
    """Index of the parenthesis that closes the one at 0, ignoring those inside literals."""
    depth = 0
    in_string = False
    for i, ch in enumerate(text):
        if ch == "'":
            in_string = not in_string
        elif not in_string and ch == "(":
            depth += 1
        elif not in_string and ch == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


# --- keys and indexes ------------------------------------------------------------------------


def _cols(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names)


def _key_differences(table: Table, pg: _PgTable, schema: str) -> list[str]:
    problems = []
    pk = tuple(c.name for c in table.primary_key.columns)
    if pk and pg.primary_key != pk:
        problems.append(f"{table.name}: primary key on ({_cols(pk)}) missing")
    expected = []
    for fk in sorted(table.foreign_key_constraints, key=lambda f: [c.name for c in f.columns]):
        ref = fk.referred_table
        want = _PgForeignKey(
            columns=tuple(c.name for c in fk.columns),
            ref_schema=ref.schema or schema,
            ref_table=ref.name,
            ref_columns=tuple(e.column.name for e in fk.elements),
            on_delete=(fk.ondelete or "NO ACTION").upper(),
            validated=True,
        )
        expected.append(want)
        problems += _foreign_key_problems(table.name, want, pg.foreign_keys, schema)
    for got in pg.foreign_keys:
        if not any(_same_reference(got, want) for want in expected):
            problems.append(f"{_fk_where(table.name, got)}: {_fk_target(got, schema)} not in the models")
    return problems


def _same_reference(a: _PgForeignKey, b: _PgForeignKey) -> bool:
    return (a.columns, a.ref_schema, a.ref_table, a.ref_columns) == (
        b.columns, b.ref_schema, b.ref_table, b.ref_columns)  # fmt: skip


def _fk_where(table: str, fk: _PgForeignKey) -> str:
    return f"{table}.{fk.columns[0]}" if len(fk.columns) == 1 else f"{table}.({_cols(fk.columns)})"


def _fk_target(fk: _PgForeignKey, schema: str) -> str:
    ref = fk.ref_table if fk.ref_schema == schema else f"{fk.ref_schema}.{fk.ref_table}"
    cols = fk.ref_columns[0] if len(fk.ref_columns) == 1 else f"({_cols(fk.ref_columns)})"
    return f"foreign key to {ref}.{cols}"


def _foreign_key_problems(
    table: str, want: _PgForeignKey, found: list[_PgForeignKey], schema: str
) -> list[str]:
    where, target = _fk_where(table, want), _fk_target(want, schema)
    action = "" if want.on_delete == "NO ACTION" else f" ON DELETE {want.on_delete}"
    same = [got for got in found if _same_reference(got, want)]
    if not same:
        return [f"{where}: {target}{action} missing"]
    if not any(got.on_delete == want.on_delete for got in same):
        return [f"{where}: {target} is ON DELETE {same[0].on_delete}, models say ON DELETE {want.on_delete}"]
    if not any(got.on_delete == want.on_delete and got.validated for got in same):
        return [f"{where}: {target} is NOT VALID (existing rows were never checked)"]
    return []


def _expected_indexes(table: Table) -> list[tuple[tuple[str, ...], bool]]:
    """(columns, unique) for each model index and unique constraint on plain columns."""
    expected = []
    for item in [*table.indexes, *table.constraints]:
        if not isinstance(item, Index | UniqueConstraint):
            continue
        columns = list(item.expressions) if isinstance(item, Index) else list(item.columns)
        if not columns or not all(isinstance(c, Column) for c in columns):
            continue  # an expression index: its meaning is not comparable by columns
        unique = True if isinstance(item, UniqueConstraint) else bool(item.unique)
        expected.append((tuple(c.name for c in columns), unique))
    return sorted(set(expected))


def _index_differences(table: Table, pg: _PgTable) -> list[str]:
    problems = []
    for columns, unique in _expected_indexes(table):
        if (columns, unique) in pg.indexes:
            continue
        kind = "unique index" if unique else "index"
        note = "" if unique or (columns, True) not in pg.indexes else " (there is a unique one)"
        problems.append(f"{table.name}: {kind} on ({_cols(columns)}) missing{note}")
    return problems


# --- the same for a todo.db the way back made (--reverse --verify-only, --reverse --sync) ---------


def file_schema_differences(conn: sqlite3.Connection, tables: list[Table]) -> list[str]:
    """What a todo.db lacks of the schema the app creates on SQLite: its tables' columns and NOT
    NULLs, unique and plain indexes, foreign keys with their ON DELETE. Matched by meaning, as
    for PostgreSQL; what the file has beyond the models is not a difference."""
    problems = []
    for table in tables:
        columns = {
            as_text(r[1]): bool(r[3])
            for r in conn.execute(f"PRAGMA main.table_info({quote_ident(table.name)})")
        }
        if not columns:
            problems.append(f"{table.name}: table missing")
            continue
        for col in table.columns:
            if col.name not in columns:
                problems.append(f"{table.name}.{col.name}: column missing")
            elif not col.nullable and not col.primary_key and not columns[col.name]:
                problems.append(f"{table.name}.{col.name}: NOT NULL missing")
        problems += _file_index_differences(conn, table)
        for (trigger,) in conn.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'trigger' AND tbl_name = ?", (table.name,)
        ):
            problems.append(f"{table.name}: trigger {as_text(trigger)} (the app creates none)")
        keys = {
            (as_text(r[3]), as_text(r[2]), as_text(r[4]), as_text(r[6]).upper())
            for r in conn.execute(f"PRAGMA main.foreign_key_list({quote_ident(table.name)})")
        }
        for fk in table.foreign_keys:
            want = (
                fk.parent.name,
                fk.column.table.name,
                fk.column.name,
                (fk.ondelete or "NO ACTION").upper(),
            )
            if want not in keys:
                problems.append(
                    f"{table.name}: foreign key ({fk.parent.name}) → {fk.column.table.name}({fk.column.name}) "
                    f"ON DELETE {want[3]} missing"
                )
    return problems


def _file_index_differences(conn: sqlite3.Connection, table: Table) -> list[str]:
    """The app's indexes, each as a full index in SQLite's default collation; and no unique index
    the app does not make (partial or NOCASE ones included): it would refuse rows the app writes."""
    plain, odd = set(), []
    for row in conn.execute(f"PRAGMA main.index_list({quote_ident(table.name)})"):
        name, unique, partial = as_text(row[1]), bool(row[2]), bool(row[4])
        keys = [r for r in conn.execute(f"PRAGMA main.index_xinfo({quote_ident(name)})") if r[5]]
        columns = tuple(as_text(r[2]) for r in keys)
        if partial or any(as_text(r[4]).upper() != "BINARY" for r in keys):
            odd.append((name, columns, unique))
        else:
            plain.add((columns, unique))
    expected = _expected_indexes(table)
    problems = [
        f"{table.name}: {'unique index' if unique else 'index'} on ({_cols(columns)}) missing"
        for columns, unique in expected
        if (columns, unique) not in plain
    ]
    problems += [
        f"{table.name}: unique index on ({_cols(columns)}), which the app does not make"
        for columns, unique in sorted(plain)
        if unique and (columns, True) not in expected
    ]
    problems += [
        f"{table.name}: unique index {name} on ({_cols(columns)}) is partial or not in the default collation"
        for name, columns, unique in odd
        if unique
    ]
    return problems
