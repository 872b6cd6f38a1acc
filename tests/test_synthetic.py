"""The Taobao-like generator: exact catalogue, planted concepts, power-law popularity, seeded."""

import numpy as np
import pandas as pd

from sinerec.data.preprocess import preprocess
from sinerec.data.synthetic import taobao_like


def test_taobao_like_covers_the_catalogue_with_planted_concepts():
    log = taobao_like(n_users=301, n_items=2003, n_concepts=37, concepts_per_user=3, mean_length=11,
                      min_length=3, max_length=40, seed=5)
    ev = log.events
    data = preprocess(log)
    assert data.num_items == 2003 and data.num_users == 301  # every item present, ids kept in order
    assert (ev["category"] == (ev["item"] - 1) % 37).all()  # item i belongs to concept (i - 1) % L
    lengths = ev.groupby("user").size()
    # drawn lengths lie in [min_length, max_length]; a user also receives the extra items of its concepts
    drawn = ev[ev["timestamp"] % 2 == 0].groupby("user").size()
    assert drawn.min() >= 3 and drawn.max() <= 40 and lengths.sum() == len(ev)
    # drawn events stay in the user's own concepts (at most 3 distinct), and popularity is skewed
    assert ev[ev["timestamp"] % 2 == 0].groupby("user")["category"].nunique().max() <= 3
    counts = np.sort(np.bincount(ev["item"], minlength=2004)[1:])[::-1]
    assert counts[0] > 20 * np.median(counts)


def test_taobao_like_is_seeded():
    a = taobao_like(n_users=50, n_items=500, n_concepts=10, mean_length=8, seed=1).events
    b = taobao_like(n_users=50, n_items=500, n_concepts=10, mean_length=8, seed=1).events
    c = taobao_like(n_users=50, n_items=500, n_concepts=10, mean_length=8, seed=2).events
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
