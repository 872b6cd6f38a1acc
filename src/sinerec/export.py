"""Export a trained run's vectors, keyed by the original ids: ``sinerec export --run DIR``.

Layout of ``OUT`` (default ``RUN/export``), one file per table in the chosen format, every file written
atomically and ``export.json`` last:

    OUT/items.npz | items.parquet     one row per item (M rows, padding left out)
        item_id      (M,)            original item id (int64, or text when the dataset's ids are text)
        vector       (M, D) float32  the model's output item vector (row i of item_embeddings() for item i)
    OUT/users.npz | users.parquet     one row per user (U rows)
        user_id      (U,)            original user id
        vector       (U, D) float32  the aggregated user vector (SINE: v = sum_k e_k phi_k)
        interests    (U, K, D)       the K interest vectors phi_k (models with interests only)
        concept_ids  (U, K) int64    the activated concepts, best first; interest k is built on concept k (SINE)
        gates        (U, K) float32  their sigmoid gates (SINE)
        aggregation  (U, K) float32  e, the weight of each interest in ``vector`` (SINE)
    OUT/export.json                   model, dataset fingerprint, D, K, counts, format, the files

A user's vectors are computed from the last ``data.max_len`` items of their whole sequence (every
interaction of the run's data, training, validation and test), i.e. what the model would recommend next.
Items are scored by ``user . item`` (multi-vector models such as ComiRec and MIND: max over the interests).

In Parquet, vectors are fixed-size lists (``vector: fixed_size_list<float>[D]``, ``interests``:
``fixed_size_list<fixed_size_list<float>[D]>[K]``); ``numpy.load`` reads the ``.npz`` files without pickle.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch

from sinerec.data.batching import user_windows
from sinerec.errors import SinerecError
from sinerec.ids import id_column
from sinerec.storage import atomic_write_stream, write_json

if TYPE_CHECKING:
    from sinerec.runs import LoadedRun

__all__ = ["FORMATS", "export_run", "read_table"]

FORMATS = ("npz", "parquet")
USER_EXTRAS = ("concept_ids", "gates", "aggregation")


def user_tables(run: LoadedRun, batch_size: int = 512) -> dict[str, np.ndarray]:
    """Per-user columns (see the module docstring), computed in batches of ``batch_size`` users and written
    into arrays allocated once (no list of batches to concatenate: at 3M users x 8 interests the interests
    alone are 6 GB)."""
    data, model, max_len = run.data, run.model, run.config.data.max_len
    tables: dict[str, np.ndarray] = {}
    for lo in range(0, data.num_users, batch_size):
        hi = min(lo + batch_size, data.num_users)
        history = torch.from_numpy(user_windows(data, np.arange(lo, hi), max_len))  # (B, T)
        with torch.inference_mode():
            out = model(history)
        columns = {"vector": out.user}  # (B, D)
        if out.interests is not None:
            columns["interests"] = out.interests  # (B, K, D)
        for name in USER_EXTRAS:
            if out.extras and name in out.extras:
                columns[name] = out.extras[name]  # (B, K)
        for name, tensor in columns.items():
            if name not in tables:
                dtype = np.int64 if name == "concept_ids" else np.float32
                tables[name] = np.empty((data.num_users, *tensor.shape[1:]), dtype=dtype)
            tables[name][lo:hi] = tensor.detach().cpu().numpy()
    return {"user_id": id_column(data.user_ids), **tables}


def item_table(run: LoadedRun) -> dict[str, np.ndarray]:
    vectors = run.model.item_embeddings().detach().cpu().float().numpy()  # (M + 1, D)
    return {"item_id": id_column(run.data.item_ids[1:]), "vector": np.ascontiguousarray(vectors[1:])}


def _write_npz(fh: BinaryIO, columns: dict[str, np.ndarray]) -> None:
    # numpy writes each array into the zip member in buffered pieces: no copy of the table in memory
    np.savez(fh, **columns)  # type: ignore[arg-type]  # numpy's stub types the first kwarg as bool


def _write_parquet(fh: BinaryIO, columns: dict[str, np.ndarray]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SinerecError("--format parquet needs pyarrow: pip install 'sinerec[parquet]' (or use --format npz)") \
            from exc

    def column(values: np.ndarray) -> Any:
        if values.ndim == 1:
            return pa.array(values)
        arr = pa.array(values.reshape(-1))
        for size in reversed(values.shape[1:]):  # innermost dimension first
            arr = pa.FixedSizeListArray.from_arrays(arr, size)
        return arr

    table = pa.table({name: column(values) for name, values in columns.items()})  # zero-copy views
    pq.write_table(table, fh)


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """Read an exported ``.npz`` or ``.parquet`` table back into the column arrays it was written from."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as npz:
            return {name: npz[name] for name in npz.files}
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        shape = [len(col)]
        while hasattr(col, "flatten") and hasattr(col.type, "list_size"):
            shape.append(col.type.list_size)
            col = col.flatten()
        out[name] = col.to_numpy(zero_copy_only=False).reshape(shape)
    return out


def export_run(run: LoadedRun, out_dir: str | Path | None = None, fmt: str = "npz",
               batch_size: int = 512) -> dict[str, Any]:
    """Write the item and user tables of ``run`` (a LoadedRun) to ``out_dir``; returns the manifest."""
    if fmt not in FORMATS:
        raise SinerecError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out_dir) if out_dir is not None else Path(run.run_dir) / "export"
    write = _write_npz if fmt == "npz" else _write_parquet
    t0 = time.perf_counter()
    items = item_table(run)
    users = user_tables(run, batch_size)
    files = {"items": f"items.{fmt}", "users": f"users.{fmt}"}
    atomic_write_stream(out / files["items"], lambda fh: write(fh, items))
    atomic_write_stream(out / files["users"], lambda fh: write(fh, users))
    manifest = {
        "run": str(run.run_dir), "model": run.config.model, "format": fmt, "files": files,
        "dataset": {"name": run.data.name, "fingerprint": run.data.fingerprint()},
        "dim": int(items["vector"].shape[1]), "num_items": len(items["item_id"]), "num_users": len(users["user_id"]),
        "num_interests": int(users["interests"].shape[1]) if "interests" in users else None,
        "max_len": run.config.data.max_len,
        "columns": {"items": list(items), "users": list(users)},
        "history": "the last max_len items of each user's whole sequence",
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(out / "export.json", manifest)
    return manifest
