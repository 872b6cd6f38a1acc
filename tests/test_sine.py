"""Tests of the SINE model: shapes, padding inertness, top-K and gate, exactness against a naive per-user
implementation of the equations, determinism. Odd, distinct sizes so that a transposed dimension fails."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sinerec.errors import ConfigError
from sinerec.losses import covariance_regularizer, full_softmax_loss, interest_diversity
from sinerec.models import build_model
from sinerec.models.sine import SINE, SINEConfig

B, T, D, M, L, K = 3, 7, 13, 37, 11, 5
VARIANTS = ("paper", "paper-cosine", "official")


def _config(variant: str, **overrides: Any) -> SINEConfig:
    settings: dict[str, Any] = {"dim": D, "num_concepts": L, "num_interests": K, "official_hidden": 17}
    settings.update(overrides)
    return SINEConfig(variant=variant, **settings)


def _model(variant: str, max_len: int = T, seed: int = 0, **overrides: Any) -> SINE:
    torch.manual_seed(seed)
    return SINE(M, max_len, _config(variant, **overrides)).eval()


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: a second intra-op thread only adds synchronisation, which costs seconds
    when the two cores are shared with other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Row 0: a full history; row 1: 3 items after left padding; row 2: a single item.
HISTORY = torch.tensor([[5, 9, 1, 37, 12, 12, 30], [0, 0, 0, 0, 4, 22, 8], [0, 0, 0, 0, 0, 0, 17]])


# --- configuration ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"num_interests": 12}, "num_interests"),
        ({"variant": "tf"}, "variant"),
        ({"assign_logits": "cos"}, "assign_logits"),
        ({"aggregate_logits": "Dot"}, "aggregate_logits"),
        ({"aggregate_scale": 0.0}, "aggregate_scale"),
        ({"cov_centering": "both"}, "cov_centering"),
        ({"tau": 0.0}, "tau"),
        ({"dim": 0}, "dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"cov_weight": -0.1}, "cov_weight"),
    ],
)
def test_config_rejects_bad_values_naming_field_and_value(overrides: dict[str, Any], field: str) -> None:
    settings: dict[str, Any] = {"variant": "paper", **overrides}
    with pytest.raises(ConfigError, match=field) as info:
        _config(**settings)
    assert repr(next(iter(overrides.values()))) in str(info.value)


def test_registry_builds_sine() -> None:
    model = build_model("sine", M, T, _config("paper"))
    assert isinstance(model, SINE) and not model.multi_vector_retrieval


# --- shapes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes(variant: str) -> None:
    out = _model(variant)(HISTORY)
    assert out.user.shape == (B, D)
    assert out.interests is not None and out.interests.shape == (B, K, D)
    assert out.extras is not None
    expected = {
        "concept_ids": (B, K),
        "gates": (B, K),
        "concept_scores": (B, L),
        "intention": (B, T, K),
        "attention": (B, K, T),
        "aggregation": (B, K),
    }
    assert {name: tuple(value.shape) for name, value in out.extras.items()} == expected
    assert out.extras["concept_ids"].dtype == torch.long
    assert _model(variant).item_embeddings().shape == (M + 1, D)


def test_history_longer_than_max_len_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_len"):
        _model("paper", max_len=T - 1)(HISTORY)


# --- padding ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_left_padding_changes_no_output(variant: str) -> None:
    """Positions count from the right (most recent item = position 0): 4 more zeros on the left change
    nothing, and the padded positions get exactly zero weight."""
    extra = 4
    model = _model(variant, max_len=T + extra)
    padded = torch.cat([torch.zeros(B, extra, dtype=torch.long), HISTORY], dim=1)  # (B, T + 4)
    short, long = model(HISTORY), model(padded)
    assert short.extras is not None and long.extras is not None
    assert short.interests is not None and long.interests is not None
    assert torch.allclose(short.user, long.user, atol=1e-6)
    assert torch.allclose(short.interests, long.interests, atol=1e-6)
    for name in ("concept_ids", "gates", "concept_scores", "aggregation"):
        assert torch.allclose(short.extras[name].float(), long.extras[name].float(), atol=1e-6), name
    assert torch.allclose(short.extras["intention"], long.extras["intention"][:, extra:], atol=1e-6)
    assert torch.allclose(short.extras["attention"], long.extras["attention"][..., extra:], atol=1e-6)
    assert torch.all(long.extras["attention"][..., :extra] == 0)
    assert torch.all(long.extras["intention"][:, :extra] == 0)
    # A model built with max_len = T and the same weights (position rows 0..T-1) gives the same output too.
    state = model.state_dict()
    state["position_embedding"] = state["position_embedding"][:T]
    small = SINE(M, T, model.config).eval()
    small.load_state_dict(state)
    assert torch.allclose(small(HISTORY).user, long.user, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_gets_exactly_zero_weight(variant: str) -> None:
    out = _model(variant)(HISTORY)
    assert out.extras is not None
    padding = HISTORY == 0  # (B, T)
    assert torch.all(out.extras["attention"].masked_select(padding.unsqueeze(1)) == 0)
    assert torch.all(out.extras["intention"].masked_select(padding.unsqueeze(-1)) == 0)
    real_rows = out.extras["attention"].sum(-1)  # (B, K): each head's weights sum to 1 over real items
    assert torch.allclose(real_rows, torch.ones(B, K), atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fully_padded_rows_are_finite_with_finite_gradients(variant: str) -> None:
    model = _model(variant).train()
    history = HISTORY.clone()
    history[1] = 0
    out = model(history)
    assert out.interests is not None and out.extras is not None
    assert torch.isfinite(out.user).all() and torch.isfinite(out.interests).all()
    assert all(torch.isfinite(value.float()).all() for value in out.extras.values())
    full_softmax_loss(out.user, model.item_embeddings(), torch.tensor([3, 5, 7])).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --- concept activation: top-K and the sigmoid gate -------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_top_k_selects_the_k_largest_concept_scores(variant: str) -> None:
    out = _model(variant)(HISTORY)
    assert out.extras is not None
    scores, ids = out.extras["concept_scores"], out.extras["concept_ids"]
    brute_force = torch.argsort(scores, dim=1, descending=True)[:, :K]  # no ties with random weights
    assert torch.equal(ids, brute_force)
    assert torch.allclose(out.extras["gates"], torch.sigmoid(scores.gather(1, brute_force)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_sigmoid_gate_carries_gradient_to_prototypes_and_concept_activation(variant: str) -> None:
    """top-K is not differentiable: the gate sigmoid(s_idx) is the only route from v back to z (so to the
    concept-activation weights) and, with C[idx], to the selected prototype rows; the others get none.
    (Rows 0-1 only: a one-item history has K equal phi_k, so its v does not depend on its gates.)"""
    model = _model(variant)
    out = model(HISTORY[:2])
    assert out.extras is not None
    gates = out.extras["gates"]
    gates.retain_grad()
    out.user.sum().backward()
    assert gates.grad is not None and gates.grad.abs().min() > 0
    concept_weight = model.concept_key.weight if variant != "official" else model.concept_hidden.weight
    assert concept_weight.grad is not None and concept_weight.grad.abs().sum() > 0
    assert model.prototypes.grad is not None
    selected = torch.zeros(L, dtype=torch.bool)
    selected[out.extras["concept_ids"].flatten()] = True
    row_grad = model.prototypes.grad.abs().sum(dim=1)  # (L,)
    assert torch.all(row_grad[selected] > 0) and torch.all(row_grad[~selected] == 0)


# --- exactness against a naive per-user implementation ----------------------------------------------------


def _reference_paper(model: SINE, items: list[int]) -> torch.Tensor:
    """Eqs. 1-8 for one user, on its real items only, with plain loops over k and torch.tanh."""
    c = model.config
    x = model.item_embedding.weight[torch.tensor(items)]  # (n, D)
    n = len(items)
    pos = model.position_embedding[torch.arange(n - 1, -1, -1)]  # (n, D): the last item has position 0
    ln = lambda module, v: F.layer_norm(v, (c.dim,), module.weight, module.bias)  # noqa: E731
    a = torch.softmax(torch.tanh(x @ model.concept_key.weight.T) @ model.concept_query.weight[0], 0)  # Eq. 1
    z = a @ x
    s = model.prototypes @ z  # Eq. 2
    idx = torch.argsort(s, descending=True)[: c.num_interests]
    cu = model.prototypes[idx] * torch.sigmoid(s[idx]).unsqueeze(1)  # (K, D)
    item_side = ln(model.item_norm, x @ model.assignment_proj.weight.T)
    concept_side = ln(model.concept_norm, cu)
    if c.variant == "paper-cosine" or c.assign_logits == "cosine":  # cos / 0.07, one pair at a time
        logits = torch.stack([torch.stack([F.cosine_similarity(item_side[t], concept_side[k], dim=0)
                                           for k in range(c.num_interests)]) for t in range(n)])
        p = torch.softmax(logits / c.assign_temperature, dim=1)  # (n, K) Eq. 3
    else:
        p = torch.softmax(item_side @ concept_side.T * c.assign_scale, dim=1)  # (n, K) Eq. 3
    interests = []
    for k in range(c.num_interests):  # Eq. 4-5
        w_k1 = model.attention_keys.weight[k * c.dim : (k + 1) * c.dim]  # (D, D) as (out, in)
        p_tk = torch.softmax(torch.tanh((x + pos) @ w_k1.T) @ model.attention_queries[k], 0)  # (n,)
        interests.append(ln(model.interest_norm, (p[:, k] * p_tk) @ x))
    phi = torch.stack(interests)  # (K, D)
    x_tilde = p @ cu  # (n, D) Eq. 6
    w5 = model.assignment_proj.weight if model.intention_key is None else model.intention_key.weight
    a_apt = torch.softmax(torch.tanh(x_tilde @ w5.T) @ model.intention_query.weight[0], 0)
    c_apt = ln(model.intention_norm, a_apt @ x_tilde)
    if c.variant == "paper-cosine" or c.aggregate_logits == "cosine":
        affinity = torch.stack([F.cosine_similarity(phi[k], c_apt, dim=0) for k in range(c.num_interests)])
    else:
        affinity = phi @ c_apt * c.aggregate_scale
    e = torch.softmax(affinity / c.tau, 0)  # Eq. 7
    return e @ phi  # Eq. 8


def _reference_official(model: SINE, items: list[int]) -> torch.Tensor:
    """Section 4 of the spec for one user, real items only."""
    c = model.config
    x = model.item_embedding.weight[torch.tensor(items)]
    n = len(items)
    pos = model.position_embedding[torch.arange(n - 1, -1, -1)]
    mlp = lambda hidden, out, v: out(torch.tanh(hidden(v)))  # noqa: E731
    a = torch.softmax(mlp(model.concept_hidden, model.concept_out, x + pos)[:, 0], 0)
    s = model.prototypes @ (a @ x)
    idx = torch.argsort(s, descending=True)[: c.num_interests]
    cu = model.prototypes[idx] * torch.sigmoid(s[idx]).unsqueeze(1)
    cos = torch.stack([F.cosine_similarity(x, model.prototypes[i].unsqueeze(0), dim=1) for i in idx], 1)
    p = torch.softmax(cos / c.assign_temperature, dim=1)  # (n, K)
    logits = mlp(model.attention_hidden, model.attention_out, x + pos)  # (n, K)
    phi = torch.stack([torch.softmax(p[:, k] * logits[:, k], 0) @ x for k in range(c.num_interests)])
    x_hat = p @ cu + x
    c_apt = torch.softmax(mlp(model.intention_hidden, model.intention_out, x_hat + pos)[:, 0], 0) @ x_hat
    q = model.aggregation_query(torch.cat([phi.mean(0), c_apt]))
    return torch.softmax(phi @ q, 0) @ phi


@pytest.mark.parametrize(
    ("variant", "overrides"),
    [("paper", {}), ("paper", {"share_w3": True, "assign_scale": 1 / D}), ("paper-cosine", {}),
     ("paper", {"assign_logits": "cosine"}), ("paper", {"aggregate_logits": "cosine"}),
     ("paper", {"aggregate_scale": 1 / D}), ("official", {})],
)
def test_forward_equals_naive_equations(variant: str, overrides: dict[str, Any]) -> None:
    """The batched model (fused heads, X~ W5 computed as P (C^u W5), tanh via sigmoid) = the equations."""
    model = _model(variant, **overrides).double()
    user = model(HISTORY).user
    reference = _reference_official if variant == "official" else _reference_paper
    for row in range(B):
        items = [i for i in HISTORY[row].tolist() if i != 0]
        assert torch.allclose(user[row], reference(model, items), atol=1e-10), row


# --- regularisers, sharing, determinism -------------------------------------------------------------------


def test_regularization_is_weighted_covariance_of_the_prototypes() -> None:
    model = _model("paper", cov_weight=0.3, cov_centering="column")
    expected = 0.3 * covariance_regularizer(model.prototypes, "column")
    assert torch.allclose(model.regularization(), expected)
    assert _model("paper", cov_weight=0.0).regularization().item() == 0.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_auxiliary_loss_adds_weighted_covariance_and_diversity(variant: str) -> None:
    model = _model(variant, cov_weight=0.3, diversity_weight=0.25)
    out = model(HISTORY)
    assert out.interests is not None
    expected = 0.3 * covariance_regularizer(model.prototypes, "row") + 0.25 * interest_diversity(out.interests)
    assert torch.allclose(model.auxiliary_loss(out), expected)
    default = _model(variant)  # cov_weight 0.5, diversity_weight 0: the paper's Eq. 11 term only
    assert torch.allclose(default.auxiliary_loss(out), default.regularization())


def test_item_table_is_shared_and_padding_row_is_zero() -> None:
    model = _model("paper")
    assert model.item_embeddings() is model.item_embedding.weight
    assert torch.equal(model.item_embeddings()[0], torch.zeros(D))


def test_share_w3_removes_the_separate_w5() -> None:
    separate, shared = _model("paper"), _model("paper", share_w3=True)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(separate) - count(shared) == D * D and shared.intention_key is None


@pytest.mark.parametrize("variant", VARIANTS)
def test_seeded_construction_and_forward_are_deterministic(variant: str) -> None:
    first, second = _model(variant, seed=11)(HISTORY), _model(variant, seed=11)(HISTORY)
    assert torch.equal(first.user, second.user)
    assert not torch.equal(first.user, _model(variant, seed=12)(HISTORY).user)


@pytest.mark.parametrize("variant", VARIANTS)
def test_it_learns_a_deterministic_next_item(variant: str) -> None:
    """Two fixed histories, each always followed by its own item: 40 Adam steps (lr 0.03) fit them, so each
    history's top-1 item is its own target (a model that ignored the history would give both the same)."""
    model = _model(variant, seed=1).train()
    history, target = HISTORY[:2], torch.tensor([3, 29])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(40):
        out = model(history)
        loss = full_softmax_loss(out.user, model.item_embeddings(), target) + model.auxiliary_loss(out)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    model.eval()
    with torch.no_grad():
        scores = model.user_vectors(history) @ model.item_embeddings().T
    scores[:, 0] = -torch.inf  # padding
    assert scores.argmax(dim=1).tolist() == target.tolist()


def test_cosine_logits_unsaturate_both_softmaxes_at_the_papers_size() -> None:
    """At D = 128 the printed Eq. 3 and Eq. 7 are one-hot from the start (logits ~ D x a correlation); the
    cosine forms are not. Both measured on the same weights: only the logits' form differs."""
    torch.manual_seed(3)
    history = torch.randint(1, 200, (64, 20))
    peaks = {}
    for variant in ("paper", "paper-cosine"):
        torch.manual_seed(5)
        model = SINE(200, 20, SINEConfig(variant=variant, dim=128, num_concepts=50, num_interests=4)).eval()
        extras = model(history).extras
        peaks[variant] = (extras["intention"].amax(-1).mean().item(), extras["aggregation"].amax(-1).mean().item())
    literal_p, literal_e = peaks["paper"]
    cosine_p, cosine_e = peaks["paper-cosine"]
    assert literal_p > 0.9 and literal_e > 0.95  # P(k|t) and e nearly one-hot (uniform would be 0.25)
    assert cosine_p < 0.7 and cosine_e < 0.5  # spread over the K = 4 interests
