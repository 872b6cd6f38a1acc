"""The evaluator's ranking pieces that serving shares, on answers written by hand."""

import numpy as np
import torch

from sinerec.data.batching import left_padded
from sinerec.ranking import exclusion_pairs, interest_behind, sequences_exclusion


def test_exclusion_pairs_list_each_querys_range():
    items = np.array([5, 6, 7, 8, 9])
    rows, excluded = exclusion_pairs(items, np.array([1, 0, 4]), np.array([3, 0, 5]))
    assert rows.tolist() == [0, 0, 2] and excluded.tolist() == [6, 7, 9]  # query 1 excludes nothing


def test_sequences_exclusion_is_exclusion_pairs_of_the_concatenation():
    rows, excluded = sequences_exclusion([[4, 2], [], np.array([9])])
    assert rows.tolist() == [0, 0, 2] and excluded.tolist() == [4, 2, 9]
    rows, excluded = sequences_exclusion([])
    assert rows.numel() == excluded.numel() == 0


def test_left_padded_keeps_the_last_items_and_pads_on_the_left():
    np.testing.assert_array_equal(left_padded([np.array([1, 2, 3]), np.array([4]), np.array([], np.int64)], 2),
                                  [[2, 3], [0, 4], [0, 0]])


def test_interest_behind_is_the_argmax_with_ties_to_the_smaller_interest():
    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # item 3 ties both interests
    interests = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, K=2, D=2)
    ids = torch.tensor([[2, 1, 3, -1]])
    assert interest_behind(interests, items, ids).tolist() == [[1, 0, 0, -1]]
