"""``sinerec data synth``: a Taobao-shaped CSV of any size from :func:`sinerec.data.synthetic.taobao_like`.

The file has Tianchi's UserBehavior.csv layout, ``user,item,category,behavior,timestamp`` lines without a
header (read it with ``--format taobao``). Users are generated in batches of about ``batch_rows`` events, each
batch by ``taobao_like`` with its own seed, and written before the next is drawn, so memory is bounded by
one batch whatever the size. Item ``i`` (1..items) belongs to planted concept ``(i - 1) % concepts`` in
every batch (``taobao_like``'s layout); its category is its concept. The side file ``<out>.items.csv``
(``item,concept,category``, with a header) lists every item, for NMI against the planted concepts.

Behaviour types are drawn with Taobao's proportions (pv 89.5 %, cart 5.5 %, fav 2.9 %, buy 2.1 %);
timestamps are unix seconds from 2017-11-25, one minute per position of the user's sequence. The file has
exactly ``rows`` lines: when the users' drawn sequences run out first, further passes over the users follow
(later in time); the last user may be cut short. Both files are written to a temporary name and renamed
when complete: an interrupted or failed run leaves neither.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyarrow import csv as pacsv

from sinerec.data.synthetic import taobao_like
from sinerec.errors import SinerecError

__all__ = ["SYNTH_BEHAVIORS", "SynthSpec", "items_path", "write_taobao_csv"]

#: Behaviour types and their share of the events (as in Tianchi's UserBehavior sample).
SYNTH_BEHAVIORS: tuple[tuple[str, float], ...] = (("pv", 0.895), ("cart", 0.055), ("fav", 0.029), ("buy", 0.021))
#: 2017-11-25 00:00 UTC, the first day of the Tianchi sample.
_START = 1_511_568_000
#: Seconds between two positions of a sequence; a later pass over the users starts this much later.
_STEP, _PASS = 60, 10**7


@dataclass(frozen=True)
class SynthSpec:
    """The sizes of a synthetic log: ``rows`` events over ``items`` items, ``users`` users (each drawn
    sequence has ``rows / users`` events on average) and ``concepts`` planted concepts."""

    rows: int
    items: int
    users: int
    concepts: int
    seed: int = 0

    def check(self) -> None:
        if min(self.rows, self.items, self.users, self.concepts) < 1:
            raise SinerecError(f"data synth: --rows, --items, --users and --concepts must be >= 1, got {self}")
        if self.concepts > self.items:
            raise SinerecError(f"data synth: --concepts ({self.concepts}) must be <= --items ({self.items})")


def items_path(out: Path) -> Path:
    """The side file of ``out``: ``FILE.csv[.gz]`` -> ``FILE.items.csv``."""
    name = out.name
    for suffix in (".gz", ".csv", ".tsv", ".txt"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return out.with_name(f"{name}.items.csv")


def _batches(spec: SynthSpec, batch_rows: int) -> Iterator[tuple[np.ndarray, ...]]:
    """(user, item, concept, position) arrays, batch after batch, until ``spec.rows`` events."""
    mean = max(1.0, spec.rows / spec.users)
    min_length = max(1, min(5, int(mean)))
    per_batch = max(1, int(batch_rows / mean))
    done, n_pass = 0, 0
    while done < spec.rows:
        for start in range(0, spec.users, per_batch):
            count = min(per_batch, spec.users - start)
            seed = [spec.seed, n_pass, start]
            log = taobao_like(n_users=count, n_items=spec.items, n_concepts=spec.concepts,
                              mean_length=max(mean, float(min_length)), min_length=min_length,
                              max_length=max(200, int(20 * mean)), cover_catalogue=False,
                              seed=int(np.random.SeedSequence(seed).generate_state(1)[0]))
            ev = log.events
            take = min(len(ev), spec.rows - done)
            yield (ev["user"].to_numpy()[:take] + start, ev["item"].to_numpy()[:take],
                   ev["category"].to_numpy()[:take], ev["timestamp"].to_numpy()[:take] // 2 + n_pass * _PASS)
            done += take
            if done >= spec.rows:
                return
        n_pass += 1


def _batch_table(user: np.ndarray, item: np.ndarray, concept: np.ndarray, position: np.ndarray,
                 rng: np.random.Generator) -> pa.Table:
    names = [b for b, _ in SYNTH_BEHAVIORS]
    p = np.array([w for _, w in SYNTH_BEHAVIORS])
    codes = rng.choice(len(names), size=len(user), p=p / p.sum()).astype(np.int8)
    behavior = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names)).cast(pa.string())
    return pa.table({"user": user, "item": item, "category": concept, "behavior": behavior,
                     "timestamp": _START + _STEP * position})


def write_taobao_csv(spec: SynthSpec, out: Path, batch_rows: int = 2_000_000,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, object]:
    """Write the log to ``out`` (gzipped when it ends in ``.gz``) and the items side file; atomic (see the
    module docstring). ``progress(rows written, rows)`` is called after each batch. Returns a summary."""
    spec.check()
    out = Path(out)
    side = items_path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    side_tmp = side.with_name(f".{side.name}.tmp-{os.getpid()}")
    rng = np.random.default_rng([spec.seed, 1])
    written = 0
    try:
        with pa.output_stream(tmp, compression="gzip" if out.name.endswith(".gz") else None) as sink:
            options = pacsv.WriteOptions(include_header=False, quoting_style="none")
            for user, item, concept, position in _batches(spec, batch_rows):
                pacsv.write_csv(_batch_table(user, item, concept, position, rng), sink, options)
                written += len(user)
                if progress is not None:
                    progress(written, spec.rows)
        ids = np.arange(1, spec.items + 1, dtype=np.int64)
        concepts = (ids - 1) % spec.concepts
        with pa.output_stream(side_tmp) as side_sink:
            side_sink.write(b"item,concept,category\n")
            pacsv.write_csv(pa.table({"item": ids, "concept": concepts, "category": concepts}), side_sink,
                            pacsv.WriteOptions(include_header=False, quoting_style="none"))
        os.replace(side_tmp, side)
        os.replace(tmp, out)
    except BaseException:
        for path in (tmp, side_tmp):
            path.unlink(missing_ok=True)
        raise
    return {"path": str(out), "items_path": str(side), "rows": written, "users": spec.users,
            "items": spec.items, "concepts": spec.concepts, "seed": spec.seed}
