"""The Python API: train, load, score and recommend in a few lines.

    import sinerec
    run = sinerec.fit(frame, model="sasrec", columns={"user": "uid", "item": "iid"}, epochs=5)
    run.metrics["test"]["NDCG@10"]
    run.recommend(["42", "7"], k=10)          # one history of original item ids
    run.recommend_users(["u1", "u2"], k=10)   # a DataFrame: user_id, rank, item_id, score[, interest]
    run = sinerec.load("runs/sasrec-custom-...")

:func:`fit` resolves the settings as ``sinerec train`` does (``sinerec.settings``: the model's shipped file,
then ``settings``, then keyword overrides) and trains through the one training job,
``sinerec.job.train_run``; the run directory it writes is read back by :func:`load`, so a fitted and a loaded
:class:`Run` are the same object. A run's model is in eval mode whenever it serves.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sinerec.config import SECTIONS, DataConfig, TrainConfig
from sinerec.errors import ConfigError, SinerecError

if TYPE_CHECKING:
    import pandas as pd

    from sinerec.data.frame import Interactions
    from sinerec.recommend import Recommendation, Recommender
    from sinerec.runs import LoadedRun

__all__ = ["COLUMNS", "Run", "fit", "frame_interactions", "load"]

logger = logging.getLogger("sinerec")

#: the roles of a DataFrame's columns and the names looked for when ``columns`` does not map them
COLUMNS: dict[str, tuple[str, ...]] = {"user": ("user_id", "user", "userId"), "item": ("item_id", "item", "itemId"),
                                       "timestamp": ("timestamp", "time", "ts")}
_TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}
_DATA_KEYS = {f.name for f in dataclasses.fields(DataConfig)}


class Run:
    """A trained run: its settings, metrics, data and model, ready to recommend.

    Attributes: ``run_dir``, ``config`` (``sinerec.config.Config``), ``metrics`` (the ``metrics.json``
    document, or None for an unfinished run), ``history`` (per-epoch records), ``model`` (eval mode) and
    ``data`` (the preprocessed sequences with the id maps).
    """

    def __init__(self, loaded: LoadedRun) -> None:
        self.loaded = loaded
        self.run_dir = loaded.run_dir
        self.config = loaded.config
        self.metrics = loaded.metrics
        self.history = loaded.history
        self.model = loaded.model.eval()
        self.data = loaded.data
        self._recommender: Recommender | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r}, model={self.config.model!r}, dataset={self.data.name!r})"

    @property
    def recommender(self) -> Recommender:
        """The exact ``sinerec.recommend.Recommender`` of this run (built on first use)."""
        from sinerec.recommend import Recommender

        if self._recommender is None:
            self._recommender = Recommender(self.loaded)
        return self._recommender

    def recommend(self, history: Sequence[Any], k: int = 10, exclude: Sequence[Any] = ()) -> Recommendation:
        """The top ``k`` items after ``history`` (original item ids, oldest first), its items excluded.

        Returns a ``sinerec.recommend.Recommendation`` (``.items``: item_id, score, title, interest, ...).
        Raises ``RequestError`` / ``UnknownItemError`` naming a bad k or unknown ids."""
        self.model.eval()
        return self.recommender.recommend(history, k, exclude)

    def recommend_users(self, users: Sequence[Any] | None = None, k: int = 10,
                        batch_size: int = 512) -> pd.DataFrame:
        """Top ``k`` for known users after their whole sequence (its items excluded), ``batch_size`` at a time.

        Args:
            users: original user ids (text spellings of integer ids are accepted); None: every user.
        Returns:
            a DataFrame with one row per (user, rank): ``user_id``, ``rank`` (1 = best), ``item_id``,
            ``score``, and ``interest`` (the interest that scores the item highest) for models that have
            interests. Users appear in the order given.
        Raises:
            RequestError naming the unknown user ids.
        """
        import pandas as pd

        from sinerec.ids import IdMap, plain_id
        from sinerec.recommend import RecommendRequest, RequestError

        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise RequestError(f"k: must be an integer >= 1, got {k!r}")
        ids = self.data.user_ids
        if users is None:
            indices = np.arange(len(ids))
        else:
            user_map = IdMap(ids)
            found = [user_map.index(u) for u in users]
            unknown = [u for u, i in zip(users, found, strict=True) if i is None]
            if unknown:
                shown = ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
                raise RequestError(f"users: {len(unknown)} unknown user id(s): {shown}")
            indices = np.asarray(found, dtype=np.int64)
        self.model.eval()
        rows: dict[str, list[Any]] = {"user_id": [], "rank": [], "item_id": [], "score": [], "interest": []}
        item_ids = self.data.item_ids
        for lo in range(0, len(indices), batch_size):
            chunk = indices[lo:lo + batch_size]
            requests = [RecommendRequest([item_ids[i] for i in self.data.sequence(int(u))], k) for u in chunk]
            for u, rec in zip(chunk, self.recommender.recommend_batch(requests), strict=True):
                for rank, item in enumerate(rec.items, start=1):
                    rows["user_id"].append(plain_id(ids[u]))
                    rows["rank"].append(rank)
                    rows["item_id"].append(item.item_id)
                    rows["score"].append(item.score)
                    rows["interest"].append(item.interest)
        frame = pd.DataFrame(rows)
        if frame["interest"].isna().all():
            frame = frame.drop(columns="interest")
        else:
            frame["interest"] = frame["interest"].astype("Int64")
        return frame

    def evaluate(self, *overrides: str, parts: Sequence[str] = ("valid", "test")) -> dict[str, Any]:
        """Re-score with the same weights under ``protocol.*`` / ``eval.*`` overrides (``sinerec.rescore``)."""
        from sinerec.rescore import rescore

        return rescore(self.loaded, overrides, parts)


def load(run_dir: str | Path, device: str = "cpu") -> Run:
    """The run in ``run_dir`` (written by :func:`fit`, ``sinerec train`` or ``sinerec benchmark``)."""
    from sinerec.runs import load_run

    return Run(load_run(run_dir, device=device))


def frame_interactions(frame: Any, columns: Mapping[str, str] | None = None, name: str = "dataframe") -> Interactions:
    """A pandas (or polars: anything with ``to_pandas()``) DataFrame as ``Interactions``.

    ``columns`` maps the roles ``user``, ``item`` and optionally ``timestamp`` to column names; a role it
    does not map is looked for under the names of :data:`COLUMNS`. Without a timestamp the row order is the
    order of events. Datetime timestamps become unix seconds. Raises SinerecError naming a missing column.
    """
    import pandas as pd

    from sinerec.data.assemble import events_frame, normalize_ids
    from sinerec.data.frame import ITEM, TIMESTAMP, USER, Interactions

    if not isinstance(frame, pd.DataFrame) and hasattr(frame, "to_pandas"):
        frame = frame.to_pandas()
    if not isinstance(frame, pd.DataFrame):
        raise SinerecError(f"data: expected a dataset name, a file path or a DataFrame, got {type(frame).__name__}")
    columns = dict(columns or {})
    for role in columns:
        if role not in COLUMNS:
            raise ConfigError(f"columns: unknown role {role!r}; map any of {', '.join(COLUMNS)} to column names")
    chosen: dict[str, str] = {}
    for role, guesses in COLUMNS.items():
        name_ = columns.get(role) or next((c for c in guesses if c in frame.columns), None)
        if name_ is None or name_ not in frame.columns:
            if role == "timestamp" and role not in columns:
                continue
            raise SinerecError(f"data: no {role} column {name_ or ' / '.join(guesses)!r}; the DataFrame has "
                               f"{', '.join(map(str, frame.columns))} (map it with columns={{{role!r}: ...}})")
        chosen[role] = name_
    cols = {USER: normalize_ids(frame[chosen["user"]]), ITEM: normalize_ids(frame[chosen["item"]])}
    if "timestamp" in chosen:
        ts = frame[chosen["timestamp"]]
        if pd.api.types.is_datetime64_any_dtype(ts.dtype):
            ts = (ts - pd.Timestamp(0, tz=ts.dt.tz)) // pd.Timedelta(seconds=1)
        cols[TIMESTAMP] = ts
    return Interactions(events_frame(cols), None, name=name, source=f"DataFrame ({len(frame):,} rows)")


def _settings_tree(settings: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` (a nested dict, as a config file holds) with the keyword overrides on top: a section name
    takes a dict, a ``train`` or ``data`` field name its value (``epochs=3``, ``max_len=50``)."""
    tree: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in (settings or {}).items()}
    for key, value in overrides.items():
        if key in (*SECTIONS, "model_params") and isinstance(value, Mapping):
            tree.setdefault(key, {}).update(value)
        elif key in _TRAIN_KEYS:
            tree.setdefault("train", {})[key] = value
        elif key in _DATA_KEYS:
            tree.setdefault("data", {})[key] = value
        else:
            raise ConfigError(f"fit: unknown setting {key}={value!r}; give a section ({', '.join(SECTIONS)}, "
                              "model_params) as a dict, or a train/data field such as epochs=3")
    return tree


