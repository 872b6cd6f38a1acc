import numpy as np
import pandas as pd
import pytest

from sinerec.data.frame import Interactions
from sinerec.data.preprocess import PreprocessConfig, preprocess
from sinerec.errors import ConfigError


def make(rows, with_time=True, behaviors=None):
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"][: 3 if with_time else 2])
    if behaviors is not None:
        df["behavior"] = behaviors
    return Interactions(df, name="toy")


def test_order_is_chronological_and_stable_and_ids_ascend():
    # user 7: items 30 (t=5), 10 (t=1), 20 (t=5, after 30 in the file); user 3: 20 (t=2)
    d = preprocess(make([(7, 30, 5), (7, 10, 1), (7, 20, 5), (3, 20, 2)]))
    assert d.user_ids.tolist() == [3, 7]
    assert d.item_ids.tolist() == [None, 10, 20, 30]
    assert d.offsets.tolist() == [0, 1, 4]
    # user 3: [20] -> [2]; user 7: 10 (t=1), then the tie at t=5 in file order: 30, 20
    assert d.items.tolist() == [2, 1, 3, 2]
    assert d.timestamps.tolist() == [2, 1, 5, 5]


def test_no_timestamps_keeps_file_order():
    d = preprocess(make([("b", "x"), ("a", "z"), ("b", "y"), ("a", "x")], with_time=False))
    assert d.user_ids.tolist() == ["a", "b"]
    assert d.item_ids.tolist() == [None, "x", "y", "z"]
    assert d.items.tolist() == [3, 1, 1, 2]


def test_duplicates_policies():
    rows = [(1, 5, 1), (1, 6, 2), (1, 5, 3)]
    assert preprocess(make(rows)).items.tolist() == [1, 2, 1]
    assert preprocess(make(rows), PreprocessConfig(duplicates="first")).items.tolist() == [1, 2]
    assert preprocess(make(rows), PreprocessConfig(duplicates="last")).items.tolist() == [2, 1]


def test_iterative_kcore_by_hand():
    # item 9 has 1 interaction -> dropped; then user 2 has 1 left -> dropped; then item 8 has 1 -> dropped
    rows = [(1, 7, 1), (1, 8, 2), (2, 8, 1), (2, 9, 2), (3, 7, 1), (3, 6, 2), (1, 6, 3)]
    d = preprocess(make(rows), PreprocessConfig(min_user_count=2, min_item_count=2))
    assert d.user_ids.tolist() == [1, 3]
    assert d.item_ids.tolist() == [None, 6, 7]
    assert d.items.tolist() == [2, 1, 2, 1]
    one_pass = preprocess(make(rows), PreprocessConfig(min_user_count=2, min_item_count=2,
                                                        kcore_iterative=False))
    # one pass: items first (9 goes), then users (2 goes); item 8 keeps its user-1 row
    assert one_pass.item_ids.tolist() == [None, 6, 7, 8]


def test_behavior_filter_and_fingerprint_changes():
    data = make([(1, 1, 1), (1, 2, 2), (1, 3, 3)], behaviors=["pv", "buy", "pv"])
    all_rows = preprocess(data)
    pv = preprocess(data, PreprocessConfig(behaviors=("pv",)))
    assert pv.items.tolist() == [1, 2] and pv.item_ids.tolist() == [None, 1, 3]
    assert all_rows.fingerprint() != pv.fingerprint()
    assert preprocess(data).fingerprint() == all_rows.fingerprint()


def test_bad_settings():
    with pytest.raises(ConfigError, match="duplicates"):
        PreprocessConfig(duplicates="all")
    with pytest.raises(ConfigError, match="min_user_count"):
        PreprocessConfig(min_user_count=-1)


def test_item_metadata_follows_remap():
    data = make([(1, 20, 1), (1, 10, 2)])
    data.items = pd.DataFrame({"title": ["ten", "twenty", "thirty"], "categories": [("a",), ("b", "c"), ()]},
                              index=[10, 20, 30])
    d = preprocess(data)
    assert d.item_titles == ["", "ten", "twenty"]
    assert d.item_categories == [(), ("a",), ("b", "c")]
    assert np.array_equal(d.items, [2, 1])
