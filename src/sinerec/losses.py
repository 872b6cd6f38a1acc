"""Training losses and regularisers as pure functions of tensors, and two small negative samplers.

Shape letters: B batch, D embedding size, M items (ids 1..M; row 0 of every item table is padding and is never
a class), S sampled negatives, L concept prototypes, K interests per user.

- :func:`full_softmax_loss`: exact cross-entropy over all M items (SINE Eq. 9).
- :func:`sampled_softmax_loss`: the usual approximation for large catalogues (negatives shared by the batch,
  log-Q correction, accidental hits removed), with :class:`PopularitySampler` and :class:`LogUniformSampler`.
- :func:`covariance_regularizer`: SINE Eq. 10 on the prototype matrix C.
- :func:`interest_diversity`: the official SINE code's regulariser on a batch of interest vectors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from sinerec.errors import ConfigError

__all__ = [
    "LogUniformSampler",
    "PopularitySampler",
    "covariance_regularizer",
    "full_softmax_loss",
    "interest_diversity",
    "sampled_softmax_loss",
]


# ---------------------------------------------------------------------------------------------------------
# Likelihood losses
# ---------------------------------------------------------------------------------------------------------


def full_softmax_loss(user: Tensor, item_emb: Tensor, target: Tensor) -> Tensor:
    """Mean softmax cross-entropy of ``user . item_emb[j]`` over the real items j = 1..M.

    Args:
        user: (B, D) user vectors.
        item_emb: (M + 1, D) item table; row 0 (padding) is left out of the softmax.
        target: (B,) long, the true next item of each row, in 1..M.

    Returns:
        Scalar: mean over the batch of ``-log softmax_j(user . H_j)[target]``, j over 1..M.
    """
    logits = user @ item_emb[1:].T  # (B, M); column j - 1 is item j. item_emb[1:] is a view: no copy.
    return F.cross_entropy(logits, target - 1)


def sampled_softmax_loss(
    user: Tensor,
    item_emb: Tensor,
    target: Tensor,
    negatives: Tensor,
    log_q_target: Tensor,
    log_q_negatives: Tensor,
    remove_accidental_hits: bool = True,
    sparse: bool = False,
) -> Tensor:
    """Sampled softmax cross-entropy with negatives shared across the batch and the log-Q correction.

    Each row's classes are its target and the S shared negatives; every logit has its class's log Q
    subtracted (``logit_j = user . H_j - log Q_j``), which makes the sampled softmax a consistent estimate of
    the full one. Q is whatever the sampler documents (the expected count ``S * p_j`` for the samplers of
    this module); a constant added to every log Q cancels in the softmax, so ``log(S p)`` and ``log p``
    give the same loss.

    Args:
        user: (B, D) user vectors.
        item_emb: (M + 1, D) item table.
        target: (B,) long, true items in 1..M.
        negatives: (S,) long, sampled items in 1..M, shared by every row (duplicates allowed).
        log_q_target: (B,) log Q of each row's target.
        log_q_negatives: (S,) log Q of each negative.
        remove_accidental_hits: give -inf to the logit of a negative equal to the row's own target, so that
            the target is not also counted as its own negative (TF's ``remove_accidental_hits``).
        sparse: look the rows up with ``F.embedding(sparse=True)``: the gradient of ``item_emb`` (a leaf such as
            an ``nn.Embedding``'s weight) is then a sparse tensor of the rows used, not a dense (M + 1, D) one.

    Returns:
        Scalar: mean over the batch of ``-log( e^{l_y} / (e^{l_y} + sum_s e^{l_s}) )``.
    """
    targets = F.embedding(target, item_emb, sparse=sparse)  # (B, D), = item_emb[target]
    true_logits = (user * targets).sum(-1) - log_q_target  # (B,)
    negative_logits = user @ F.embedding(negatives, item_emb, sparse=sparse).T - log_q_negatives  # (B, S)
    if remove_accidental_hits:
        hits = negatives.unsqueeze(0) == target.unsqueeze(1)  # (B, S)
        negative_logits = negative_logits.masked_fill(hits, float("-inf"))
    logits = torch.cat([true_logits.unsqueeze(1), negative_logits], dim=1)  # (B, 1 + S), target = class 0
    return F.cross_entropy(logits, torch.zeros_like(target))


# ---------------------------------------------------------------------------------------------------------
# Negative samplers (sampling with replacement; Q = expected count = S * p)
# ---------------------------------------------------------------------------------------------------------


class _Sampler:
    """Draws S items i.i.d. from ``probs`` (M + 1,), ``probs[0] == 0``; Q_j = S p_j, j's expected count."""

    probs: Tensor  # (M + 1,) float64, sums to 1, probs[0] == 0

    def log_q(self, ids: Tensor, num_samples: int) -> Tensor:
        """log Q of ``ids`` (any shape) when ``num_samples`` items are drawn: ``log(num_samples * p[ids])``.

        An item with probability 0 (never drawn) gets -inf. Returned as float32 on ``ids``' device.
        """
        p = self.probs.to(ids.device)[ids]
        return (math.log(num_samples) + torch.log(p)).float()

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``num_samples`` items with replacement.

        Returns:
            negatives: (S,) long in 1..M (never 0), on the CPU.
            log_q: (S,) float32, ``log(S * p[negatives])``, the correction :func:`sampled_softmax_loss` takes.
        """
        negatives = self._draw(num_samples, generator)
        return negatives, self.log_q(negatives, num_samples)

    def _draw(self, num_samples: int, generator: torch.Generator | None) -> Tensor:
        return torch.multinomial(self.probs, num_samples, replacement=True, generator=generator)


def _check_counts(counts: Tensor) -> Tensor:
    if counts.dim() != 1 or counts.numel() < 2:
        shape = tuple(counts.shape)
        raise ConfigError(f"counts: expected a 1-D tensor of M + 1 >= 2 item counts, got shape {shape}")
    counts = counts.double().clone()
    if bool((counts < 0).any()):
        raise ConfigError("counts: item counts must be >= 0")
    counts[0] = 0.0  # the padding id is never an item
    return counts


class PopularitySampler(_Sampler):
    """Draws item j in 1..M with probability ``p_j = count_j^power / sum_i count_i^power``, with replacement.

    ``power = 1`` is plain popularity, ``0.75`` the word2vec smoothing, ``0`` uniform over items 1..M.
    With ``power > 0`` an item of count 0 is never drawn and its log Q is -inf: build the counts from the
    training data the targets come from (or add 1 to them).

    Args:
        counts: (M + 1,) interaction count of every item; ``counts[0]`` (padding) is ignored.
        power: the exponent applied to the counts (>= 0).
    """

    def __init__(self, counts: Tensor, power: float = 1.0) -> None:
        if power < 0:
            raise ConfigError(f"power: must be >= 0, got {power!r}")
        weights = _check_counts(counts).pow(power)
        weights[0] = 0.0  # 0 ** 0 == 1 would make padding drawable when power == 0
        total = float(weights.sum())
        if total <= 0:
            raise ConfigError("counts: every item count is 0, nothing to sample")
        self.power = power
        self.probs = weights / total


class LogUniformSampler(_Sampler):
    """TF's ``log_uniform_candidate_sampler`` (Zipfian) over items ranked by popularity, with replacement.

    The item of 0-based popularity rank r (r = 0 the most popular) is drawn with probability
    ``P(r) = log((r + 2) / (r + 1)) / log(M + 1)``, by inverse CDF as TF does:
    ``r = floor(exp(u log(M + 1))) - 1`` with u uniform in [0, 1). (TF's sampled softmax draws *unique*
    candidates and corrects with ``-expm1(tries * log1p(-p))``; this sampler draws with replacement and
    uses ``Q = S * p``.)

    Args:
        item_by_rank: (M,) long, the item ids 1..M ordered from most to least popular.
    """

    def __init__(self, item_by_rank: Tensor) -> None:
        num_items = item_by_rank.numel()
        expected = torch.arange(1, num_items + 1)
        if item_by_rank.dim() != 1 or not torch.equal(item_by_rank.sort().values.cpu(), expected):
            raise ConfigError("item_by_rank: must be a permutation of the item ids 1..M")
        self.item_by_rank = item_by_rank.long().cpu()
        ranks = torch.arange(num_items, dtype=torch.float64)
        probs = torch.zeros(num_items + 1, dtype=torch.float64)
        probs[self.item_by_rank] = torch.log((ranks + 2) / (ranks + 1)) / math.log(num_items + 1)
        self.probs = probs

    @classmethod
    def from_counts(cls, counts: Tensor) -> LogUniformSampler:
        """Rank items 1..M by descending ``counts`` (M + 1,), ties by ascending id, and build the sampler."""
        counts = _check_counts(counts)[1:]
        order = torch.sort(-counts, stable=True).indices  # (M,) 0-based positions, most popular first
        return cls(order + 1)

    def _draw(self, num_samples: int, generator: torch.Generator | None) -> Tensor:
        num_items = self.item_by_rank.numel()
        u = torch.rand(num_samples, generator=generator, dtype=torch.float64)
        ranks = (torch.exp(u * math.log(num_items + 1)).floor().long() - 1).clamp_(0, num_items - 1)  # (S,)
        return self.item_by_rank[ranks]


# ---------------------------------------------------------------------------------------------------------
# Regularisers
# ---------------------------------------------------------------------------------------------------------


def covariance_regularizer(prototypes: Tensor, centering: str = "row") -> Tensor:
    """SINE Eq. 10: push the concept prototypes towards decorrelation.

    ``M = (1/D) (C - C_bar)(C - C_bar)^T`` (L, L) and ``L_c = 0.5 (||M||_F^2 - ||diag M||_F^2)``, i.e.
    half the sum of the squared off-diagonal entries.

    Args:
        prototypes: (L, D) the prototype matrix C.
        centering: how C_bar is read. ``"row"``: each prototype minus its own mean over the D dimensions;
            ``"column"``: each dimension minus its mean over the L prototypes.

    Returns:
        Scalar L_c (>= 0).
    """
    if centering == "row":
        centred = prototypes - prototypes.mean(dim=1, keepdim=True)  # (L, D)
    elif centering == "column":
        centred = prototypes - prototypes.mean(dim=0, keepdim=True)  # (L, D)
    else:
        raise ConfigError(f"cov_centering: expected 'row' or 'column', got {centering!r}")
    cov = centred @ centred.T / prototypes.shape[1]  # (L, L)  M in the paper
    return 0.5 * (cov.pow(2).sum() - cov.diagonal().pow(2).sum())


def interest_diversity(interests: Tensor) -> Tensor:
    """The official SINE code's interest regulariser: ``0.5 + 0.5 * mean_{k != k'} cos(phi_k, phi_k')``.

    The mean is over the K (K - 1) off-diagonal pairs of each user (equal to the mean over unordered pairs),
    then over the batch. It lies in [0, 1]; lower means more diverse interests. With K = 1 there is no pair
    and it is the constant 0.5.

    Args:
        interests: (B, K, D) interest vectors phi.

    Returns:
        Scalar.
    """
    num_interests = interests.shape[1]
    if num_interests < 2:
        return interests.new_full((), 0.5)
    unit = F.normalize(interests, dim=-1)  # (B, K, D)
    cosine = unit @ unit.transpose(1, 2)  # (B, K, K)
    off_diagonal = cosine.sum(dim=(1, 2)) - cosine.diagonal(dim1=1, dim2=2).sum(-1)  # (B,)
    return 0.5 + 0.5 * (off_diagonal / (num_interests * (num_interests - 1))).mean()
