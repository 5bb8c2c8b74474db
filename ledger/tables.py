"""Projection tables as the store sees them: each declared once, as a ``TableSpec``.

A backend derives from a spec everything it needs (its DDL, its upsert, its keys); the projection
code hands the store typed rows, tuples in the spec's column order, and never a statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

Row = tuple[Any, ...]

COLUMN_TYPES = (str, int, bytes)
"""What a column may hold (a flag is an int, 0 or 1): all every backend stores as it is."""


class Column(NamedTuple):
    """One column: its name, its Python type, whether it may be None, whether it is unique alone."""

    name: str
    type: type
    nullable: bool = False
    unique: bool = False


@dataclass(frozen=True)
class TableSpec:
    """A projection table: its columns, its key and its other uniqueness constraints.

    The key is the table's first ``key`` columns, so rows sort in key order as whole tuples.
    ``replace`` says what writing a row whose key is taken does: replace that row, or (False) fail
    the whole write, as a new row that must not collide does.
    """

    name: str
    columns: tuple[Column, ...]
    key: int = 1
    unique: tuple[tuple[str, ...], ...] = ()
    replace: bool = True
    seq_column: str | None = "seq"  # None: no row speaks for one ledger position

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if not self.name.isidentifier() or not all(n.isidentifier() for n in names):
            raise ValueError(f"table {self.name!r}: names must be identifiers")
        if len(set(names)) != len(names) or not 0 < self.key <= len(names):
            raise ValueError(f"table {self.name!r}: duplicate columns or a key out of range")
        if any(c.type not in COLUMN_TYPES for c in self.columns):
            raise ValueError(f"table {self.name!r}: a column type is not one of str, int, bytes")
        seq_unknown = self.seq_column is not None and self.seq_column not in names
        if any(n not in names for group in self.unique for n in group) or seq_unknown:
            raise ValueError(f"table {self.name!r}: a constraint names an unknown column")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def key_names(self) -> tuple[str, ...]:
        return self.names[: self.key]

    @property
    def uniques(self) -> tuple[tuple[str, ...], ...]:
        """Every group of columns that must be unique together, the key first."""
        single = tuple((c.name,) for c in self.columns if c.unique)
        return (self.key_names, *single, *self.unique)

    def key_of(self, row: Row) -> Row:
        return row[: self.key]

    def seq_of(self, row: Row) -> int | None:
        """The ledger position the row speaks for."""
        if self.seq_column is None:
            return None
        value = row[self.names.index(self.seq_column)]
        return value if isinstance(value, int) else None

    def check(self, row: Row) -> str | None:
        """Why ``row`` cannot be a row of this table (width, type, a None where none may be)."""
        if len(row) != len(self.columns):
            return f"{self.name}: a row of {len(row)} values for {len(self.columns)} columns"
        for column, value in zip(self.columns, row, strict=True):
            if value is None:
                if not column.nullable or column.name in self.key_names:
                    return f"{self.name}.{column.name} may not be NULL"
            elif type(value) is not column.type and not (column.type is int and type(value) is bool):
                return f"{self.name}.{column.name} holds {type(value).__name__}, not {column.type.__name__}"
        return None


TableWrites = Mapping[TableSpec, Sequence[Row]]
"""Rows to write, table by table, in the same transaction as a batch of events."""
