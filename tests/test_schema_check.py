"""schema_differences: a target the CLI built matches the models; each kind of drift is named.

The sample is migrated once per module (into public and into schema other); each test breaks one
thing inside a transaction, reads the catalog in that same transaction, and rolls back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
import pytest
from conftest import run_cli
from sqlalchemy import MetaData, Table

from models import Base
from todo_migration.schema_check import normalize_default, pg_type_name, schema_differences
from tools.make_todo_db import make_todo_db


def model_tables(schema: str) -> list[Table]:
    """The models' tables as the CLI places them: unqualified in public, moved otherwise."""
    if schema == "public":
        return list(Base.metadata.sorted_tables)
    placed = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(placed, schema=schema)
    return list(placed.sorted_tables)


@pytest.fixture(scope="module")
def migrated(pg_server, tmp_path_factory) -> Iterator[str]:
    """A database holding the migrated sample in public and in schema other; its URL."""
    name = f"t_schema_{uuid.uuid4().hex[:12]}"
    pg_server.execute(f'CREATE DATABASE "{name}"')
    url = pg_server.url(name)
    sample = make_todo_db(tmp_path_factory.mktemp("schema_check") / "todo.db")
    try:
        for extra in ([], ["--schema", "other"]):
            result = run_cli("--sqlite-path", str(sample), "--postgres-url", url, *extra)
            assert result.returncode == 0, result.stderr
        yield url
    finally:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class CountingCursor(psycopg2.extensions.cursor):
    statements = 0

    def execute(self, query, vars=None):
        CountingCursor.statements += 1
        return super().execute(query, vars)


