"""Tests of sinerec.losses: exact values computed by hand, the formula written next to each."""

from __future__ import annotations

import math

import pytest
import torch

from sinerec.errors import ConfigError
from sinerec.losses import (
    LogUniformSampler,
    PopularitySampler,
    covariance_regularizer,
    full_softmax_loss,
    interest_diversity,
    sampled_softmax_loss,
)

B, D, M = 3, 13, 37


def _random_problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    user = torch.randn(B, D, generator=g, dtype=torch.float64)
    item_emb = torch.randn(M + 1, D, generator=g, dtype=torch.float64)
    target = torch.tensor([1, 17, M])
    return user, item_emb, target


# --- full softmax -----------------------------------------------------------------------------------------


def test_full_softmax_is_cross_entropy_over_items_1_to_m() -> None:
    user, item_emb, target = _random_problem()
    # loss = mean_b [ log sum_{j=1..M} exp(u_b . H_j) - u_b . H_{y_b} ]
    logits = user @ item_emb.T  # (B, M + 1)
    expected = (torch.logsumexp(logits[:, 1:], dim=1) - logits[torch.arange(B), target]).mean()
    assert torch.allclose(full_softmax_loss(user, item_emb, target), expected, atol=1e-12)


def test_full_softmax_ignores_the_padding_row() -> None:
    user, item_emb, target = _random_problem()
    moved = item_emb.clone()
    moved[0] = 100.0  # a huge padding row would dominate the softmax if it were a class
    assert torch.equal(full_softmax_loss(user, item_emb, target), full_softmax_loss(user, moved, target))


# --- sampled softmax --------------------------------------------------------------------------------------


def test_sampled_softmax_equals_full_softmax_when_every_item_is_a_negative() -> None:
    """With negatives = all items 1..M, one Q for every class, and accidental hits removed: the classes
    of row b are {y_b} plus (1..M minus y_b), i.e. 1..M exactly once, and the common log Q shifts every
    logit by the same constant, which the softmax ignores. So sampled loss == full loss."""
    user, item_emb, target = _random_problem()
    negatives = torch.arange(1, M + 1)
    log_q = math.log(M * (1.0 / M))  # uniform p = 1/M, Q = S p with S = M; any shared constant works
    sampled = sampled_softmax_loss(
        user, item_emb, target, negatives, torch.full((B,), log_q, dtype=torch.float64),
        torch.full((M,), log_q, dtype=torch.float64), remove_accidental_hits=True,
    )  # fmt: skip
    assert torch.allclose(sampled, full_softmax_loss(user, item_emb, target), atol=1e-12)


def test_sampled_softmax_without_hit_removal_counts_the_target_twice() -> None:
    """Without removal the target is both the positive and one negative:
    loss_b = -log( e^{l_y} / (e^{l_y} + Z_b) ) = log(e^{l_y} + Z_b) - l_y, with Z_b = sum_{j=1..M} e^{l_j}."""
    user, item_emb, target = _random_problem()
    zeros_b, zeros_s = torch.zeros(B, dtype=torch.float64), torch.zeros(M, dtype=torch.float64)
    sampled = sampled_softmax_loss(
        user, item_emb, target, torch.arange(1, M + 1), zeros_b, zeros_s, remove_accidental_hits=False
    )
    logits = user @ item_emb.T
    true_logit = logits[torch.arange(B), target]
    log_z = torch.logsumexp(logits[:, 1:], dim=1)
    expected = (torch.logaddexp(true_logit, log_z) - true_logit).mean()
    assert torch.allclose(sampled, expected, atol=1e-12)


