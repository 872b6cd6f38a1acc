"""A prepared dataset: preprocessed sequences written once (``sinerec data prepare``), memory-mapped by every run.

Layout of a prepared folder (``FORMAT_VERSION`` 1)::

    DIR/summary.json      format version, dataset fingerprint, the data settings that produced it, counts,
                          preprocessing steps, and the split's protocol and fingerprint when one is stored
    DIR/items.npy         (N,) int64 remapped item ids, user after user, each user's items in time order
    DIR/offsets.npy       (U + 1,) int64 CSR offsets into items.npy
    DIR/timestamps.npy    (N,) aligned with items.npy (only when the log has timestamps)
    DIR/users.parquet     user_id: original id of each user index (0..U-1)
    DIR/items.parquet     item_id, title, categories: item index 1..M (row r is item r + 1)
    DIR/split/*.npy       the protocol split's arrays (only when ``--protocol`` was given): train_positions,
                          train_starts, train_users, train_item_counts, {valid,test}_{users,hist_start,
                          hist_end,target_offsets,targets}

The arrays load with ``np.load(mmap_mode="r")``: several processes (torchrun ranks, benchmark runs) share one
copy in the page cache instead of each holding its own. The folder is written through
:func:`sinerec.storage.atomic_write_dir`: an interrupted prepare leaves the complete artifact or none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sinerec.data.preprocess import SequenceData
from sinerec.data.splits import EvalSet, ProtocolConfig, Split, TrainSet
from sinerec.errors import DataError
from sinerec.storage import atomic_write_dir

__all__ = ["FORMAT_VERSION", "SUMMARY", "write_prepared", "read_summary", "load_sequences", "load_split",
           "is_prepared"]

FORMAT_VERSION = 1
SUMMARY = "summary.json"
_TRAIN = ("positions", "starts", "users", "item_counts")
_EVAL = ("users", "hist_start", "hist_end", "target_offsets", "targets")


def is_prepared(path: Path) -> bool:
    """True when ``path`` holds a prepared dataset (its summary names the format): such a folder may be
    replaced by a new prepare, any other existing folder may not."""
    try:
        return read_summary(path).get("format") == "sinerec-prepared"
    except DataError:
        return False


def write_prepared(out: str | Path, data: SequenceData, settings: dict[str, Any], split: Split | None = None,
                   *, hook: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write ``data`` (and ``split``, when given) as a prepared folder ``out``, atomically, and return the
    summary. ``settings`` are the ``data.*`` settings that produced ``data`` (recorded, and compared by the
    runs that use it). ``hook(name)`` is called before each file is written (tests use it to fail midway).
    An existing ``out`` that is not a prepared dataset is refused."""
    summary = {"format": "sinerec-prepared", "format_version": FORMAT_VERSION, "name": data.name,
               "fingerprint": data.fingerprint(), "data": settings,
               "n_users": data.num_users, "n_items": data.num_items, "n_interactions": data.num_interactions,
               "has_timestamps": data.timestamps is not None, "steps": data.steps,
               "split": split.summary() if split is not None else None,
               "protocol": asdict(split.protocol) if split is not None else None}
    summary = json.loads(json.dumps(summary, default=_plain))

    def write(tmp: Path) -> None:
        step = hook or (lambda name: None)
        step("items.npy")
        np.save(tmp / "items.npy", np.ascontiguousarray(data.items, dtype=np.int64))
        step("offsets.npy")
        np.save(tmp / "offsets.npy", np.ascontiguousarray(data.offsets, dtype=np.int64))
        if data.timestamps is not None:
            step("timestamps.npy")
            np.save(tmp / "timestamps.npy", np.ascontiguousarray(data.timestamps))
        step("users.parquet")
        pq.write_table(pa.table({"user_id": pa.array(list(data.user_ids))}), tmp / "users.parquet")
        step("items.parquet")
        n = data.num_items
        pq.write_table(pa.table({
            "item_id": pa.array(list(data.item_ids[1:])),
            "title": pa.array(data.item_titles[1:] if data.item_titles else [""] * n, pa.string()),
            "categories": pa.array([list(c) for c in data.item_categories[1:]] if data.item_categories
                                   else [[] for _ in range(n)], pa.list_(pa.string())),
        }), tmp / "items.parquet")
        if split is not None:
            step("split")
            (tmp / "split").mkdir()
            for key in _TRAIN:
                np.save(tmp / "split" / f"train_{key}.npy", getattr(split.train, key))
            for part in ("valid", "test"):
                for key in _EVAL:
                    np.save(tmp / "split" / f"{part}_{key}.npy", getattr(getattr(split, part), key))
        step(SUMMARY)
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")

    atomic_write_dir(out, write, replaceable=is_prepared, kind="a prepared dataset")
    return summary


