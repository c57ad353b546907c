"""The plan, derived from the app's models: which tables, in which order, which columns.

The models are the truth for PostgreSQL; the source is compared against them, and every
difference (schema drift) is named so that nothing is dropped without the user saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sqlalchemy import Column, MetaData, Table
from sqlalchemy.sql.elements import conv

from .convert import Codec, Conversions, codec_for
from .errors import MigrationError
from .ledger import LEDGER_TABLE
from .source import Source, SourceTable, quote_ident


@dataclass
class ColumnPlan:
    name: str  # the models' name
    column: Column = field(repr=False)
    codec: Codec = field(repr=False)
    source_name: str = ""  # todo.db's spelling of it (names are case-insensitive there)

    @property
    def sqlite(self) -> str:
        return quote_ident(self.source_name or self.name)


@dataclass
class TablePlan:
    name: str
    table: Table = field(repr=False)  # the model table, placed in the target schema
    columns: list[ColumnPlan]  # model columns present in the source: what is copied
    defaulted: list[str]  # model columns the source lacks: PostgreSQL fills default / NULL
    dropped: list[str]  # source columns the models do not know
    source_rows: int
    in_source: bool
    source: SourceTable | None = field(default=None, repr=False)

    @property
    def pk(self) -> str:
        (pk,) = self.table.primary_key.columns
        return pk.name

    @property
    def pk_column(self) -> ColumnPlan:
        return self.column(self.pk)

    def column(self, name: str) -> ColumnPlan:
        """A copied column by its models' name."""
        return next(c for c in self.columns if c.name == name)

    @property
    def sqlite(self) -> str:
        """The table in todo.db, as SQL."""
        assert self.source is not None
        return self.source.sqlite

    @property
    def row_key(self) -> str:
        """SQL naming each source row once (see SourceTable.row_key)."""
        assert self.source is not None
        return self.source.row_key

    @property
    def id_is_row_key(self) -> bool:
        """The id is SQLite's rowid: unique, never NULL, and rowid order is id order."""
        return (
            self.source is not None
            and self.source.rowid_pk is not None
            and (self.source.rowid_pk.lower() == self.pk.lower())
        )

    def foreign_keys(self) -> list[tuple[str, str, str]]:
        """(column, parent table, parent column) for each copied foreign-key column."""
        copied = {c.name for c in self.columns}
        result = []
        for fk in self.table.foreign_keys:
            if fk.parent.name in copied:
                result.append((fk.parent.name, fk.column.table.name, fk.column.name))
        return sorted(result)


@dataclass
class Drift:
    """A difference between todo.db and the models; `fatal` ones no flag can allow."""

    table: str
    column: str | None
    kind: str
    detail: str
    fatal: bool = False


# Tables a schema-migration tool keeps about the schema itself, not the app's data: not copied
# (the models make the target's schema), and no reason to ask for --allow-drift.
BOOKKEEPING_TABLES = {"alembic_version": "Alembic"}


@dataclass
class Plan:
    schema: str
    tables: list[TablePlan]
    drift: list[Drift]
    ignored_tables: list[str]
    conversions: Conversions = field(default_factory=Conversions)

    def table(self, name: str) -> TablePlan:
        return next(t for t in self.tables if t.name == name)


def target_metadata(metadata: MetaData, schema: str) -> MetaData:
    """The models' tables placed in `schema`, public included: every statement names the schema
    the output names, whatever the role's search_path says. Index names stay the ones the app's
    create_all gives (SQLAlchemy would otherwise put the schema into them)."""
    placed = MetaData()
    for table in metadata.sorted_tables:
        copy = table.to_metadata(placed, schema=schema)
        names = {tuple(c.name for c in ix.columns): ix.name for ix in table.indexes}
        for index in copy.indexes:
            name = names.get(tuple(c.name for c in index.columns))
            if name:
                index.name = conv(str(name))
    return placed


def build_plan(source: Source, metadata: MetaData, *, schema: str, conversions: Conversions) -> Plan:
    placed = target_metadata(metadata, schema)
    drift: list[Drift] = []
    tables: list[TablePlan] = []
    for table in placed.sorted_tables:  # parents before children, from the foreign keys
        src = source.table(table.name)
        if src is not None and src.unreadable:
            raise MigrationError(src.unreadable, src.fix)
        src_cols = {c.lower() for c in src.columns} if src else set()
        copied, defaulted = [], []
        for col in table.columns:
            if col.name.lower() in src_cols:
                assert src is not None
                spelled = src.column(col.name) or col.name
                copied.append(ColumnPlan(col.name, col, codec_for(col, conversions), spelled))
                continue
            defaulted.append(col.name)
            if src is None:
                continue
            if not col.nullable and col.server_default is None and not col.primary_key:
                drift.append(Drift(table.name, col.name, "missing_column",
                                   "NOT NULL with no default: cannot be filled", fatal=True))  # fmt: skip
            else:
                fill = "its default" if col.server_default is not None else "NULL"
                drift.append(Drift(table.name, col.name, "missing_column", f"would be filled with {fill}"))
        pk_names = {c.name for c in table.primary_key.columns}
        if src is not None and not {n.lower() for n in pk_names} <= src_cols:
            drift.append(Drift(table.name, None, "missing_primary_key",
                               f"source table has no {'/'.join(sorted(pk_names))} column", fatal=True))  # fmt: skip
        model_cols = {c.name.lower() for c in table.columns}
        dropped = [c for c in (src.columns if src else []) if c.lower() not in model_cols]
        for name in dropped:
            drift.append(
                Drift(table.name, name, "unknown_column", "not in the models: its values would not be copied")
            )
        for name in src.generated if src else []:
            if name.lower() not in model_cols:
                drift.append(Drift(table.name, name, "unknown_column", "a generated column, not in the models: "
                                   "its values (computed by SQLite from the others) would not be copied"))  # fmt: skip
        if src is None:
            drift.append(Drift(table.name, None, "missing_table", "not in todo.db: would be created empty"))
        tables.append(
            TablePlan(
                name=table.name,
                table=table,
                columns=copied,
                defaulted=defaulted,
                dropped=dropped,
                source_rows=src.row_count if src else 0,
                in_source=src is not None,
                source=src,
            )
        )
    planned = {t.name.lower() for t in tables}
    # The tool's own record of what an export left (ledger.py) is not the app's data.
    ignored = sorted(t.name for key, t in source.tables.items() if key not in planned and key != LEDGER_TABLE)
    for name in ignored:
        if name.lower() in BOOKKEEPING_TABLES:  # said as such (steps.plan_from_models), not drift
            continue
        src = source.tables[name.lower()]
        n = src.row_count
        rows = "its rows" if n is None else f"its {n:,} row{'' if n == 1 else 's'}"
        why = f" ({src.unreadable})" if n is None else ""
        drift.append(
            Drift(name, None, "unknown_table", f"not in the models: {rows} would not be copied{why}")
        )
    return Plan(schema=schema, tables=tables, drift=drift, ignored_tables=ignored, conversions=conversions)


def for_target(plan: Plan, conversions: Conversions) -> Plan:
    """The same plan with codecs for what the connected target holds (its encoding)."""
    tables = [
        replace(tp, columns=[replace(c, codec=codec_for(c.column, conversions)) for c in tp.columns])
        for tp in plan.tables
    ]
    return replace(plan, tables=tables, conversions=conversions)
