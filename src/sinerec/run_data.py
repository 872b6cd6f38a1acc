"""The data part of a run directory: the sequences a run was trained on, stored in it or referenced.

    RUN/data.json       DATA_INFO    dataset and split summaries (fingerprints); for a run of a prepared
                                     dataset also {"prepared": {"path": absolute folder, "fingerprint": ...}}
    RUN/items.csv       ITEMS        item index -> original id, title, categories
    RUN/users.csv       USERS        user index -> original id
    RUN/sequences.npz   SEQUENCES    the preprocessed sequences (items, offsets): a run of a source file only

A run trained from a prepared dataset (``--prepared DIR``) does not copy the sequences (at Taobao scale an
int32 copy and a compressed npz of every interaction, written when training starts): ``data.json`` records
the artifact's path and fingerprint, and :func:`load_data` (export, explain, serve, recommend, evaluate)
maps the artifact's arrays read-only (``np.memmap``, shared by every process that maps them) once its
arrays give the recorded fingerprint. A missing or changed artifact is refused with a
:class:`RunDataError` that names the fix: ``sinerec run-data RUN --prepared DIR`` points the run at the
artifact's new place (:func:`relink`) and ``--copy`` stores the sequences in the run
(:func:`copy_sequences`): a self-contained run, which loads its own ``sequences.npz`` as a run of a source
file does. ``sinerec.runs`` owns the rest of the layout and re-exports these names.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from sinerec.data.preprocess import SequenceData
from sinerec.errors import SinerecError
from sinerec.ids import ids_from_text
from sinerec.storage import atomic_write_stream, write_json

if TYPE_CHECKING:
    from sinerec.pipeline import Prepared

__all__ = ["CONFIG", "DATA_INFO", "ITEMS", "USERS", "SEQUENCES", "RunDataError", "read_json", "write_run_data",
           "save_data", "dataset_summary", "prepared_reference", "check_prepared", "load_data", "relink",
           "copy_sequences"]

CONFIG = "config.json"
DATA_INFO = "data.json"
ITEMS = "items.csv"
USERS = "users.csv"
SEQUENCES = "sequences.npz"


class RunDataError(SinerecError):
    """A run's data cannot be loaded: its prepared dataset is missing or changed, or its files are damaged."""