def test_sampled_softmax_hand_computed_two_users_three_negatives() -> None:
    """D = 2, items H1 = (1, 0), H2 = (0, 1), H3 = (1, 1), H4 = (2, 0); users u0 = (1, 0), u1 = (0, 2);
    targets (1, 2); shared negatives (2, 3, 1) with log Q = (0, log 2, 0); log Q of both targets 0.

    Row 0: target logit u0.H1 - 0 = 1; negatives: H2 -> 0 - 0 = 0, H3 -> 1 - log 2, H1 -> hit, -inf.
        loss0 = -log( e / (e + 1 + e/2) ) = log(1.5 e + 1) - 1
    Row 1: target logit u1.H2 = 2; negatives: H2 -> hit, -inf, H3 -> 2 - log 2, H1 -> 0.
        loss1 = -log( e^2 / (e^2 + e^2/2 + 1) ) = log(1.5 e^2 + 1) - 2
    Loss = (loss0 + loss1) / 2.
    """
    item_emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    user = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    loss = sampled_softmax_loss(
        user, item_emb, torch.tensor([1, 2]), torch.tensor([2, 3, 1]),
        log_q_target=torch.zeros(2), log_q_negatives=torch.tensor([0.0, math.log(2.0), 0.0]),
    )  # fmt: skip
    e = math.e
    expected = ((math.log(1.5 * e + 1) - 1) + (math.log(1.5 * e**2 + 1) - 2)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


# --- covariance regulariser (Eq. 10) ----------------------------------------------------------------------

# C (L = 3, D = 4); its row means (2.5, 1, 1) and column means (1, 1, 1, 3) are exact.
_C = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 4.0], [2.0, 1.0, 0.0, 1.0]])


def test_covariance_regularizer_row_centering_by_hand() -> None:
    """Rows minus their means: r0 = (-1.5, -.5, .5, 1.5), r1 = (-1, -1, -1, 3), r2 = (1, 0, -1, 0).
    M = r_i . r_j / 4: M01 = 6/4 = 1.5, M02 = -2/4 = -0.5, M12 = 0/4 = 0.
    L_c = 0.5 * (sum of the squared off-diagonal entries, both triangles) = 1.5^2 + 0.5^2 + 0^2 = 2.5."""
    assert covariance_regularizer(_C, "row").item() == pytest.approx(2.5, abs=1e-6)


def test_covariance_regularizer_column_centering_by_hand() -> None:
    """Columns minus their means: c0 = (0, 1, 2, 1), c1 = (-1, -1, -1, 1), c2 = (1, 0, -1, -2).
    M01 = -2/4 = -0.5, M02 = -4/4 = -1, M12 = -2/4 = -0.5.  L_c = 0.25 + 1 + 0.25 = 1.5."""
    assert covariance_regularizer(_C, "column").item() == pytest.approx(1.5, abs=1e-6)


def test_covariance_regularizer_is_zero_for_orthogonal_centred_rows_and_rejects_bad_centering() -> None:
    orthogonal = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
    assert covariance_regularizer(orthogonal, "row").item() == 0.0
    with pytest.raises(ConfigError, match="cov_centering"):
        covariance_regularizer(_C, "diagonal")


# --- interest diversity (official code) -------------------------------------------------------------------


def test_interest_diversity_by_hand() -> None:
    """User 0: phi = (e1, e2, 3 e1): cosines (0,1) = 0, (0,2) = 1, (1,2) = 0 -> mean 1/3 -> 0.5 + 0.5/3 = 2/3.
    User 1: three vectors along one direction -> mean cosine 1 -> 1. Batch mean: (2/3 + 1) / 2 = 5/6."""
    interests = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [3.0, 0.0]], [[1.0, 1.0], [2.0, 2.0], [0.5, 0.5]]])
    assert interest_diversity(interests).item() == pytest.approx(5 / 6, abs=1e-6)


def test_interest_diversity_matches_the_official_rolling_sum() -> None:
    """The TF code sums cos(phi_k, phi_{k+i mod K}) for i = 1..(K-1)//2 (plus the half shift for even K), i.e.
    every unordered pair once, and returns 0.5 + that sum / (K (K - 1)), averaged over the batch."""
    g = torch.Generator().manual_seed(3)
    for num_interests in (2, 4, 5):
        interests = torch.randn(3, num_interests, 7, generator=g, dtype=torch.float64)
        unit = torch.nn.functional.normalize(interests, dim=-1)
        pairs = [(i, j) for i in range(num_interests) for j in range(i + 1, num_interests)]
        pair_sum = torch.stack([(unit[:, i] * unit[:, j]).sum(-1) for i, j in pairs]).sum(0)  # (3,)
        expected = (0.5 + pair_sum / (num_interests * (num_interests - 1))).mean()
        assert torch.allclose(interest_diversity(interests), expected, atol=1e-12)
    assert interest_diversity(torch.randn(3, 1, 7)).item() == 0.5


