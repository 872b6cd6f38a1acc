"""What every torchrun rank holds: no copy of mapped interactions, no (queries x interests x items) scores."""

import numpy as np
import torch

from sinerec.ranking import score_items


def test_describing_mapped_data_copies_no_interaction(tmp_path):
    import tracemalloc

    from sinerec.data.preprocess import SequenceData

    n, users = 2_000_000, 1000
    items = np.random.default_rng(0).integers(1, 5001, n)
    items[:3] = [1, 5000, 7]
    np.save(tmp_path / "items.npy", items)
    offsets = np.linspace(0, n, users + 1).astype(np.int64)
    ids = np.array([None, *range(5000)], dtype=object)
    mapped = SequenceData("m", np.load(tmp_path / "items.npy", mmap_mode="r"), offsets, np.arange(users), ids)
    in_memory = SequenceData("m", items, offsets, np.arange(users), ids)
    tracemalloc.start()
    try:
        got = mapped.describe()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == in_memory.describe() and got["n_items"] == len(np.unique(items)) == 5000
    # np.bincount of a read-only map copies it whole (8 bytes per interaction, 16 MB here)
    assert peak < n, peak


def test_multi_vector_scores_are_the_max_over_interests():
    torch.manual_seed(0)
    user, items = torch.randn(512, 4, 32), torch.randn(5000, 32)
    expected = torch.einsum("bkd,cd->bkc", user, items).amax(dim=1)  # what the (B, K, C) array gave
    assert torch.equal(score_items(user, items), expected)
    small = torch.randn(3, 2, 32)
    assert torch.allclose(score_items(small, items[:7]), torch.einsum("bkd,cd->bkc", small, items[:7]).amax(dim=1))
    single = torch.randn(5, 32)
    assert torch.equal(score_items(single, items), single @ items.T)


def test_multi_vector_scores_keep_their_gradient():
    user = torch.randn(2, 3, 4, requires_grad=True)
    items = torch.randn(6, 4)
    score_items(user, items).sum().backward()
    best = torch.einsum("bkd,cd->bkc", user.detach(), items).argmax(dim=1)  # (B, C): the interest that scores
    expected = torch.zeros(2, 3, 4)
    for b in range(2):
        for c in range(6):
            expected[b, best[b, c]] += items[c]
    assert torch.allclose(user.grad, expected)
