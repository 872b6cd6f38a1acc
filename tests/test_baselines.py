"""The baselines: MostPop, YouTube DNN, GRU4Rec, Caser, SASRec, MIND, ComiRec-SA, ComiRec-DR; and SINE in the
shared suite.

One shared suite for every gradient model of the registry ``sinerec.models.MODELS`` (shapes, padding
inertness, fully padded rows, it learns a synthetic sequential task better than MostPop), exact checks of
MostPop's counts, of the multi-interest training readouts, and of max-over-interests retrieval against
per-interest top-k merged with items deduplicated.

Tiny odd sizes so that a transposed dimension fails loudly: B = 3, T = 7, D = 13, M = 37, K = 3.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sinerec.errors import ConfigError
from sinerec.models import MODELS, build_model, model_class, model_config_class
from sinerec.models.base import ModelOutput, SequentialRecommender
from sinerec.models.mostpop import MostPop, MostPopConfig
from sinerec.retrieval import faiss_available

BATCH, LENGTH, DIM, NUM_ITEMS, NUM_INTERESTS = 3, 7, 13, 37, 3


def gradient_models() -> list[str]:
    """Every model of the registry fitted by gradient descent: the shared suite runs on each."""
    return [name for name in MODELS if model_class(name).trainable]


def multi_vector_models() -> list[str]:
    """The registered models that retrieve with K interest vectors (an item scores its max over them)."""
    return [name for name in MODELS if model_class(name).multi_vector_retrieval]


GRADIENT_MODELS = gradient_models()
MULTI_VECTOR_MODELS = multi_vector_models()


def tiny_config(name: str, **overrides: Any) -> Any:
    """The model's config with D = 13 (K = 3 where it has ``num_interests``) and any overrides."""
    cls = model_config_class(name)
    fields = {field.name for field in dataclasses.fields(cls)}
    settings: dict[str, Any] = {"dim": DIM}
    if "num_interests" in fields:
        settings["num_interests"] = NUM_INTERESTS
    settings.update(overrides)
    return cls(**settings)


def build(name: str, max_len: int = LENGTH, num_items: int = NUM_ITEMS, seed: int = 0, **overrides: Any):
    torch.manual_seed(seed)
    return build_model(name, num_items, max_len, tiny_config(name, **overrides))


def histories() -> torch.Tensor:
    """(3, 7) left-padded: a full row, a row with 4 items, a row with 1 item."""
    return torch.tensor(
        [
            [5, 17, 2, 33, 9, 21, 37],
            [0, 0, 0, 12, 1, 30, 8],
            [0, 0, 0, 0, 0, 0, 26],
        ]
    )


# --- shapes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_output_shapes(name: str) -> None:
    model = build(name)
    out = model(histories())
    assert out.user.shape == (BATCH, DIM)
    assert model.item_embeddings().shape == (NUM_ITEMS + 1, DIM)
    if out.interests is not None:
        assert out.interests.shape == (BATCH, NUM_INTERESTS, DIM)
    if model.multi_vector_retrieval:
        assert out.interests is not None
        assert model.user_vectors(histories()).shape == (BATCH, NUM_INTERESTS, DIM)
    else:
        assert model.user_vectors(histories()).shape == (BATCH, DIM)
    model.train()
    out = model(histories(), torch.tensor([3, 14, 36]))  # training: the target picks / mixes interests
    assert out.user.shape == (BATCH, DIM)