def _plain(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return str(x)


def read_summary(path: str | Path) -> dict[str, Any]:
    """``DIR/summary.json``; a folder without one, or with another format version, raises DataError."""
    file = Path(path) / SUMMARY
    try:
        summary = json.loads(file.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not a prepared dataset (no {SUMMARY}; make one with `sinerec data prepare`)") \
            from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{file}: unreadable ({exc})") from None
    if not isinstance(summary, dict) or summary.get("format_version") != FORMAT_VERSION:
        version = summary.get("format_version") if isinstance(summary, dict) else None
        raise DataError(f"{file}: prepared format version {version!r}, this sinerec reads {FORMAT_VERSION}; "
                        "prepare the dataset again")
    return summary


def _array(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: missing or damaged prepared array ({exc})") from None


def load_sequences(path: str | Path, *, mmap: bool = True, verify: bool = True) -> SequenceData:
    """The prepared sequences of ``path``; with ``mmap`` the arrays are read-only ``np.memmap`` views of the
    files (shared by every process that maps them). ``verify`` recomputes the dataset fingerprint and raises
    :class:`DataError` when it differs from the summary's (a damaged or altered artifact)."""
    path = Path(path)
    summary = read_summary(path)
    items, offsets = _array(path / "items.npy", mmap), _array(path / "offsets.npy", mmap)
    timestamps = _array(path / "timestamps.npy", mmap) if summary["has_timestamps"] else None
    try:
        users = pq.read_table(path / "users.parquet").column("user_id").to_numpy(zero_copy_only=False)
        table = pq.read_table(path / "items.parquet")
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise DataError(f"{path}: missing or damaged prepared id map ({exc})") from None
    item_ids = np.empty(table.num_rows + 1, dtype=object)
    item_ids[0] = None
    item_ids[1:] = table.column("item_id").to_numpy(zero_copy_only=False)
    titles = [""] + table.column("title").to_pylist()
    categories = [()] + [tuple(c) for c in table.column("categories").to_pylist()]
    data = SequenceData(name=summary["name"], items=items, offsets=offsets, user_ids=users, item_ids=item_ids,
                        timestamps=timestamps, item_titles=titles if any(titles) else None,
                        item_categories=categories if any(categories) else None, steps=summary["steps"])
    if verify and data.fingerprint() != summary["fingerprint"]:
        raise DataError(f"{path}: the arrays give dataset fingerprint {data.fingerprint()}, the summary says "
                        f"{summary['fingerprint']}: damaged or altered; prepare the dataset again")
    return data


def load_split(path: str | Path, protocol: ProtocolConfig, *, mmap: bool = True) -> Split | None:
    """The stored split of ``path`` when it was made with ``protocol`` (None otherwise: the caller splits)."""
    path = Path(path)
    summary = read_summary(path)
    stored = summary.get("split")
    if not stored or summary.get("protocol") != json.loads(json.dumps(asdict(protocol))):
        return None
    folder = path / "split"
    # item_counts (M + 1) is small and becomes a tensor (torch refuses read-only arrays): loaded, not mapped
    train = TrainSet(**{k: _array(folder / f"train_{k}.npy", mmap and k != "item_counts") for k in _TRAIN})
    parts = {part: EvalSet(**{k: _array(folder / f"{part}_{k}.npy", mmap) for k in _EVAL})
             for part in ("valid", "test")}
    return Split(protocol, train, parts["valid"], parts["test"], stored["fingerprint"])