@contextmanager
def transaction(url: str, *, read_only: bool = False) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor in a transaction that is always rolled back."""
    conn = psycopg2.connect(url)
    conn.readonly = read_only
    try:
        with conn.cursor(cursor_factory=CountingCursor) as cur:
            yield cur
    finally:
        conn.rollback()
        conn.close()


def object_name(cur, schema: str, table: str, column: str, kind: str) -> str:
    """The name PostgreSQL gave a constraint ('p', 'f') or an index ('i') on one column, so that
    tests break by meaning too, not by the names the tool happens to choose."""
    if kind == "i":
        cur.execute(
            "SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = %s::regclass AND a.attname = %s AND i.indnatts = 1 AND NOT i.indisprimary",
            (f'"{schema}"."{table}"', column),
        )
    else:
        cur.execute(
            "SELECT conname FROM pg_constraint c JOIN pg_attribute a "
            "ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.conrelid = %s::regclass AND a.attname = %s AND c.contype = %s",
            (f'"{schema}"."{table}"', column, kind),
        )
    (name,) = cur.fetchone()
    return f'"{schema}"."{name}"' if kind == "i" else f'"{name}"'


# --- a target the CLI built -------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["public", "other"])
def test_a_migrated_target_matches_the_models(migrated, schema):
    with transaction(migrated, read_only=True) as cur:
        assert schema_differences(cur, model_tables(schema), schema) == []


def test_reads_the_catalog_in_a_few_queries_whatever_the_column_count(migrated):
    with transaction(migrated, read_only=True) as cur:
        CountingCursor.statements = 0
        schema_differences(cur, model_tables("public"), "public")
        assert CountingCursor.statements <= 3


def test_missing_tables_are_named(migrated):
    with transaction(migrated, read_only=True) as cur:
        assert schema_differences(cur, model_tables("nowhere"), "nowhere") == [
            "users: table missing",
            "tasks: table missing",
            "recurring_patterns: table missing",
        ]


# --- one thing broken at a time ---------------------------------------------------------------

# (SQL with {schema} and {name}, what {name} is: (table, column, kind) or None, the phrase)
BREAKS = {
    "unique index dropped": (
        "DROP INDEX {name}", ("users", "email", "i"), "users: unique index on (email) missing"),
    "index dropped": (
        "DROP INDEX {name}", ("tasks", "user_id", "i"), "tasks: index on (user_id) missing"),
    "unique index made plain": (
        "DROP INDEX {name}; CREATE INDEX ON {schema}.users (username)", ("users", "username", "i"),
        "users: unique index on (username) missing"),
    "index made partial": (
        "DROP INDEX {name}; CREATE INDEX ON {schema}.tasks (completed) WHERE completed",
        ("tasks", "completed", "i"), "tasks: index on (completed) missing"),
    "foreign key dropped": (
        "ALTER TABLE {schema}.tasks DROP CONSTRAINT {name}", ("tasks", "user_id", "f"),
        "tasks.user_id: foreign key to users.id ON DELETE CASCADE missing"),
    "foreign key without its ON DELETE": (
        "ALTER TABLE {schema}.tasks DROP CONSTRAINT {name}, "
        "ADD FOREIGN KEY (parent_task_id) REFERENCES {schema}.tasks (id)", ("tasks", "parent_task_id", "f"),
        "tasks.parent_task_id: foreign key to tasks.id is ON DELETE NO ACTION, models say ON DELETE SET NULL"),
    "foreign key not validated": (
        "ALTER TABLE {schema}.recurring_patterns DROP CONSTRAINT {name}, ADD FOREIGN KEY (task_id) "
        "REFERENCES {schema}.tasks (id) ON DELETE CASCADE NOT VALID", ("recurring_patterns", "task_id", "f"),
        "recurring_patterns.task_id: foreign key to tasks.id is NOT VALID (existing rows were never checked)"),
    "foreign key added": (
        "ALTER TABLE {schema}.recurring_patterns ADD FOREIGN KEY (day_of_month) "
        "REFERENCES {schema}.users (id) NOT VALID", None,
        "recurring_patterns.day_of_month: foreign key to users.id not in the models"),
    "primary key dropped": (
        "ALTER TABLE {schema}.recurring_patterns DROP CONSTRAINT {name}", ("recurring_patterns", "id", "p"),
        "recurring_patterns: primary key on (id) missing"),
    "NOT NULL dropped": (
        "ALTER TABLE {schema}.tasks ALTER COLUMN title DROP NOT NULL", None, "tasks.title: NOT NULL missing"),
    "NOT NULL added": (
        "UPDATE {schema}.users SET full_name = '' WHERE full_name IS NULL; "
        "ALTER TABLE {schema}.users ALTER COLUMN full_name SET NOT NULL", None,
        "users.full_name: NOT NULL, models say nullable"),
    "default dropped": (
        "ALTER TABLE {schema}.tasks ALTER COLUMN priority DROP DEFAULT", None,
        "tasks.priority: default 'medium' missing"),
    "boolean default dropped": (
        "ALTER TABLE {schema}.users ALTER COLUMN is_active DROP DEFAULT", None,
        "users.is_active: default true missing"),
    "default changed": (
        "ALTER TABLE {schema}.recurring_patterns ALTER COLUMN interval SET DEFAULT 7", None,
        "recurring_patterns.interval: default 7, models say 1"),
    "default added": (
        "ALTER TABLE {schema}.tasks ALTER COLUMN tags SET DEFAULT '[]'", None,
        "tasks.tags: default '[]' not in the models"),
    "sequence default dropped": (
        "ALTER TABLE {schema}.tasks ALTER COLUMN id DROP DEFAULT", None, "tasks.id: no sequence default"),
    "type changed": (
        "ALTER TABLE {schema}.users ALTER COLUMN email TYPE text", None,
        "users.email: type text, models say character varying(255)"),
    "length changed": (
        "ALTER TABLE {schema}.tasks ALTER COLUMN priority TYPE varchar(30)", None,
        "tasks.priority: type character varying(30), models say character varying(20)"),
    "time zone added": (
        "ALTER TABLE {schema}.tasks ALTER COLUMN due_date TYPE timestamptz", None,
        "tasks.due_date: type timestamp with time zone, models say timestamp without time zone"),
    "column added": (
        "ALTER TABLE {schema}.tasks ADD COLUMN color text", None, "tasks.color: column not in the models"),
    "column dropped": (
        "ALTER TABLE {schema}.tasks DROP COLUMN due_date", None, "tasks.due_date: column missing"),
}  # fmt: skip


@pytest.mark.parametrize("case", BREAKS, ids=list(BREAKS))
def test_each_difference_is_named(migrated, case):
    statement, named, phrase = BREAKS[case]
    with transaction(migrated) as cur:
        name = object_name(cur, "public", *named) if named else ""
        cur.execute(statement.format(schema="public", name=name))
        assert schema_differences(cur, model_tables("public"), "public") == [phrase]


def test_equivalent_spellings_are_not_differences(migrated):
    """Names, casts, quoting and an identity instead of serial are how, not what."""
    with transaction(migrated) as cur:
        index = object_name(cur, "public", "users", "email", "i")
        cur.execute(
            f"ALTER INDEX {index} RENAME TO some_other_name;"
            "ALTER TABLE tasks ALTER COLUMN priority SET DEFAULT 'medium'::text;"
            "ALTER TABLE recurring_patterns ALTER COLUMN interval SET DEFAULT '1';"
            "ALTER TABLE users ALTER COLUMN is_active SET DEFAULT (TRUE);"
            "ALTER TABLE users ALTER COLUMN id DROP DEFAULT;"
            "ALTER TABLE users ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY;"
            "CREATE INDEX extra_index ON tasks (title);"
        )
        assert schema_differences(cur, model_tables("public"), "public") == []


def test_a_view_in_place_of_a_table_is_a_missing_table(migrated):
    """A materialized view (with an index) holds the rows but none of the keys or constraints."""
    with transaction(migrated) as cur:
        cur.execute(
            "ALTER TABLE recurring_patterns RENAME TO rp_old;"
            "CREATE MATERIALIZED VIEW recurring_patterns AS SELECT * FROM rp_old;"
            "CREATE INDEX ON recurring_patterns (user_id)"
        )
        assert schema_differences(cur, model_tables("public"), "public") == [
            "recurring_patterns: table missing"
        ]


def test_a_table_with_every_column_dropped_names_each(migrated):
    with transaction(migrated) as cur:
        cur.execute("ALTER TABLE recurring_patterns " + ", ".join(
            f"DROP COLUMN {c.name}" for c in Base.metadata.tables["recurring_patterns"].columns))  # fmt: skip
        differences = schema_differences(cur, model_tables("public"), "public")
        assert "recurring_patterns: table missing" not in differences
        assert "recurring_patterns.frequency: column missing" in differences
        assert "recurring_patterns: primary key on (id) missing" in differences


def test_the_given_schema_is_read_whatever_the_search_path(migrated):
    """A break in schema other is seen there, not in public, with search_path pointing away."""
    with transaction(migrated) as cur:
        index = object_name(cur, "other", "tasks", "user_id", "i")
        cur.execute(f"DROP INDEX {index}; ALTER TABLE other.tasks ALTER COLUMN title DROP NOT NULL")
        cur.execute("SET LOCAL search_path = other")
        assert schema_differences(cur, model_tables("public"), "public") == []
        cur.execute("SET LOCAL search_path = public")
        assert schema_differences(cur, model_tables("other"), "other") == [
            "tasks.title: NOT NULL missing",
            "tasks: index on (user_id) missing",
        ]


# --- normalisation, no server needed ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spelled", "expected"),
    [
        ("VARCHAR(255)", "character varying(255)"),
        ("character varying(255)", "character varying(255)"),
        ("TIMESTAMP WITHOUT TIME ZONE", "timestamp without time zone"),
        ("TIMESTAMP(3) WITH TIME ZONE", "timestamp(3) with time zone"),
        ("timestamptz", "timestamp with time zone"),
        ("NUMERIC(10, 2)", "numeric(10,2)"),
        ("FLOAT", "double precision"),
        ("FLOAT(10)", "real"),
        ("INT", "integer"),
        ("VARCHAR(20)[]", "character varying(20)[]"),
        ("BOOLEAN", "boolean"),
    ],
)
def test_type_names_are_spelled_as_format_type_does(spelled, expected):
    assert pg_type_name(spelled) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("'medium'", "'medium'::character varying"),
        ("1", "'1'::integer"),
        ("-1", "'-1'::integer"),
        ("true", "TRUE"),
        ("now()", "(now())"),
        ("'a''b'", "'a''b'::text"),
        ("CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP"),
        ("'2020-01-01 00:00:00'", "'2020-01-01 00:00:00'::timestamp without time zone"),
    ],
)
def test_default_spellings_compare_equal(a, b):
    assert normalize_default(a) == normalize_default(b)


def test_different_defaults_stay_different():
    assert normalize_default("'medium'") != normalize_default("'Medium'::character varying")
    assert normalize_default("1") != normalize_default("'10'::integer")
    assert normalize_default("now()") != normalize_default("'now()'::text")