# --- padding -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_left_padding_is_inert(name: str) -> None:
    """The same items with 4 more padding columns give the same vectors (max_len 11 leaves room for them)."""
    model = build(name, max_len=LENGTH + 4).eval()
    short = histories()  # (3, 7)
    padded = F.pad(short, (4, 0))  # (3, 11)
    with torch.no_grad():
        for target in (None, torch.tensor([3, 14, 36])):
            a, b = model(short, target), model(padded, target)
            torch.testing.assert_close(a.user, b.user, rtol=0, atol=1e-5)
            if a.interests is not None:
                assert b.interests is not None
                torch.testing.assert_close(a.interests, b.interests, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_fully_padded_rows_are_finite(name: str) -> None:
    model = build(name)
    empty = torch.zeros(2, LENGTH, dtype=torch.long)
    for training in (False, True):
        out = model.train(training)(empty, torch.tensor([4, 9]))
        assert torch.isfinite(out.user).all()
        assert out.interests is None or torch.isfinite(out.interests).all()
    out.user.sum().backward()  # and the gradients too
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gru4rec_left_padding_does_not_reach_the_state() -> None:
    """With zero input and zero state a GRU still moves (its biases): left padding must be skipped."""
    model = build("gru4rec").eval()
    history = torch.tensor([[0, 0, 0, 0, 7, 3, 11]])
    with torch.no_grad():
        expected = model.gru(model.item_embedding(torch.tensor([[7, 3, 11]])))[1][-1]  # no padding at all
        torch.testing.assert_close(model(history).user, expected, rtol=0, atol=1e-6)


# --- it learns: a seeded short fit beats MostPop on synthetic sequences ------------------------------------

CYCLES = [list(range(start, start + 8)) for start in (1, 9, 17, 25, 33)]  # M = 40 items in 5 cycles of 8
CYCLE_WEIGHTS = [0.4, 0.25, 0.15, 0.1, 0.1]  # skewed, so that MostPop is not trivial
SYNTHETIC_ITEMS = 40


def cyclic_sequences(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Histories (count, T): 1..T consecutive items of one cycle, left-padded; targets (count,): the next.

    A history is shorter than its cycle, so the next item is determined by the last item (order-aware
    models) or by the set of items (order-agnostic ones).
    """
    generator = torch.Generator().manual_seed(seed)
    cycle_ids = torch.multinomial(torch.tensor(CYCLE_WEIGHTS), count, replacement=True, generator=generator)
    starts = torch.randint(0, 8, (count,), generator=generator)
    lengths = torch.randint(1, LENGTH + 1, (count,), generator=generator)
    cycles = torch.tensor(CYCLES)  # (5, 8)
    history = torch.zeros(count, LENGTH, dtype=torch.long)
    targets = torch.zeros(count, dtype=torch.long)
    for row in range(count):
        cycle, start, length = cycles[cycle_ids[row]], int(starts[row]), int(lengths[row])
        steps = (start + torch.arange(length + 1)) % 8
        history[row, LENGTH - length :] = cycle[steps[:-1]]
        targets[row] = cycle[steps[-1]]
    return history, targets


def hit_rate(model: SequentialRecommender, history: torch.Tensor, targets: torch.Tensor, k: int = 5) -> float:
    """Next-item HR@k, full ranking; a multi-vector model scores an item by its max over the K interests."""
    model.eval()
    with torch.no_grad():
        items = model.item_embeddings()  # (M + 1, D)
        query = model.user_vectors(history)  # (B, D) or (B, K, D)
        scores = query @ items.T  # (B, M + 1) or (B, K, M + 1)
        if model.multi_vector_retrieval:
            scores = scores.amax(1)
        scores[:, 0] = -torch.inf
        top = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]  # ties: smaller id first
    return (top == targets.unsqueeze(1)).any(1).float().mean().item()


def fit(model: SequentialRecommender, history: torch.Tensor, targets: torch.Tensor, steps: int) -> None:
    """Full-softmax cross-entropy with Adam, batches of 64 drawn with a fixed seed."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(targets), (64,), generator=generator)
        out = model(history[rows], targets[rows])
        logits = out.user @ model.item_embeddings().T  # (64, M + 1)
        logits[:, 0] = -torch.inf
        loss = F.cross_entropy(logits, targets[rows]) + model.auxiliary_loss(out)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.fixture(scope="module")
def synthetic() -> dict[str, Any]:
    train_history, train_targets = cyclic_sequences(1000, seed=0)
    test_history, test_targets = cyclic_sequences(300, seed=1)
    popularity = MostPop(SYNTHETIC_ITEMS, LENGTH, MostPopConfig())
    popularity.fit_counts(items=torch.cat([train_history[train_history != 0], train_targets]))
    return {
        "train": (train_history, train_targets),
        "test": (test_history, test_targets),
        "mostpop_hr": hit_rate(popularity, test_history, test_targets),
    }


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_short_fit_beats_mostpop(name: str, synthetic: dict[str, Any]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and leaves the other core to the rest
    try:
        model = build(name, num_items=SYNTHETIC_ITEMS)
        fit(model, *synthetic["train"], steps=200)
    finally:
        torch.set_num_threads(threads)
    model_hr, mostpop_hr = hit_rate(model, *synthetic["test"]), synthetic["mostpop_hr"]
    assert 0.15 < mostpop_hr < 0.35  # about 0.4 * 5/8: the top cycle's first five items
    assert model_hr > mostpop_hr + 0.3, f"{name}: HR@5 {model_hr:.3f} vs MostPop {mostpop_hr:.3f}"


# --- MostPop -----------------------------------------------------------------------------------------------


def test_mostpop_scores_are_training_counts() -> None:
    model = MostPop(6, LENGTH, MostPopConfig())
    assert not model.trainable
    model.fit_counts(items=torch.tensor([3, 1, 3, 6, 3, 1, 0, 5]))  # the 0 (padding) is not counted
    scores = model.user_vectors(histories()[:2]) @ model.item_embeddings().T  # (2, 7)
    expected = torch.tensor([0.0, 2.0, 0.0, 3.0, 0.0, 1.0, 1.0])  # ids 0..6
    torch.testing.assert_close(scores, expected.expand(2, -1), rtol=0, atol=0)


def test_mostpop_refit_replaces_counts_and_rejects_bad_ids() -> None:
    model = MostPop(4, LENGTH, MostPopConfig())
    model.fit_counts(items=torch.tensor([1, 1, 2]))
    model.fit_counts(sequences=[torch.tensor([0, 4, 4]), torch.tensor([2])])
    torch.testing.assert_close(model.item_embeddings().squeeze(1), torch.tensor([0.0, 0.0, 1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="5"):
        model.fit_counts(items=torch.tensor([1, 5]))
    with pytest.raises(ValueError):
        model.fit_counts(items=torch.tensor([1]), sequences=[torch.tensor([1])])


# --- multi-interest: training readouts ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["comirec-sa", "comirec-dr"])
def test_comirec_training_picks_the_interest_closest_to_the_target(name: str) -> None:
    model = build(name).eval()  # eval: no randomness; the readout does not depend on the mode
    target = torch.tensor([3, 14, 36])
    with torch.no_grad():
        out = model(histories(), target)
        assert out.interests is not None
        affinity = torch.einsum("bkd,bd->bk", out.interests, model.item_embeddings()[target])  # (B, K)
        expected = out.interests[torch.arange(BATCH), affinity.argmax(1)]  # (B, D)
    torch.testing.assert_close(out.user, expected, rtol=0, atol=0)


def test_mind_label_aware_attention_is_softmax_of_affinity_squared() -> None:
    model = build("mind").eval()  # eval: the fixed routing logits
    target = torch.tensor([3, 14, 36])
    with torch.no_grad():
        out = model(histories(), target)
        assert out.interests is not None
        affinity = torch.einsum("bkd,bd->bk", out.interests, model.item_embeddings()[target])  # (B, K)
        weights = torch.softmax(affinity**2, dim=1)  # p = 2
        expected = torch.einsum("bk,bkd->bd", weights, out.interests)
    torch.testing.assert_close(out.user, expected, rtol=0, atol=1e-6)


def test_mind_evaluation_is_deterministic_and_training_is_random() -> None:
    model = build("mind")
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(histories()).interests, model(histories()).interests, rtol=0, atol=0)
        model.train()
        first, second = model(histories()).interests, model(histories()).interests
    assert first is not None and second is not None and not torch.equal(first, second)



def _mind_gradient(stop: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """d(sum of MIND's interests)/dS from the model, and the same by hand: the routing weights of the first
    iterations computed without gradients, then one differentiable last iteration (the reference code)."""
    from sinerec.models.ops import squash

    model = build("mind", stop_routing_gradient=stop).eval()  # eval: the fixed routing logits
    history = histories()
    model(history).interests.sum().backward()
    from_model = model.bilinear.weight.grad.clone()
    model.zero_grad()
    real = (history != 0).unsqueeze(1).float()  # (B, 1, T)
    behaviours = model.bilinear(model.item_embedding(history))  # (B, T, D)  S c_i
    logits = model.eval_routing_logits[:, model.max_len - LENGTH:].expand(BATCH, -1, -1)  # (B, K, T)
    with torch.no_grad():
        for _ in range(model.config.routing_iterations - 1):
            capsules = squash((torch.softmax(logits, 1) * real) @ behaviours)
            logits = logits + capsules @ behaviours.transpose(1, 2)
    capsules = squash((torch.softmax(logits, 1) * real) @ behaviours)
    F.relu(model.interest_layer(capsules)).sum().backward()
    return from_model, model.bilinear.weight.grad


def test_mind_routing_passes_gradients_through_the_last_iteration_only() -> None:
    from_model, by_hand = _mind_gradient(stop=True)
    torch.testing.assert_close(from_model, by_hand, rtol=1e-6, atol=1e-7)
    # the other reading (gradients through every iteration) is a different gradient, so the test can fail
    through_all, by_hand = _mind_gradient(stop=False)
    assert not torch.allclose(through_all, by_hand, rtol=1e-3, atol=1e-5)


def _comirec_dr_gradient(stop: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """d(sum of ComiRec-DR's capsules)/dW from the model, and the same by hand: the routing weights of the
    first iterations computed without gradients, then one differentiable last iteration (the authors' code)."""
    from sinerec.models.ops import squash

    model = build("comirec-dr", stop_routing_gradient=stop)
    history = histories()
    model(history).interests.sum().backward()
    from_model = model.bilinear.grad.clone()
    model.zero_grad()
    real = (history != 0).unsqueeze(1).float()  # (B, 1, T)
    maps = model.bilinear[model.max_len - LENGTH:]
    predictions = torch.einsum("tkoi,bti->bkto", maps, model.item_embedding(history))  # (B, K, T, D)
    logits = torch.zeros(predictions.shape[:3])
    with torch.no_grad():
        for _ in range(model.config.routing_iterations - 1):
            capsules = squash(torch.einsum("bkt,bktd->bkd", torch.softmax(logits, 1) * real, predictions))
            logits = logits + torch.einsum("bktd,bkd->bkt", predictions, capsules)
    squash(torch.einsum("bkt,bktd->bkd", torch.softmax(logits, 1) * real, predictions)).sum().backward()
    return from_model, model.bilinear.grad


def test_comirec_dr_stop_routing_gradient_passes_gradients_through_the_last_iteration_only() -> None:
    from_model, by_hand = _comirec_dr_gradient(stop=True)
    torch.testing.assert_close(from_model, by_hand, rtol=1e-6, atol=1e-7)
    through_all, by_hand = _comirec_dr_gradient(stop=False)
    assert not torch.allclose(through_all, by_hand, rtol=1e-3, atol=1e-5)
    # the forward pass is the same either way: only the gradient differs
    history = histories()
    stopped, flowing = build("comirec-dr", stop_routing_gradient=True), build("comirec-dr", stop_routing_gradient=False)
    torch.testing.assert_close(stopped(history).interests, flowing(history).interests, rtol=0, atol=0)


def test_comirec_dr_learned_scale_scales_the_capsules_and_learns() -> None:
    plain, scaled = build("comirec-dr"), build("comirec-dr", learned_scale=True)
    assert not hasattr(plain, "log_scale")
    with torch.no_grad():
        scaled.log_scale.fill_(math.log(3.0))
    history = histories()
    # the same weights (same seed) and capsules times exp(a) = 3: a common scale, so retrieval ranks the same
    torch.testing.assert_close(scaled(history).interests, 3 * plain(history).interests)
    target = torch.tensor([4, 11, 26])
    scaled(history, target).user.sum().backward()
    assert scaled.log_scale.grad is not None and scaled.log_scale.grad != 0


# --- multi-interest retrieval: max over interests == per-interest top-k merged, deduplicated ---------------


def merge_topk(scores_per_interest: torch.Tensor, k: int) -> list[list[int]]:
    """Reference, by hand: each interest's k best items (ties to the smaller id), the K * k (score, item)
    pairs sorted by score then id, the first k distinct items. Padding (id 0) is never a candidate.

    scores_per_interest (B, K, N) -> B lists of k item ids.
    """
    result = []
    for user_scores in scores_per_interest.tolist():  # K lists of N scores
        candidates = []
        for interest_scores in user_scores:
            ranked = sorted(range(1, len(interest_scores)), key=lambda i: (-interest_scores[i], i))[:k]
            candidates += [(interest_scores[i], i) for i in ranked]
        candidates.sort(key=lambda pair: (-pair[0], pair[1]))
        merged: list[int] = []
        for _, item in candidates:
            if item not in merged:
                merged.append(item)
        result.append(merged[:k])
    return result


def test_merge_topk_by_hand() -> None:
    """Item 1 is in both interests' top 3: counted once, so item 2 (third best distinct) gets in."""
    inf = float("inf")
    scores = torch.tensor(
        [
            [
                [-inf, 0.9, 0.1, 0.5, 0.3, 0.0],  # top 3: 1 (0.9), 3 (0.5), 4 (0.3)
                [-inf, 0.8, 0.7, 0.2, 0.95, 0.6],  # top 3: 4 (0.95), 1 (0.8), 2 (0.7)
            ]
        ]
    )
    assert merge_topk(scores, 3) == [[4, 1, 2]]
    # ties: items 2, 3 and 5 all score 0.5; the smaller ids win
    tied = torch.tensor([[[-inf, 0.1, 0.5, 0.5, 0.0, 0.5], [-inf, 0.9, 0.0, 0.5, 0.0, 0.5]]])
    assert merge_topk(tied, 3) == [[1, 2, 3]]


def library_multi_topk(interests: torch.Tensor, items: torch.Tensor, k: int,
                       exact_only: bool = False) -> tuple[list, dict[str, list]]:
    """What the library serves for (B, K, D) interests: the evaluator's ``topk_items``, and ``search_multi``
    of every index backend in the table (exact settings; the Faiss ones where Faiss is installed; only the
    exact backends with ``exact_only``: an approximate one promises no tie order at the cut-off)."""
    from sinerec.ranking import topk_items
    from sinerec.retrieval import BACKENDS, IndexSettings, build_index, faiss_available

    ids, _ = topk_items(interests, items, k)
    searched = {}
    for name, spec in BACKENDS.items():
        if (spec.needs_faiss and not faiss_available()) or (exact_only and not spec.exact):
            continue
        for i, overrides in enumerate(spec.exact_settings):
            index = build_index(items, IndexSettings(name, **overrides))
            searched[f"{name}-{i}"] = index.search_multi(interests.numpy(), k)[0].tolist()
    return ids.tolist(), searched


@pytest.mark.parametrize("name", MULTI_VECTOR_MODELS)
def test_library_multi_interest_ranking_equals_merged_per_interest_topk(name: str) -> None:
    model = build(name).eval()
    with torch.no_grad():
        interests = model.user_vectors(histories())  # (B, K, D)
        items = model.item_embeddings()
    scores = interests @ items.T  # (B, K, M + 1)
    for k in (1, 5, 11):
        ranked, searched = library_multi_topk(interests, items, k)
        assert ranked == merge_topk(scores, k)
        assert searched == {backend: merge_topk(scores, k) for backend in searched}


def test_library_multi_interest_ranking_breaks_ties_like_the_merge() -> None:
    """Integer vectors with many equal scores, within one interest and across interests."""
    items = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 0], [1, 1], [0, 1], [2, 0], [0, 0]], dtype=torch.float32)
    interests = torch.tensor([[[1, 0], [0, 1]], [[1, 1], [1, 1]], [[0, 0], [0, 1]]], dtype=torch.float32)
    scores = interests @ items.T
    assert merge_topk(scores, 4) == [[6, 1, 2, 3], [4, 6, 1, 2], [2, 4, 5, 1]]
    for k in (1, 3, 4, 7):
        ranked, searched = library_multi_topk(interests, items, k, exact_only=True)
        assert len(searched) == (2 if faiss_available() else 1)  # torch, and flat with Faiss
        assert ranked == merge_topk(scores, k), k
        assert searched == {backend: merge_topk(scores, k) for backend in searched}, k


# --- configuration -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("youtubednn", "dim", 0),
        ("youtubednn", "hidden_dims", (8, 0)),
        ("gru4rec", "dropout", 1.0),
        ("caser", "window", 0),
        ("sasrec", "num_heads", 2),  # does not divide dim 13
        ("mind", "label_attention_power", 1.5),
        ("comirec-sa", "num_interests", True),
        ("comirec-dr", "stop_routing_gradient", "yes"),
        ("comirec-dr", "learned_scale", 1),
    ],
)
def test_bad_settings_name_field_and_value(name: str, field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"\.{field}: .*{re.escape(repr(value))}"):
        tiny_config(name, **{field: value})


@pytest.mark.parametrize("name", list(MODELS))
def test_defaults_build(name: str) -> None:
    config = model_config_class(name)()
    assert dataclasses.is_dataclass(config)
    model = build_model(name, NUM_ITEMS, 20, config)
    assert model(histories()).user.shape[0] == BATCH


# --- the suite follows the registry ----------------------------------------------------------------------------


@dataclasses.dataclass
class MeanPoolConfig:
    dim: int = 8


class MeanPool(SequentialRecommender):
    """A toy model for the test below: the user vector is the mean of the history's item embeddings."""

    def __init__(self, num_items: int, max_len: int, config: MeanPoolConfig) -> None:
        super().__init__(num_items)
        self.item_embedding = torch.nn.Embedding(num_items + 1, config.dim, padding_idx=0)

    def forward(self, history: torch.Tensor, target: torch.Tensor | None = None) -> ModelOutput:
        real = (history != 0).unsqueeze(-1)  # (B, T, 1)
        total = (self.item_embedding(history) * real).sum(1)  # (B, D)
        return ModelOutput(user=total / real.sum(1).clamp(min=1))

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight


def test_a_registered_model_joins_the_shared_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "toy" not in gradient_models()
    monkeypatch.setitem(MODELS, "toy", (__name__, "MeanPool", "MeanPoolConfig"))
    assert gradient_models()[-1] == "toy" and "toy" not in multi_vector_models()
    # and it runs the suite's shared checks like any registered model
    test_output_shapes("toy")
    test_left_padding_is_inert("toy")
    test_fully_padded_rows_are_finite("toy")
    test_defaults_build("toy")
