"""The plan, derived from the app's models: which tables, in which order, which columns.

The models are the truth for PostgreSQL; the source is compared against them, and every
difference (schema drift) is named so that nothing is dropped without the user saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Column, MetaData, Table

from .convert import Codec, codec_for
from .source import Source, quote_ident


@dataclass
class ColumnPlan:
    name: str
    column: Column = field(repr=False)
    codec: Codec = field(repr=False)

    @property
    def sqlite(self) -> str:
        return quote_ident(self.name)


@dataclass
class TablePlan:
    name: str
    table: Table = field(repr=False)  # the model table, placed in the target schema
    columns: list[ColumnPlan]  # model columns present in the source: what is copied
    defaulted: list[str]  # model columns the source lacks: PostgreSQL fills default / NULL
    dropped: list[str]  # source columns the models do not know
    source_rows: int
    in_source: bool

    @property
    def pk(self) -> str:
        (pk,) = self.table.primary_key.columns
        return pk.name

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


@dataclass
class Plan:
    schema: str
    tables: list[TablePlan]
    drift: list[Drift]
    ignored_tables: list[str]

    def table(self, name: str) -> TablePlan:
        return next(t for t in self.tables if t.name == name)


def target_metadata(metadata: MetaData, schema: str) -> MetaData:
    """The models' tables placed in `schema` (public stays unqualified, as the app creates it)."""
    if schema == "public":
        return metadata
    placed = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(placed, schema=schema)
    return placed


def build_plan(source: Source, metadata: MetaData, *, schema: str, strip_nul: bool) -> Plan:
    placed = target_metadata(metadata, schema)
    drift: list[Drift] = []
    tables: list[TablePlan] = []
    for table in placed.sorted_tables:  # parents before children, from the foreign keys
        src = source.tables.get(table.name)
        src_cols = set(src.columns) if src else set()
        copied, defaulted = [], []
        for col in table.columns:
            if col.name in src_cols:
                copied.append(ColumnPlan(col.name, col, codec_for(col, strip_nul=strip_nul)))
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
        if src is not None and not pk_names <= src_cols:
            drift.append(Drift(table.name, None, "missing_primary_key",
                               f"source table has no {'/'.join(sorted(pk_names))} column", fatal=True))  # fmt: skip
        model_cols = {c.name for c in table.columns}
        dropped = [c for c in (src.columns if src else []) if c not in model_cols]
        for name in dropped:
            drift.append(
                Drift(table.name, name, "unknown_column", "not in the models: its values would not be copied")
            )
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
            )
        )
    ignored = sorted(set(source.tables) - {t.name for t in tables})
    for name in ignored:
        rows = source.tables[name].row_count
        drift.append(
            Drift(name, None, "unknown_table", f"not in the models: its {rows:,} rows would not be copied")
        )
    return Plan(schema=schema, tables=tables, drift=drift, ignored_tables=ignored)
