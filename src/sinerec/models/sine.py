"""SINE: Sparse-Interest Network for Sequential Recommendation (Tan et al., WSDM 2021, arXiv 2102.09267).

The whole model, in the paper's order (see ``docs/sine-model.md``):

1. concept activation (Eqs. 1-2): pool the history into z, score the L prototypes, keep the top K, gated;
2. intention assignment (Eq. 3): P(k|t), which activated concept each position expresses;
3. attention weighting (Eq. 4): P(t|k), one attention head per activated concept;
4. interest embeddings (Eq. 5): phi_k = sum_t P(k|t) P(t|k) X_t;
5. interest aggregation (Eqs. 6-8): predict the next intention C_apt from the intention sequence, then mix
   the phi_k into one user vector v.

Three variants: ``"paper"`` (section 2 of the spec, the equations as printed), ``"paper-cosine"`` (the same
model with Eq. 3 computed as a cosine / 0.07 and Eq. 7 as a cosine / tau, as the authors' code computes its
two softmaxes) and ``"official"`` (section 4, what the authors' TensorFlow code computes, without its bugs).

Why ``"paper-cosine"``: LN(a) . LN(b) is D times a correlation, so with D = 128 the printed Eq. 3 has logits
of about +-128 and Eq. 7 (divided by tau = 0.1) about +-1280: P(k|t) and e are one-hot from the first step.
The paper calls Eq. 3 a cosine; the authors' code divides cosines by a temperature and never takes a raw
D-scaled dot product. ``assign_logits`` and ``aggregate_logits`` switch each softmax on its own.
``"paper-cosine"`` is the default: it is the best of the four readings on validation NDCG@10 on ML-1M and Amazon
Beauty, three seeds each (benchmarks/sine-variants/results.md).

Shapes: B batch, T history length, D dim, M items, L prototypes, K activated concepts (= interests),
H the official MLPs' hidden width. Histories are left-padded with item 0. Positions are counted from the
right: the most recent item has position 0, so left padding never moves an item's position embedding and
adding padding changes no output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sinerec.errors import ConfigError
from sinerec.losses import covariance_regularizer, interest_diversity
from sinerec.models.base import ModelOutput, SequentialRecommender
from sinerec.models.ops import init_item_table, masked_softmax, tanh, tanh_scores

__all__ = ["SINE", "SINEConfig"]


@dataclass
class SINEConfig:
    """Settings of :class:`SINE`; the defaults are the paper's MovieLens settings."""

    variant: str = "paper-cosine"
    """``"paper-cosine"`` (the default: ``"paper"`` with ``assign_logits`` and ``aggregate_logits`` both
    ``"cosine"``, as the authors' code computes its softmaxes), ``"paper"`` (the equations as printed, with
    ``assign_logits`` / ``aggregate_logits`` to choose each softmax's reading) or ``"official"`` (what the
    authors' TF code computes)."""
    dim: int = 128
    """D, the size of item embeddings, prototypes and interests."""
    num_concepts: int = 50
    """L, the number of concept prototypes (the concept pool)."""
    num_interests: int = 4
    """K, the number of concepts activated per user (= interest vectors); at most L."""
    tau: float = 0.1
    """Temperature of the aggregation softmax, Eq. 7 (paper variant; the official code has none)."""
    cov_weight: float = 0.5
    """lambda of Eq. 11: weight of the covariance regulariser L_c (Eq. 10) in ``regularization()``.
    The official code has no L_c: set 0 to reproduce it."""
    cov_centering: str = "row"
    """How C_bar of Eq. 10 is read: ``"row"`` (each prototype's own mean) or ``"column"`` (each
    dimension's mean over the prototypes)."""
    share_w3: bool = False
    """Paper variant: whether Eq. 6's attention reuses W3 of the intention assignment (the paper writes
    W3 in both places) instead of its own matrix W5."""
    assign_scale: float = 1.0
    """Paper variant: factor on the Eq. 3 logits LN1(X_t W3) . LN2(C^u_k). 1.0 is the paper as printed
    (logits about D x correlation, std ~ sqrt(D) at initialisation, so P(k|t) starts nearly one-hot);
    1/D turns them into a correlation in [-1, 1]; 1/(0.07 D) copies the official cosine temperature."""
    assign_logits: str = "dot"
    """Paper variants: Eq. 3's logits, ``"dot"`` (LN1(X_t W3) . LN2(C^u_k) x ``assign_scale``, as printed)
    or ``"cosine"`` (cos(LN1(X_t W3), LN2(C^u_k)) / ``assign_temperature``, the authors' computation)."""
    aggregate_logits: str = "dot"
    """Paper variants: Eq. 7's logits before / tau, ``"dot"`` (C_apt . phi_k x ``aggregate_scale``, as
    printed) or ``"cosine"`` (cos(C_apt, phi_k))."""
    aggregate_scale: float = 1.0
    """Paper variant, ``aggregate_logits = "dot"``: factor on Eq. 7's C_apt . phi_k before / tau (1.0 as
    printed; 1/D turns the dot product of the two layer-normed vectors into about a correlation)."""
    assign_temperature: float = 0.07
    """Temperature of the cosine intention assignment softmax_k(cos / 0.07): the official variant's, and the
    paper variants' with ``assign_logits = "cosine"``."""
    official_hidden: int = 512
    """Official variant: H, the hidden width of its three tanh attention MLPs."""
    diversity_weight: float = 0.0
    """alpha of the official code's interest-diversity regulariser, added by ``auxiliary_loss``
    (0 = off, the official default)."""
    dropout: float = 0.0
    """Dropout on the history's item embeddings X while training (0 = none, as in the paper)."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"sine.{name}: {why}, got {getattr(self, name)!r}")

        if self.variant not in ("paper", "paper-cosine", "official"):
            raise bad("variant", "expected 'paper', 'paper-cosine' or 'official'")
        for name in ("assign_logits", "aggregate_logits"):
            if getattr(self, name) not in ("dot", "cosine"):
                raise bad(name, "expected 'dot' or 'cosine'")
        if self.cov_centering not in ("row", "column"):
            raise bad("cov_centering", "expected 'row' or 'column'")
        for name in ("dim", "num_concepts", "num_interests", "official_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, "must be an integer >= 1")
        if self.num_interests > self.num_concepts:
            raise bad("num_interests", f"must be <= num_concepts ({self.num_concepts})")
        for name in ("tau", "assign_scale", "aggregate_scale", "assign_temperature"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be > 0")
        for name in ("cov_weight", "diversity_weight"):
            if not getattr(self, name) >= 0:
                raise bad(name, "must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must be in [0, 1)")
        if not isinstance(self.share_w3, bool):
            raise bad("share_w3", "must be true or false")

    @property
    def cosine_assignment(self) -> bool:
        """Whether Eq. 3 is computed as a cosine / ``assign_temperature`` (paper variants)."""
        return self.variant == "paper-cosine" or self.assign_logits == "cosine"

    @property
    def cosine_aggregation(self) -> bool:
        """Whether Eq. 7 is computed as a cosine / tau (paper variants)."""
        return self.variant == "paper-cosine" or self.aggregate_logits == "cosine"


# ---------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------


class SINE(SequentialRecommender):
    """Sparse-Interest Network: ``forward`` gives the user vector v (B, D) and the interests phi (B, K, D).

    The item table H is shared by the input (the history's embeddings X) and the output
    (``item_embeddings``). Retrieval scores items with the single vector v (``multi_vector_retrieval``
    is False).

    Training loss: ``likelihood(out.user, model.item_embeddings(), target) + model.auxiliary_loss(out)``,
    the latter being the prototype covariance term (Eq. 10, weight ``cov_weight``) plus the official code's
    interest-diversity term (weight ``diversity_weight``, 0 by default).
    """

    #: bf16 autocast pays on CPUs with hardware bf16 and keeps validation accuracy (runtime.resolve_precision)
    cpu_bf16 = True

    multi_vector_retrieval = False

    def __init__(self, num_items: int, max_len: int, config: SINEConfig) -> None:
        super().__init__(num_items)
        if num_items < 1 or max_len < 1:
            raise ConfigError(f"sine: num_items and max_len must be >= 1, got {num_items!r}, {max_len!r}")
        self.config = config
        self.max_len = max_len
        dim, num_concepts, num_interests = config.dim, config.num_concepts, config.num_interests

        self.item_embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)  # H, input and output
        self.position_embedding = nn.Parameter(torch.empty(max_len, dim))  # row p: the p-th most recent
        self.prototypes = nn.Parameter(torch.empty(num_concepts, dim))  # C in the paper (L, D)
        self.dropout = nn.Dropout(config.dropout)

        if config.variant != "official":
            # Eq. 1: a = softmax_t(tanh(X W1) w2)
            self.concept_key = nn.Linear(dim, dim, bias=False)  # W1
            self.concept_query = nn.Linear(dim, 1, bias=False)  # w2
            # Eq. 3: P(k|t) = softmax_k(LN1(X_t W3) . LN2(C^u_k))
            self.assignment_proj = nn.Linear(dim, dim, bias=False)  # W3
            self.item_norm = nn.LayerNorm(dim)  # LN1
            self.concept_norm = nn.LayerNorm(dim)  # LN2
            # Eq. 4: P(t|k) = softmax_t(tanh((X + P_pos) W_k1) w_k2); the K matrices W_k1 stacked, D -> K D
            self.attention_keys = nn.Linear(dim, num_interests * dim, bias=False)  # [W_11 .. W_K1]
            self.attention_queries = nn.Parameter(torch.empty(num_interests, dim))  # [w_12 .. w_K2]
            # Eq. 5
            self.interest_norm = nn.LayerNorm(dim)  # LN3
            # Eq. 6: C_apt = LN4(softmax_t(tanh(X~ W5) w6)^T X~), W5 = W3 when share_w3
            self.intention_key = None if config.share_w3 else nn.Linear(dim, dim, bias=False)  # W5
            self.intention_query = nn.Linear(dim, 1, bias=False)  # w6
            self.intention_norm = nn.LayerNorm(dim)  # LN4
        else:
            hidden = config.official_hidden
            # Three scorers D -> H -> tanh -> (1 | K | 1), with biases, on inputs with positions added.
            self.concept_hidden, self.concept_out = nn.Linear(dim, hidden), nn.Linear(hidden, 1)
            self.attention_hidden = nn.Linear(dim, hidden)
            self.attention_out = nn.Linear(hidden, num_interests)
            self.intention_hidden, self.intention_out = nn.Linear(dim, hidden), nn.Linear(hidden, 1)
            self.aggregation_query = nn.Linear(2 * dim, dim)  # q = W [mean_k phi_k ; C_apt] + b

        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Items and positions N(0, 0.02), padding row 0; prototypes N(0, 1/D) (rows of norm about 1);
        the K queries w_k2 like a Linear(D, 1)'s weight; Linear and LayerNorm keep PyTorch's defaults."""
        init_item_table(self.item_embedding, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.02)
        nn.init.normal_(self.prototypes, std=self.config.dim**-0.5)
        if self.config.variant != "official":
            bound = 1.0 / math.sqrt(self.config.dim)
            nn.init.uniform_(self.attention_queries, -bound, bound)

    def item_embeddings(self) -> Tensor:
        """(M + 1, D) the item table H, shared with the input; row 0 is padding (zero, never trained)."""
        return self.item_embedding.weight

    def regularization(self) -> Tensor:
        """``cov_weight * L_c(C)``: Eq. 10's covariance regulariser on the prototypes, weighted (Eq. 11).
        The batch-independent part of :meth:`auxiliary_loss` (which already includes it)."""
        if self.config.cov_weight == 0:
            return self.prototypes.new_zeros(())
        return self.config.cov_weight * covariance_regularizer(self.prototypes, self.config.cov_centering)

    def auxiliary_loss(self, out: ModelOutput) -> Tensor:
        """Everything the training loss adds to the likelihood for the batch whose output is ``out``:
        ``cov_weight * L_c(C) + diversity_weight * interest_diversity(out.interests)``.

        The first term is :meth:`regularization` (Eq. 10-11); the second, the official code's regulariser,
        depends on the batch's interests, hence the argument. A zero weight skips its term entirely.
        """
        total = self.regularization()
        if self.config.diversity_weight != 0:
            if out.interests is None:
                raise ValueError("auxiliary_loss needs the interests of a SINE forward output")
            total = total + self.config.diversity_weight * interest_diversity(out.interests)
        return total

    def forward(self, history: Tensor, target: Tensor | None = None) -> ModelOutput:
        """history (B, T) left-padded ids, T <= max_len -> ModelOutput(user v, interests phi, extras).

        ``target`` is ignored: SINE predicts the next intention without it. ``extras``:
        ``concept_ids`` (B, K) the activated prototypes, best first; ``gates`` (B, K) their sigmoid gates;
        ``concept_scores`` s (B, L); ``intention`` P(k|t) (B, T, K), zero at padding; ``attention``
        (B, K, T) P(t|k) (paper) or A (official), zero at padding; ``aggregation`` e (B, K).
        A fully padded row gives finite (meaningless) outputs.
        """
        length = history.shape[1]
        if length > self.max_len:
            raise ValueError(f"history length {length} exceeds max_len {self.max_len}")
        mask = history != 0  # (B, T) True at real items
        items = self.dropout(self.item_embedding(history))  # (B, T, D)  X
        positions = self.position_embedding[:length].flip(0)  # (T, D); the last column gets position 0
        if self.config.variant != "official":
            return self._forward_paper(items, positions, mask)
        return self._forward_official(items, positions, mask)

    # -----------------------------------------------------------------------------------------------------
    # variant = "paper": section 2 of the spec
    # -----------------------------------------------------------------------------------------------------

    def _forward_paper(self, items: Tensor, positions: Tensor, mask: Tensor) -> ModelOutput:
        num_interests = self.config.num_interests

        # --- 1. Concept activation (Eqs. 1-2): a = softmax_t(tanh(X W1) w2), z = a^T X, s = C z,
        # idx = top-K(s), C^u = C[idx] * sigmoid(s[idx]) ---
        pool_logits = tanh_scores(items, self.concept_key.weight, None, self.concept_query.weight)  # (B, T, 1)
        pool_weights = masked_softmax(pool_logits.squeeze(-1), mask, dim=-1)  # (B, T)  a
        intention_z = (pool_weights.unsqueeze(1) @ items).squeeze(1)  # (B, D)  z = a^T X
        concept_scores = intention_z @ self.prototypes.T  # (B, L)  s = C z
        top_scores, concept_ids = concept_scores.topk(num_interests, dim=-1)  # (B, K), best first
        gates = torch.sigmoid(top_scores)  # (B, K); the gradient's only way back to z (and to C via s)
        concepts = F.embedding(concept_ids, self.prototypes) * gates.unsqueeze(-1)  # (B, K, D)  C^u

        # --- 2. Intention assignment (Eq. 3): P(k|t) = softmax_k(LN1(X_t W3) . LN2(C^u_k)) ---
        item_side = self.item_norm(self.assignment_proj(items))  # (B, T, D)
        concept_side = self.concept_norm(concepts)  # (B, K, D)
        if self.config.cosine_assignment:  # cos / 0.07, as the authors compute it
            item_side, concept_side = F.normalize(item_side, dim=-1), F.normalize(concept_side, dim=-1)
            assign_logits = item_side @ concept_side.transpose(1, 2) / self.config.assign_temperature  # (B, T, K)
        else:  # as printed: about D x a correlation
            assign_logits = item_side @ concept_side.transpose(1, 2) * self.config.assign_scale  # (B, T, K)
        intention = torch.softmax(assign_logits, dim=-1) * mask.unsqueeze(-1)  # (B, T, K)  P(k|t)

        # --- 3. Attention weighting (Eq. 4): P(t|k) = softmax_t(tanh((X + P_pos) W_k1) w_k2), all K heads ---
        head_keys, head_queries = self.attention_keys.weight, self.attention_queries  # (K D, D), (K, D)
        attention_logits = tanh_scores(items + positions, head_keys, None, head_queries, heads=True)  # (B, T, K)
        attention = masked_softmax(attention_logits.transpose(1, 2), mask.unsqueeze(1), dim=-1)  # (B, K, T)

        # --- 4. Interest embeddings (Eq. 5): phi_k = LN3(sum_t P(k|t) P(t|k) X_t) ---
        interest_weights = intention.transpose(1, 2) * attention  # (B, K, T)
        interests = self.interest_norm(interest_weights @ items)  # (B, K, D)  phi

        # --- 5. Interest aggregation (Eqs. 6-8) ---
        # Eq. 6 on the intention sequence X~ = P C^u (B, T, D) without building it: X~ W5 = P (C^u W5), a
        # (B, K, D) product instead of a (B, T, D) one, and a^T X~ = (a^T P) C^u.
        intention_key = self.assignment_proj if self.intention_key is None else self.intention_key  # W5
        apt_hidden = tanh(intention @ intention_key(concepts))  # (B, T, D)  tanh(X~ W5)
        apt_weights = masked_softmax(self.intention_query(apt_hidden).squeeze(-1), mask, dim=-1)  # (B, T)
        apt_concept_weights = apt_weights.unsqueeze(1) @ intention  # (B, 1, K)  a^T P
        next_intention = self.intention_norm((apt_concept_weights @ concepts).squeeze(1))  # (B, D)  C_apt
        # Eq. 7: e_k = softmax_k(C_apt . phi_k / tau), or cos(C_apt, phi_k) / tau
        if self.config.cosine_aggregation:
            affinity = (F.normalize(interests, dim=-1) @ F.normalize(next_intention, dim=-1).unsqueeze(-1))
        else:
            affinity = (interests @ next_intention.unsqueeze(-1)) * self.config.aggregate_scale
        aggregation = torch.softmax(affinity.squeeze(-1) / self.config.tau, dim=-1)  # (B, K)  e
        # Eq. 8: v = sum_k e_k phi_k
        user = (aggregation.unsqueeze(1) @ interests).squeeze(1)  # (B, D)

        extras = {
            "concept_ids": concept_ids,
            "gates": gates,
            "concept_scores": concept_scores,
            "intention": intention,
            "attention": attention,
            "aggregation": aggregation,
        }
        return ModelOutput(user=user, interests=interests, extras=extras)

    # -----------------------------------------------------------------------------------------------------
    # variant = "official": section 4 of the spec (the authors' TF code, without its bugs)
    # -----------------------------------------------------------------------------------------------------

    def _mlp_scores(self, x: Tensor, hidden: nn.Linear, out: nn.Linear) -> Tensor:
        """out(tanh(hidden(x))): the official code's D -> H -> tanh -> J attention MLP, (..., J)."""
        return tanh_scores(x, hidden.weight, hidden.bias, out.weight) + out.bias

    def _forward_official(self, items: Tensor, positions: Tensor, mask: Tensor) -> ModelOutput:
        num_interests = self.config.num_interests
        items_at = items + positions  # (B, T, D) the scorer input of concept activation and attention

        # --- 1. Concept activation: a = softmax_t(MLP(X + P_pos)), z = a^T X, s = C z, top K, gates ---
        pool_logits = self._mlp_scores(items_at, self.concept_hidden, self.concept_out).squeeze(-1)  # (B, T)
        pool_weights = masked_softmax(pool_logits, mask, dim=-1)  # (B, T)  a
        intention_z = (pool_weights.unsqueeze(1) @ items).squeeze(1)  # (B, D)  z
        concept_scores = intention_z @ self.prototypes.T  # (B, L)  s
        top_scores, concept_ids = concept_scores.topk(num_interests, dim=-1)  # (B, K)
        gates = torch.sigmoid(top_scores)  # (B, K)
        selected = F.embedding(concept_ids, self.prototypes)  # (B, K, D)  C[idx], ungated
        concepts = selected * gates.unsqueeze(-1)  # (B, K, D)  C^u

        # --- 2. Intention assignment: P(k|t) = softmax_k(cos(X_t, C[idx_k]) / 0.07), no W3, no LN ---
        cosine = F.normalize(items, dim=-1) @ F.normalize(selected, dim=-1).transpose(1, 2)  # (B, T, K)
        intention = torch.softmax(cosine / self.config.assign_temperature, dim=-1)  # (B, T, K)  P(k|t)
        intention = intention * mask.unsqueeze(-1)  # 0 at padding

        # --- 3-4. Attention and interests: A_k = softmax_t(P(k|t) * MLP_k(X + P_pos)), phi_k = A_k X ---
        attention_logits = self._mlp_scores(items_at, self.attention_hidden, self.attention_out)  # (B, T, K)
        attention_logits = (attention_logits * intention).transpose(1, 2)  # (B, K, T)
        attention = masked_softmax(attention_logits, mask.unsqueeze(1), dim=-1)  # (B, K, T)  A
        interests = attention @ items  # (B, K, D)  phi, no LN3

        # --- 5. Aggregation: X^ = P C^u + X; C_apt = attention pooling of X^; e = softmax_k(phi_k . q) ---
        intention_seq = intention @ concepts + items  # (B, T, D)  X^, with the residual
        apt_logits = self._mlp_scores(intention_seq + positions, self.intention_hidden, self.intention_out)
        apt_weights = masked_softmax(apt_logits.squeeze(-1), mask, dim=-1)  # (B, T)
        next_intention = (apt_weights.unsqueeze(1) @ intention_seq).squeeze(1)  # (B, D)  C_apt, no LN4
        query = self.aggregation_query(torch.cat([interests.mean(dim=1), next_intention], dim=-1))  # q
        affinity = (interests @ query.unsqueeze(-1)).squeeze(-1)  # (B, K)
        aggregation = torch.softmax(affinity, dim=-1)  # (B, K)  e, no tau
        user = (aggregation.unsqueeze(1) @ interests).squeeze(1)  # (B, D)  v

        extras = {
            "concept_ids": concept_ids,
            "gates": gates,
            "concept_scores": concept_scores,
            "intention": intention,
            "attention": attention,
            "aggregation": aggregation,
        }
        return ModelOutput(user=user, interests=interests, extras=extras)
