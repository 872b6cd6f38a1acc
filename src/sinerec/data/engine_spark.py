"""``sinerec data prepare --engine spark``: the prepared dataset of a delimited log, built by Apache Spark.

Spark does the work that grows with the rows, on its executors (a cluster, or the cores of this machine in
local mode): the parse and its checks (``sinerec.data.spark_parse``), the behaviour filter, the duplicate
policy, the iterative k-core, the per-user time order and the id maps. The driver then collects only what the
artifact holds (the remapped item of each interaction, its timestamp, the users' and items' original ids and
the items' categories) and returns a :class:`~sinerec.data.preprocess.SequenceData` that
``sinerec.data.prepared.write_prepared`` writes, atomically, as for the single-machine path.

Every rule is the single-machine one (``sinerec.data.preprocess``), so the artifact, its arrays and its
fingerprint are identical:

* ``steps["raw"]`` counts the rows read, their distinct users and items (typed ids: ``7`` and ``007`` are one);
* the behaviour filter keeps ``data.behaviors`` (when the log has a behaviour column);
* ``data.duplicates=first|last`` keeps, per (user, item), the first or last row in (time, file order);
* the k-core drops items below ``min_item_count`` then users below ``min_user_count`` rows, repeated until a
  whole round drops nothing (one round with ``kcore_iterative=false``);
* each user's items are in (time, file order); users are numbered 0..U-1 and items 1..M in ascending order of
  their original ids; an item's category is the one on its first line in the file (any behaviour).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from sinerec.config import DataConfig
from sinerec.data.frame import BEHAVIOR, CATEGORY, ITEM, TIMESTAMP, USER
from sinerec.data.preprocess import PreprocessConfig, SequenceData
from sinerec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["MISSING_PYSPARK", "prepare_with_spark", "spark_session"]

#: The one line printed when pyspark is not installed.
MISSING_PYSPARK = "--engine spark needs pyspark: pip install 'sinerec[spark]' (and Java 17 or later)"


@contextmanager
def spark_session(master: str | None = None, conf: dict[str, str] | None = None) -> Iterator[SparkSession]:
    """A Spark session, stopped on leaving unless it was already running (a test's, a notebook's): on
    ``master`` when given (``local[4]``, ``spark://host:7077``, ``yarn``...), else the one spark-submit or
    ``PYSPARK_SUBMIT_ARGS`` (``--master ...``) sets, else ``local[*]``; ``conf`` are Spark settings
    (``spark.driver.memory``...). Without pyspark, ConfigError (:data:`MISSING_PYSPARK`)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(MISSING_PYSPARK) from None
    builder = SparkSession.builder.appName("sinerec data prepare")
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ or "--master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    if master is not None or not submitted:
        builder = builder.master(master or "local[*]")
    for key, value in {"spark.ui.showConsoleProgress": "false", **(conf or {})}.items():  # no progress bars
        builder = builder.config(key, value)
    running = SparkSession.getActiveSession() is not None
    session = builder.getOrCreate()
    try:
        yield session
    finally:
        if not running:
            session.stop()


def prepare_with_spark(cfg: DataConfig, spark: SparkSession) -> SequenceData:
    """The preprocessed sequences of ``cfg`` (``data.path`` in a format of
    :data:`~sinerec.data.spark_source.SPARK_FORMATS`), computed by ``spark``: equal, array for array, to
    :func:`sinerec.pipeline.preprocess_source` of ``cfg``. Raises as it does (DataFormatError for a malformed
    line, DataError when no interaction is left), and ConfigError for what the engine does not reproduce."""
    from sinerec.data.spark_parse import head_lines, line_frame, parse_rows
    from sinerec.data.spark_source import side_items, spark_source

    source = spark_source(cfg, lambda n: head_lines(line_frame(spark, str(cfg.path)), n))
    lines = line_frame(spark, source.path)
    rows = parse_rows(lines, source, cfg.skip_bad_lines)
    from pyspark.sql import functions as F

    raw = rows.agg(F.count("*"), F.countDistinct(USER), F.countDistinct(ITEM)).first()
    steps: dict[str, Any] = {"raw": {"n_users": int(raw[1]), "n_items": int(raw[2]),  # type: ignore[index]
                                     "n_interactions": int(raw[0])}}  # type: ignore[index]
    kept, count = _filtered(rows, cfg.preprocess_config(), steps, TIMESTAMP in source.columns)
    if count == 0:
        settings = cfg.preprocess_config()
        filters = ", ".join(f"{key}={getattr(settings, key)!r}" for key in ("behaviors", "duplicates",
                                                                             "min_user_count", "min_item_count"))
        raise DataError(f"dataset {source.name}: no interactions to train on ({steps['raw']['n_interactions']:,} "
                        f"read from {Path(str(cfg.path))}; 0 left after the filters {filters})")
    categories = None
    if CATEGORY in source.columns:  # an item's category: the one on its first line, any behaviour
        categories = rows.groupBy(ITEM).agg(F.min_by(CATEGORY, "_m").alias(CATEGORY))
    data = _sequences(kept, source.name, steps, TIMESTAMP in source.columns, categories)
    if source.side is not None:  # the format's item file: small, read on the driver
        int_items = rows.schema[ITEM].dataType.typeName() == "long"
        data.item_titles, data.item_categories = side_items(source, data.item_ids, int_items)
    return data


def _filtered(rows: DataFrame, config: PreprocessConfig, steps: dict[str, Any], timed: bool
              ) -> tuple[DataFrame, int]:
    """The rows left by the behaviour filter, the duplicate policy and the k-core, checkpointed, and their
    count (``steps`` records each step applied, as ``sinerec.data.preprocess.preprocess`` does)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if config.behaviors is not None and BEHAVIOR in rows.columns:
        rows = rows.filter(F.col(BEHAVIOR).isin(list(config.behaviors)))
        steps["behaviors"] = list(config.behaviors)
    if config.duplicates != "keep":
        order = [TIMESTAMP, "_m"] if timed else ["_m"]
        keys = [F.col(c).asc() if config.duplicates == "first" else F.col(c).desc() for c in order]
        rank = F.row_number().over(Window.partitionBy(USER, ITEM).orderBy(*keys))
        rows = rows.withColumn("_r", rank).filter(F.col("_r") == 1).drop("_r")
        steps["duplicates"] = config.duplicates
    rows = rows.localCheckpoint()
    count = rows.count()
    if config.min_user_count > 0 or config.min_item_count > 0:
        rows, count = _kcore(rows, count, config.min_user_count, config.min_item_count, config.kcore_iterative)
        steps["kcore"] = {"min_user_count": config.min_user_count, "min_item_count": config.min_item_count,
                          "iterative": config.kcore_iterative}
    return rows, count


def _kcore(rows: DataFrame, count: int, min_user: int, min_item: int, iterative: bool) -> tuple[DataFrame, int]:
    """Drop the rows of items with fewer than ``min_item`` rows, then of users with fewer than ``min_user``;
    repeated until a round drops nothing (one round unless ``iterative``). ``count``: the rows given; returns
    the rows left and their count."""
    from pyspark.sql import functions as F

    while True:
        for column, least in ((ITEM, min_item), (USER, min_user)):
            if least > 0:
                enough = rows.groupBy(column).count().filter(F.col("count") >= least).select(column)
                rows = rows.join(enough, column, "left_semi")
        rows = rows.localCheckpoint()
        left = rows.count()
        if not iterative or left == count:
            return rows, left
        count = left


def _numbered(rows: DataFrame, column: str, start: int, name: str) -> DataFrame:
    """The distinct values of ``column`` and ``name``: their rank in ascending order, from ``start``.

    Distributed: the values are range-partitioned and sorted by Spark; each partition's first rank is the
    count of the partitions before it (the partitions of a sort are in ascending order)."""
    from pyspark.sql import functions as F

    ordered = rows.select(column).distinct().orderBy(column).select(
        column, F.spark_partition_id().alias("_p"), F.monotonically_increasing_id().alias("_k")).localCheckpoint()
    first: dict[int, int] = {}
    at = start
    for part, count in sorted((row[0], row[1]) for row in ordered.groupBy("_p").count().collect()):
        first[part], at = at, at + count
    bases = F.array(*[F.lit(first.get(p, 0)) for p in range(max(first, default=0) + 1)])
    rank = F.get(bases, F.col("_p")) + F.col("_k") - F.shiftleft(F.col("_p").cast("long"), 33)
    return ordered.select(column, rank.alias(name))


def _arrow(frame: DataFrame) -> pa.Table:
    """``frame`` collected on the driver as an Arrow table, in its order."""
    with warnings.catch_warnings():  # pyspark's check of the pandas version, though no pandas is involved
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        return frame.toArrow()


def _sequences(rows: DataFrame, name: str, steps: dict[str, Any], timed: bool,
               categories: DataFrame | None) -> SequenceData:
    """Collect the ordered, remapped rows and the id maps into a SequenceData."""
    users = _numbered(rows, USER, 0, "_u")
    items = _numbered(rows, ITEM, 1, "_i")
    order = ["_u", TIMESTAMP, "_m"] if timed else ["_u", "_m"]
    wanted = ["_u", "_i", TIMESTAMP] if timed else ["_u", "_i"]
    table = _arrow(rows.join(users, USER).join(items, ITEM).orderBy(*order).select(*wanted))
    user_ids = _arrow(users.orderBy("_u").select(USER)).column(0).to_numpy(zero_copy_only=False)
    if categories is not None:
        items = items.join(categories, ITEM, "left")
    item_table = _arrow(items.orderBy("_i").select(ITEM, *([CATEGORY] if categories is not None else [])))
    item_ids = np.empty(item_table.num_rows + 1, dtype=object)
    item_ids[0] = None
    item_ids[1:] = item_table.column(0).to_numpy(zero_copy_only=False)
    item_categories: list[tuple[str, ...]] | None = None
    if categories is not None:
        item_categories = [()] + [(c,) if c is not None else () for c in item_table.column(1).to_pylist()]
    user_index = table.column("_u").to_numpy()
    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_index, minlength=len(user_ids)), out=offsets[1:])
    timestamps = table.column(TIMESTAMP).to_numpy() if timed else None
    return SequenceData(name=name, items=table.column("_i").to_numpy().astype(np.int64), offsets=offsets,
                        user_ids=user_ids, item_ids=item_ids, timestamps=timestamps, item_titles=None,
                        item_categories=item_categories, steps=steps)
