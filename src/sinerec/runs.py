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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sinerec.config import Config
from sinerec.data.preprocess import SequenceData
from sinerec.errors import SinerecError
from sinerec.ids import ids_from_text
from sinerec.models.base import SequentialRecommender
from sinerec.storage import atomic_write_bytes, atomic_write_text, load_torch

__all__ = ["LoadedRun", "load_data", "load_run", "save_data"]


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
    item_ids[1:] = ids_from_text(items["item_id"])
    titles = [""] + items["title"].tolist()
    categories = [()] + [tuple(c.split("|")) if c else () for c in items["categories"]]
    return SequenceData(
        name=info["dataset"]["name"], items=seq["items"].astype(np.int64), offsets=seq["offsets"].astype(np.int64),
        user_ids=ids_from_text(users["user_id"]), item_ids=item_ids,
        item_titles=titles if any(titles) else None,
        item_categories=categories if any(categories) else None, steps=info["dataset"].get("steps", {}),
    )


@dataclass
class LoadedRun:
    """A trained run, ready to score: the model in eval mode, its data and its records."""

    run_dir: Path
    config: Config
    model: SequentialRecommender
    data: SequenceData
    metrics: dict[str, Any] | None
    history: list[dict[str, Any]]


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """Load ``run_dir`` (written by ``sinerec train``): config, data, best weights."""
    from sinerec.config import load_config
    from sinerec.models import build_model

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise SinerecError(f"{run_dir}: not a sinerec run directory (config.json is missing)")
    if not (run_dir / "model.pt").exists():
        raise SinerecError(f"{run_dir}: the run has no model.pt yet (is it still training?)")
    config = load_config(json.loads((run_dir / "config.json").read_text()))
    data = load_data(run_dir)
    model = build_model(config.model, data.num_items, config.data.max_len, config.model_params)
    model.load_state_dict(load_torch(run_dir / "model.pt"))
    model.to(device).eval()
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else None
    log_path = run_dir / "log.jsonl"
    history = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    return LoadedRun(run_dir, config, model, data, metrics, history)
