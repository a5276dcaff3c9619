"""``Request``: a validated request's records, column by column, as Arrow or as Python values.

The SQL path, batching and large requests read an Arrow table; a few records on the fused path
read Python values (feeds, entity keys, events to record), and for them building Arrow and
reading it back costs more than the model. So a request holds whichever form it was made in and
makes the other only when first asked for; both hold the same validated values (naive UTC
datetimes for timestamps), so which one a step reads never changes what it computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

ROW_ID = "__row_id"
"""Each record's position in the request, carried through the feature SQL to keep order."""


class Request:
    """A validated request (see ``serving.schema``); build with ``of_table`` or ``of_columns``."""

    __slots__ = ("num_rows", "_schema", "_table", "_columns")

    def __init__(self, num_rows: int, schema: pa.Schema, table: pa.Table | None,
                 columns: dict[str, list[Any]] | None) -> None:
        self.num_rows = num_rows
        self._schema = schema
        """The raw fields' Arrow schema, without ``ROW_ID``."""
        self._table = table
        self._columns = columns

    @classmethod
    def of_table(cls, table: pa.Table) -> Request:
        """A request table (the raw fields, then ``ROW_ID``) as a request."""
        return cls(table.num_rows, table.schema.remove(table.schema.get_field_index(ROW_ID)), table, None)

    @classmethod
    def of_columns(cls, columns: dict[str, list[Any]], schema: pa.Schema) -> Request:
        """Validated values of every field in ``schema`` (equal lengths; no ``ROW_ID``)."""
        return cls(len(columns[schema[0].name]), schema, None, columns)

    @property
    def schema(self) -> pa.Schema:
        """The raw fields' Arrow schema (no ``ROW_ID``)."""
        return self._schema

    @property
    def table(self) -> pa.Table:
        """The request table: the raw fields in schema order, then ``ROW_ID`` (0..n-1)."""
        if self._table is None:
            assert self._columns is not None
            arrays = [pa.array(self._columns[f.name], type=f.type) for f in self._schema]
            row_ids = self._columns.get(ROW_ID)
            arrays.append(pa.array(np.arange(self.num_rows, dtype=np.int64) if row_ids is None else row_ids,
                                   type=pa.int64()))
            self._table = pa.Table.from_arrays(arrays, schema=self._schema.append(pa.field(ROW_ID, pa.int64())))
        return self._table

    def values(self, name: str) -> list[Any]:
        """One field's values as Python objects (``ROW_ID``: each record's id)."""
        if self._columns is None:
            self._columns = {}
        if name not in self._columns:
            if name == ROW_ID and self._table is None:
                return list(range(self.num_rows))
            self._columns[name] = self.table.column(name).to_pylist()  # cached: steps read a field again
        return self._columns[name]

    @property
    def has_values(self) -> bool:
        """Whether every field's Python values are at hand (made from them, or read already)."""
        return self._columns is not None and all(f.name in self._columns for f in self._schema)

    def take(self, rows: Sequence[int] | np.ndarray) -> Request:
        """The request of records ``rows``; each keeps its ``ROW_ID``, which the events relation
        of the whole request (``EntityState.tables``) names it by."""
        rows = [int(i) for i in rows]
        if not self.has_values:
            return Request.of_table(self.table.take(pa.array(rows, type=pa.int64())))
        row_ids = self.values(ROW_ID)
        columns = {f.name: [self.values(f.name)[i] for i in rows] for f in self._schema}
        columns[ROW_ID] = [row_ids[i] for i in rows]
        return Request(len(rows), self._schema, None, columns)

    @staticmethod
    def concat(requests: Sequence[Request]) -> Request:
        """The requests' records one after another, renumbered from 0 (batching merges them)."""
        if len(requests) == 1:
            return requests[0]
        schema = requests[0]._schema
        if all(r.has_values for r in requests):  # no Arrow until a step needs it
            return Request(sum(r.num_rows for r in requests), schema, None,
                           {f.name: [v for r in requests for v in r.values(f.name)] for f in schema})
        table = pa.concat_tables([r.table for r in requests])
        index = table.schema.get_field_index(ROW_ID)
        return Request.of_table(table.set_column(index, ROW_ID, pa.array(np.arange(table.num_rows, dtype=np.int64))))