# --- samplers ---------------------------------------------------------------------------------------------


def test_popularity_sampler_probabilities_frequencies_and_log_q() -> None:
    # counts[0] is padding (ignored even if large); item 5 has count 0 and is never drawn.
    counts = torch.tensor([100, 1, 2, 3, 4, 0])
    sampler = PopularitySampler(counts, power=1.0)
    assert torch.allclose(sampler.probs, torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.0], dtype=torch.float64))
    num_samples = 20_000
    negatives, log_q = sampler.sample(num_samples, torch.Generator().manual_seed(0))
    assert negatives.shape == (num_samples,) and log_q.shape == (num_samples,)
    assert int(negatives.min()) >= 1 and not bool((negatives == 5).any())
    frequencies = torch.bincount(negatives, minlength=6).double() / num_samples
    assert torch.allclose(frequencies, sampler.probs, atol=0.015)
    # Q = expected count S * p
    assert torch.allclose(log_q.double(), torch.log(num_samples * sampler.probs[negatives]), atol=1e-6)
    assert torch.allclose(sampler.log_q(torch.tensor([4]), 10), torch.tensor([math.log(10 * 0.4)]))


def test_popularity_sampler_power_and_padding() -> None:
    counts = torch.tensor([0, 1, 4, 9])
    square_root = PopularitySampler(counts, power=0.5)  # p ~ (1, 2, 3)
    assert torch.allclose(square_root.probs[1:], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) / 6)
    uniform = PopularitySampler(torch.tensor([7, 1, 0, 5]), power=0.0)  # 0 ** 0 = 1 for all but padding
    assert torch.allclose(uniform.probs, torch.tensor([0.0, 1 / 3, 1 / 3, 1 / 3], dtype=torch.float64))
    negatives, _ = uniform.sample(500, torch.Generator().manual_seed(1))
    assert int(negatives.min()) >= 1
    with pytest.raises(ConfigError, match="power"):
        PopularitySampler(counts, power=-1.0)
    with pytest.raises(ConfigError, match="counts"):
        PopularitySampler(torch.tensor([5, 0, 0]))


def test_log_uniform_sampler_follows_tf_formula() -> None:
    """P(rank r) = log((r + 2) / (r + 1)) / log(M + 1); ranks by descending count, ties by ascending id."""
    counts = torch.tensor([0, 5, 50, 5, 1, 20])  # ranks: item 2, item 5, item 1, item 3, item 4
    sampler = LogUniformSampler.from_counts(counts)
    assert sampler.item_by_rank.tolist() == [2, 5, 1, 3, 4]
    num_items = 5
    for rank, item in enumerate([2, 5, 1, 3, 4]):
        expected = math.log((rank + 2) / (rank + 1)) / math.log(num_items + 1)
        assert sampler.probs[item].item() == pytest.approx(expected, abs=1e-12)
    assert sampler.probs[0].item() == 0.0 and sampler.probs.sum().item() == pytest.approx(1.0, abs=1e-12)

    num_samples = 30_000
    negatives, log_q = sampler.sample(num_samples, torch.Generator().manual_seed(2))
    assert int(negatives.min()) >= 1 and int(negatives.max()) <= num_items
    frequencies = torch.bincount(negatives, minlength=num_items + 1).double() / num_samples
    assert torch.allclose(frequencies, sampler.probs, atol=0.015)
    assert torch.allclose(log_q.double(), torch.log(num_samples * sampler.probs[negatives]), atol=1e-6)


def test_samplers_are_deterministic_given_a_seeded_generator() -> None:
    counts = torch.tensor([0, 3, 1, 4, 1, 5])
    for sampler in (PopularitySampler(counts, 0.75), LogUniformSampler.from_counts(counts)):
        first, _ = sampler.sample(50, torch.Generator().manual_seed(7))
        second, _ = sampler.sample(50, torch.Generator().manual_seed(7))
        assert torch.equal(first, second)
    with pytest.raises(ConfigError, match="item_by_rank"):
        LogUniformSampler(torch.tensor([1, 1, 3]))