def read_json(path: Path) -> Any:
    """A JSON file of a run directory; a damaged one raises :class:`SinerecError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SinerecError(f"{path}: damaged, not valid JSON ({exc})") from None


# ----------------------------------------------------------------------------------------- writing
def write_run_data(run_dir: Path, prepared: Prepared) -> None:
    """``data.json`` (dataset and split summaries), the id maps and, unless the data was mapped from a
    prepared dataset (then ``data.json`` references it), the sequences."""
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"dataset": dataset_summary(prepared.data), "protocol": prepared.split.summary()}
    if prepared.folder is not None:  # mapped from a prepared dataset: which one, wherever the run is read from
        info["prepared"] = {"path": os.path.abspath(prepared.folder),
                            "fingerprint": prepared.data.fingerprint()}
    write_json(run_dir / DATA_INFO, info)
    save_data(run_dir, prepared.data, sequences=prepared.folder is None)


def save_data(run_dir: Path, data: SequenceData, sequences: bool = True) -> None:
    """Id maps (CSV, original ids as text) and, with ``sequences``, the sequences (``sequences.npz``); each
    written into its file as it is produced (millions of ids are never held as one string)."""
    def items_csv(w: Any) -> None:
        w.writerow(["item_index", "item_id", "title", "categories"])
        for idx in range(1, data.num_items + 1):
            title = data.item_titles[idx] if data.item_titles else ""
            cats = "|".join(data.item_categories[idx]) if data.item_categories else ""
            w.writerow([idx, data.item_ids[idx], title, cats])

    def users_csv(w: Any) -> None:
        w.writerow(["user_index", "user_id"])
        for idx, uid in enumerate(data.user_ids):
            w.writerow([idx, uid])

    _write_csv(run_dir / ITEMS, items_csv)
    _write_csv(run_dir / USERS, users_csv)
    if sequences:
        _save_sequences(run_dir, data)


def _write_csv(path: Path, rows: Callable[[Any], None]) -> None:
    """A UTF-8 CSV file written atomically, row by row, by ``rows(csv_writer)``."""
    def write(fh: BinaryIO) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        rows(csv.writer(text))
        text.flush()
        text.detach()  # leave the binary file open: atomic_write_stream flushes, syncs and closes it

    atomic_write_stream(path, write)


def _save_sequences(run_dir: Path, data: SequenceData) -> None:
    atomic_write_stream(run_dir / SEQUENCES, lambda fh: np.savez_compressed(
        fh, items=data.items.astype(np.int32), offsets=data.offsets))


def dataset_summary(data: SequenceData) -> dict[str, Any]:
    """The ``dataset`` entry of ``data.json``: name, counts, fingerprint and preprocessing steps."""
    d = data.describe()
    return {"name": d["name"], "n_users": d["n_users"], "n_items": d["n_items"],
            "n_interactions": d["n_interactions"], "fingerprint": d["fingerprint"], "steps": data.steps}


# ----------------------------------------------------------------------------------------- the reference
def prepared_reference(run_dir: Path) -> dict[str, str] | None:
    """``{"path", "fingerprint"}`` of the prepared dataset ``run_dir`` was trained on (None: a source file)."""
    ref = read_json(run_dir / DATA_INFO).get("prepared")
    return ref if isinstance(ref, dict) else None


def _fix(run_dir: Path) -> str:
    return (f"restore it, or point the run at it with `sinerec run-data {run_dir} --prepared DIR` (add --copy "
            "to store the sequences in the run)")


def check_prepared(run_dir: Path, ref: dict[str, str], *, verify: bool = True) -> SequenceData:
    """The referenced prepared dataset's sequences, mapped; :class:`RunDataError` naming the run, the folder,
    both fingerprints and the fix when the folder is missing or its data differs from the run's. ``verify``
    recomputes the fingerprint from the arrays (else the artifact's summary is trusted)."""
    from sinerec.data.prepared import load_sequences, read_summary
    from sinerec.errors import DataError

    folder, want = ref["path"], ref["fingerprint"]
    if not (Path(folder) / "summary.json").exists():
        raise RunDataError(f"{run_dir}: trained on the prepared dataset {folder} (fingerprint {want}), which is "
                           f"missing; {_fix(run_dir)}")
    try:
        got = read_summary(folder)["fingerprint"]
        data = load_sequences(folder, mmap=True, verify=verify) if got == want else None
    except DataError as exc:
        raise RunDataError(f"{run_dir}: its prepared dataset cannot be read ({exc}); {_fix(run_dir)}") from None
    if data is None:
        raise RunDataError(f"{run_dir}: trained on the prepared dataset {folder} with fingerprint {want}, but "
                           f"that folder now holds fingerprint {got} (prepared again from other data?); "
                           f"{_fix(run_dir)}")
    return data


# ----------------------------------------------------------------------------------------- reading
def load_data(run_dir: str | Path) -> SequenceData:
    """The preprocessed data a run was trained on: sequences, id maps, titles and categories. A run of a
    prepared dataset maps its arrays (:func:`check_prepared`) unless it holds its own ``sequences.npz``."""
    import pandas as pd

    run_dir = Path(run_dir)
    for name in (ITEMS, USERS, DATA_INFO):
        if not (run_dir / name).exists():
            raise SinerecError(f"{run_dir}: not a sinerec run directory ({name} is missing)")
    ref = prepared_reference(run_dir)
    if ref is not None and not (run_dir / SEQUENCES).exists():
        return check_prepared(run_dir, ref)
    if not (run_dir / SEQUENCES).exists():
        raise SinerecError(f"{run_dir}: not a sinerec run directory ({SEQUENCES} is missing)")
    items = pd.read_csv(run_dir / ITEMS, dtype=str, keep_default_na=False)
    users = pd.read_csv(run_dir / USERS, dtype=str, keep_default_na=False)
    try:
        with np.load(run_dir / SEQUENCES) as npz:
            seq = {"items": npz["items"], "offsets": npz["offsets"]}
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise SinerecError(f"{run_dir / SEQUENCES}: damaged ({exc})") from None
    info = read_json(run_dir / DATA_INFO)
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


# ----------------------------------------------------------------------------------------- repairs
def relink(run_dir: str | Path, folder: str | Path) -> dict[str, str]:
    """Point the run at its prepared dataset's new place ``folder`` (``data.json``'s reference and
    ``config.json``'s ``data.prepared``, so that ``--resume`` finds it too), after checking that ``folder``'s
    arrays give the fingerprint the run was trained on. Returns the new reference."""
    run_dir = Path(run_dir)
    info = read_json(run_dir / DATA_INFO)
    old = info.get("prepared")
    if not isinstance(old, dict):
        raise RunDataError(f"{run_dir}: trained from a source file, not a prepared dataset: nothing to relink")
    ref = {"path": os.path.abspath(folder), "fingerprint": old["fingerprint"]}
    check_prepared(run_dir, ref)
    write_json(run_dir / DATA_INFO, {**info, "prepared": ref})
    config = read_json(run_dir / CONFIG)
    if isinstance(config.get("data"), dict) and config["data"].get("prepared") is not None:
        config["data"]["prepared"] = ref["path"]
        write_json(run_dir / CONFIG, config)
    return ref


def copy_sequences(run_dir: str | Path) -> Path:
    """Store the referenced prepared dataset's sequences in the run (``sequences.npz``): the run no longer
    needs the artifact to be exported, explained or served (``--resume`` still trains from it). Returns the
    written file."""
    run_dir = Path(run_dir)
    ref = prepared_reference(run_dir)
    if ref is None:
        raise RunDataError(f"{run_dir}: trained from a source file: its sequences are already in the run")
    _save_sequences(run_dir, check_prepared(run_dir, ref))
    return run_dir / SEQUENCES
