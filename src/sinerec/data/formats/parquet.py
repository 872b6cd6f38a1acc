"""Format ``parquet``: a Parquet table with named columns (or positions in its schema); needs pyarrow.

A row with a missing id or timestamp raises DataFormatError naming the file and the row (Parquet has no
lines); timestamps may be numbers, datetimes or ISO 8601 strings. ``table`` reads a ``.parquet``/``.pq``
file this way too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sinerec.data.assemble import normalize_ids
from sinerec.data.columns import TABLE_COLUMNS, column_position, table_interactions, wanted_columns
from sinerec.data.delimited import Field, check_value, integral_or_float, parse_datetimes
from sinerec.data.formats import ReadOptions
from sinerec.data.frame import Interactions
from sinerec.errors import DataFormatError, SinerecError

__all__ = ["read", "read_parquet_columns"]


def read(options: ReadOptions) -> Interactions:
    """The ``parquet`` format: the configured columns of ``options.path``."""
    path = Path(options.path)
    wanted = wanted_columns(options.user_col, options.item_col, options.timestamp_col, options.category_col,
                            options.behavior_col)
    return table_interactions(path, read_parquet_columns(path, wanted), [], options.name)


def read_parquet_columns(path: Path, wanted: dict[str, str | int]) -> dict[str, pd.Series]:
    """Logical column -> typed values (as ``sinerec.data.columns.TABLE_COLUMNS`` declares) of a Parquet file."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SinerecError(f'{path}: reading Parquet needs pyarrow: pip install "sinerec[parquet]"') from None
    try:
        schema_names = list(pq.read_schema(path).names)
    except FileNotFoundError:
        raise SinerecError(f"{path}: no such file") from None
    except Exception as exc:  # pyarrow raises its own types (ArrowInvalid...) for files that are not Parquet
        raise SinerecError(f"{path}: cannot read as Parquet: {exc}") from exc
    names = {
        k: schema_names[column_position(path, c, schema_names, len(schema_names))] for k, c in wanted.items()
    }
    table = pq.read_table(path, columns=list(dict.fromkeys(names.values())))
    frame = table.to_pandas()
    out: dict[str, pd.Series] = {}
    for key, column in names.items():
        col = frame[column]
        kind, label = TABLE_COLUMNS[key]
        if kind != "text" and bool(col.isna().any()):
            row = int(np.flatnonzero(col.isna().to_numpy())[0])
            content = ", ".join(f"{c}={frame[c].iloc[row]!r}" for c in frame.columns)
            raise DataFormatError(str(path), row + 1, content, f"missing {label} (Parquet row {row + 1})")
        if kind == "id":
            out[key] = normalize_ids(col)
        elif kind == "time":
            out[key] = _parquet_time(path, col, frame)
        else:
            out[key] = col.astype(object).where(col.notna(), "").astype(str).astype(object)
    return out


def _parquet_time(path: Path, col: pd.Series, frame: pd.DataFrame) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        if getattr(col.dt, "tz", None) is None:
            col = col.dt.tz_localize("UTC")
        return ((col - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype(np.int64)
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return integral_or_float(col)
    try:
        return parse_datetimes(col.astype(str))
    except (ValueError, TypeError, OverflowError):
        for row, value in enumerate(col):
            if check_value(Field(0, "time", "timestamp", datetime=True), str(value)) is not None:
                content = ", ".join(f"{c}={frame[c].iloc[row]!r}" for c in frame.columns)
                raise DataFormatError(
                    str(path), row + 1, content, f"unparseable timestamp {value!r} (Parquet row {row + 1})"
                ) from None
        raise

