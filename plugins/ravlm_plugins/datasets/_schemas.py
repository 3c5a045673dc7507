"""Arrow schemas of the record kinds: the column names and order of ``RECORD_SCHEMAS``."""

from __future__ import annotations

from typing import Any

from ravlm_bench.api import RECORD_SCHEMAS

# the Arrow type of each RECORD_SCHEMAS description (its first word)
_TYPES = {
    "int64": "int64", "int32": "int32", "string": "string", "float32": "float32",
    "bool": "bool", "list<float32>": "list<float32>", "list<string>": "list<string>",
    "list<float64>": "list<float64>",
}


def arrow_schema(kind: str):
    import pyarrow as pa

    types = {
        "int64": pa.int64(), "int32": pa.int32(), "string": pa.string(),
        "float32": pa.float32(), "bool": pa.bool_(),
        "list<float32>": pa.list_(pa.float32()), "list<string>": pa.list_(pa.string()),
        "list<float64>": pa.list_(pa.float64()),
    }
    return pa.schema([
        pa.field(column, types[_TYPES[description.split()[0]]])
        for column, description in RECORD_SCHEMAS[kind].items()
    ])


def make_table(kind: str, columns: dict[str, Any]):
    """A table of ``kind`` from numpy arrays / lists / Arrow arrays, cast to the schema."""
    import pyarrow as pa

    schema = arrow_schema(kind)
    missing = set(schema.names) ^ set(columns)
    if missing:
        raise ValueError(f"{kind} columns differ from RECORD_SCHEMAS: {sorted(missing)}")
    arrays = [pa.array(columns[f.name], type=f.type)
              if not isinstance(columns[f.name], (pa.Array, pa.ChunkedArray))
              else columns[f.name].cast(f.type)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def box_array(boxes):
    """(n, 4) float32 numpy array -> Arrow list<float32> without a Python loop."""
    import numpy as np
    import pyarrow as pa

    n = len(boxes)
    offsets = pa.array(np.arange(0, 4 * n + 1, 4, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(boxes.reshape(-1), type=pa.float32()))