def fit(data: Any, model: str = "sine", *, format: str | None = None, columns: Mapping[str, str] | None = None,
        protocol: str = "loo", out: str | Path | None = None, settings: Mapping[str, Any] | None = None,
        **overrides: Any) -> Run:
    """Train ``model`` on ``data`` into a run directory and return the :class:`Run`.

    Args:
        data: a built-in dataset name (``sinerec datasets``), a file path (read in ``format``; default table,
            with ``columns`` naming its user/item/timestamp columns), or a pandas/polars DataFrame.
        model: a registered model; its shipped settings (``sinerec/configs/MODEL.toml``) are the start.
        protocol: "loo" or "comirec".
        out: the run directory (default ``runs/MODEL-DATASET-TIME``); one that holds a run is refused.
        settings: nested settings as a config file holds them (``{"train": {"lr": 0.01}}``).
        overrides: section dicts or train/data fields, e.g. ``epochs=3, max_len=50, model_params={...}``.
    Progress goes to the ``sinerec`` logger (``logging.getLogger("sinerec")``).
    """
    from sinerec.data.preprocess import preprocess
    from sinerec.data.splits import make_split
    from sinerec.job import train_run
    from sinerec.pipeline import Prepared
    from sinerec.settings import resolve_config

    tree = _settings_tree(settings, overrides)
    tree.setdefault("protocol", {})["name"] = protocol
    section = tree.setdefault("data", {})
    frame = None
    if isinstance(data, (str, Path)) and (format is not None or Path(data).is_file()):
        section.update(path=str(data), format=format, dataset=section.get("dataset", Path(data).stem))
        for role, key in (("user", "user_col"), ("item", "item_col"), ("timestamp", "timestamp_col")):
            if columns and role in columns:
                section[key] = columns[role]
    elif isinstance(data, str):
        section["dataset"] = data
    else:
        section.setdefault("dataset", "dataframe")
        frame = frame_interactions(data, columns, name=section["dataset"])
    config = resolve_config(model, values=tree)
    prepared = None
    if frame is not None:
        sequences = preprocess(frame, config.data.preprocess_config())
        prepared = Prepared(sequences, make_split(sequences, config.protocol), 0.0)
    trained = train_run(config, out, log=logger.info, prepared=prepared)
    return load(trained.run_dir)
