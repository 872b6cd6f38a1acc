"""Synthetic logs with planted concepts, for tests and scaling benchmarks.

Items are split into ``n_concepts`` equal clusters. Each user holds ``concepts_per_user`` clusters and each
interaction first picks one of them, then an item of that cluster by a power-law (Zipf) popularity. A model
that recovers the user's clusters from the history predicts the next item far better than popularity.
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
