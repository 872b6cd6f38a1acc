"""Synthetic logs with planted concepts, for tests and scaling benchmarks.

:func:`planted_concepts` (small, for tests): items are split into ``n_concepts`` equal clusters. Each user
holds ``concepts_per_user`` clusters and each interaction first picks one of them, then an item of that
cluster by a power-law (Zipf) popularity. A model that recovers the user's clusters from the history predicts
the next item far better than popularity.

:func:`taobao_like` (large, for scaling benchmarks): the same planted-concept structure with millions of items,
power-law item and concept popularity and variable sequence lengths, generated in O(events) time and memory.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sinerec.data.frame import Interactions


def planted_concepts(n_users: int = 500, n_items: int = 200, n_concepts: int = 20, concepts_per_user: int = 2,
                     length: int = 30, zipf: float = 1.0, seed: int = 0) -> Interactions:
    """A log of ``n_users * length`` interactions; items.categories holds each item's planted concept."""
    if n_items % n_concepts:
        raise ValueError(f"n_items ({n_items}) must be a multiple of n_concepts ({n_concepts})")
    rng = np.random.default_rng(seed)
    per = n_items // n_concepts
    weights = 1.0 / np.arange(1, per + 1) ** zipf
    weights /= weights.sum()
    owned = np.stack([rng.choice(n_concepts, concepts_per_user, replace=False) for _ in range(n_users)])
    picks = owned[np.arange(n_users)[:, None], rng.integers(0, concepts_per_user, (n_users, length))]
    within = rng.choice(per, size=(n_users, length), p=weights)
    items = picks * per + within + 1  # ids 1..n_items
    events = pd.DataFrame({
        "user": np.repeat(np.arange(n_users), length),
        "item": items.reshape(-1).astype(np.int64),
        "timestamp": np.tile(np.arange(length), n_users).astype(np.int64),
    })
    item_ids = np.arange(1, n_items + 1)
    meta = pd.DataFrame({"title": [f"item {i}" for i in item_ids],
                         "categories": [(f"c{(i - 1) // per}",) for i in item_ids]}, index=item_ids)
    return Interactions(events, items=meta, name="synthetic-concepts",
                        source=f"planted_concepts(seed={seed})")


def taobao_like(n_users: int = 100_000, n_items: int = 1_000_000, n_concepts: int = 1000,
                concepts_per_user: int = 4, mean_length: float = 30.0, min_length: int = 5,
                max_length: int = 200, item_zipf: float = 1.1, concept_zipf: float = 1.0,
                cover_catalogue: bool = True, seed: int = 0) -> Interactions:
    """A Taobao-like log: millions of items, power-law popularity, planted concepts; vectorised, O(events).

    Item ``i`` (1..n_items) belongs to concept ``(i - 1) % n_concepts`` and has popularity rank
    ``(i - 1) // n_concepts`` inside it. Concepts are drawn with Zipf weights (exponent ``concept_zipf``), each
    user holds ``concepts_per_user`` of them (drawn with replacement), and each interaction picks one of the
    user's concepts, then an item of it by a power law of exponent ``item_zipf`` over the within-concept rank
    (inverse CDF of the continuous power law, so no per-concept probability table is built). Sequence lengths
    are ``min_length`` plus a geometric variable (mean ``mean_length``), capped at ``max_length``.

    With ``cover_catalogue`` every item that was never drawn gets one extra interaction (by a user who drew
    its concept when there is one), so the preprocessed catalogue has exactly ``n_items`` items. Timestamps
    are ``2 * position`` for the drawn events and odd for the extras, which land at a random place.

    Returns:
        Interactions with columns user, item, timestamp and ``category`` (the planted concept of the item);
        ``items`` is None (no per-item table: the concept is ``(item - 1) % n_concepts``).
    """
    if min(n_users, n_items, n_concepts, concepts_per_user, min_length) < 1 or n_concepts > n_items:
        raise ValueError("taobao_like: sizes must be >= 1 and n_concepts <= n_items")
    if not min_length <= mean_length <= max_length:
        raise ValueError(f"taobao_like: need min_length <= mean_length <= max_length, got {min_length}, "
                         f"{mean_length}, {max_length}")
    rng = np.random.default_rng(seed)
    extra_mean = mean_length - min_length
    lengths = min_length + (rng.geometric(1.0 / (extra_mean + 1.0), n_users) - 1 if extra_mean > 0 else 0)
    lengths = np.minimum(lengths, max_length).astype(np.int64)
    n_events = int(lengths.sum())
    user = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    first = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=first[1:])
    position = np.arange(n_events, dtype=np.int64) - first[user]

    concept_p = 1.0 / np.arange(1, n_concepts + 1) ** concept_zipf
    owned = rng.choice(n_concepts, size=(n_users, concepts_per_user), p=concept_p / concept_p.sum())
    concept = owned[user, rng.integers(0, concepts_per_user, n_events)]  # (N,)
    size = (n_items - concept + n_concepts - 1) // n_concepts  # items of each event's concept
    u = rng.random(n_events)
    if abs(item_zipf - 1.0) < 1e-9:
        x = np.exp(u * np.log(size + 1.0))
    else:
        e = 1.0 - item_zipf
        x = (1.0 + u * ((size + 1.0) ** e - 1.0)) ** (1.0 / e)
    rank = np.minimum(np.floor(x).astype(np.int64) - 1, size - 1)
    item = rank * n_concepts + concept + 1
    timestamp = 2 * position

    if cover_catalogue:
        missing = np.flatnonzero(np.bincount(item, minlength=n_items + 1)[1:] == 0) + 1
        if len(missing):
            m_concept = (missing - 1) % n_concepts
            by_concept = np.argsort(concept, kind="stable")
            c_first = np.searchsorted(concept[by_concept], np.arange(n_concepts + 1))
            c_count = np.diff(c_first)[m_concept]
            pick = c_first[m_concept] + (rng.random(len(missing)) * np.maximum(c_count, 1)).astype(np.int64)
            m_user = np.where(c_count > 0, user[by_concept[np.minimum(pick, n_events - 1)]],
                              rng.integers(0, n_users, len(missing)))
            m_time = 2 * rng.integers(0, lengths[m_user]) + 1
            user = np.concatenate([user, m_user])
            item = np.concatenate([item, missing])
            timestamp = np.concatenate([timestamp, m_time])
            concept = np.concatenate([concept, m_concept])
    events = pd.DataFrame({"user": user, "item": item, "timestamp": timestamp, "category": concept})
    return Interactions(events, items=None, name="synthetic-taobao",
                        source=f"taobao_like(n_users={n_users}, n_items={n_items}, seed={seed})",
                        meta={"n_concepts": n_concepts, "item_zipf": item_zipf, "concept_zipf": concept_zipf})
