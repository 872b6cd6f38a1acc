"""Run directories: everything a training run writes, written atomically.

    RUN/config.json     the resolved configuration
    RUN/data.json       dataset summary, preprocessing steps and split summary (fingerprints)
    RUN/items.csv       item index -> original id, title, categories
    RUN/users.csv       user index -> original id
    RUN/sequences.npz   the preprocessed sequences (items, offsets), so a run can recommend for known users
    RUN/log.jsonl       one JSON object per epoch
    RUN/model.pt        best weights (a plain state dict: torch.load(..., weights_only=True))
    RUN/checkpoint.pt   last full training state, for --resume
    RUN/metrics.json    final validation and test metrics
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sinerec.data.preprocess import SequenceData
from sinerec.errors import SinerecError


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: readers see the old
    file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def save_torch(path: str | Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_torch(path: str | Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_data(run_dir: Path, data: SequenceData) -> None:
    """Id maps (CSV, original ids as text) and the sequences."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["item_index", "item_id", "title", "categories"])
    for idx in range(1, data.num_items + 1):
        title = data.item_titles[idx] if data.item_titles else ""
        cats = "|".join(data.item_categories[idx]) if data.item_categories else ""
        w.writerow([idx, data.item_ids[idx], title, cats])
    atomic_write_text(run_dir / "items.csv", buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["user_index", "user_id"])
    for idx, uid in enumerate(data.user_ids):
        w.writerow([idx, uid])
    atomic_write_text(run_dir / "users.csv", buf.getvalue())
    npz = io.BytesIO()
    np.savez_compressed(npz, items=data.items.astype(np.int32), offsets=data.offsets)
    atomic_write_bytes(run_dir / "sequences.npz", npz.getvalue())


def _original_ids(values: Any) -> np.ndarray:
    """Ids read back from CSV as text: int64 when every one is an integer (as the readers do), else str."""
    text = values.astype(str)
    if text.str.fullmatch(r"-?\d+").all():
        return text.astype(np.int64).to_numpy()
    return text.to_numpy(dtype=object)


def load_data(run_dir: str | Path) -> SequenceData:
    """The preprocessed data a run was trained on: sequences, id maps, titles and categories."""
    import pandas as pd

    run_dir = Path(run_dir)
    for name in ("items.csv", "users.csv", "sequences.npz", "data.json"):
        if not (run_dir / name).exists():
            raise SinerecError(f"{run_dir}: not a sinerec run directory ({name} is missing)")
    items = pd.read_csv(run_dir / "items.csv", dtype=str, keep_default_na=False)
    users = pd.read_csv(run_dir / "users.csv", dtype=str, keep_default_na=False)
    seq = np.load(run_dir / "sequences.npz")
    info = json.loads((run_dir / "data.json").read_text())
    item_ids = np.empty(len(items) + 1, dtype=object)
    item_ids[0] = None
    item_ids[1:] = _original_ids(items["item_id"])
    titles = [""] + items["title"].tolist()
    categories = [()] + [tuple(c.split("|")) if c else () for c in items["categories"]]
    return SequenceData(
        name=info["dataset"]["name"], items=seq["items"].astype(np.int64), offsets=seq["offsets"].astype(np.int64),
        user_ids=_original_ids(users["user_id"]), item_ids=item_ids,
        item_titles=titles if any(titles) else None,
        item_categories=categories if any(categories) else None, steps=info["dataset"].get("steps", {}),
    )
