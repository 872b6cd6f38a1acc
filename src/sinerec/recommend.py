"""Recommendations for a history of original item ids: the one code path of the CLI, the server and tests.

A :class:`Recommender` wraps a trained run (``sinerec.runs.LoadedRun``) and an item index
(``sinerec.retrieval``). It is built from the offline evaluator's own functions: for each request it maps
the original ids to item indices, builds the (B, T) window of the last T = ``data.max_len`` items with
``left_padded`` (``gather_histories``), runs the model once, takes the query by
``sinerec.ranking.retrieval_query`` (the user vector, or the K interest vectors of multi-vector models) and
searches the index, excluding the items of the whole history as the evaluator's ``exclude_history``. The
default (exact) index is ``sinerec.ranking.topk_items`` itself; Faiss indexes are the declared alternative.

Each item is explained by the interest that scores it highest (``sinerec.ranking.interest_behind``, or the
interest whose search found it with a Faiss index) and, for SINE, that interest's activated concept. SINE's
explanation adds the activated concepts with their gates, the aggregation weights e and, per history item,
P(k|t) (which interest the item expresses) and the attention P(t|k).

Shapes: B requests, T = max_len, K interests, D dim, M items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sinerec import ranking
from sinerec.data.batching import left_padded, user_windows
from sinerec.errors import SinerecError
from sinerec.ids import IdMap, plain_id, show_id
from sinerec.retrieval import IndexSettings, ItemIndex, build_index, recall_at_k, vectors_fingerprint

if TYPE_CHECKING:
    from sinerec.runs import LoadedRun

__all__ = ["Explanation", "HistoryStep", "Recommendation", "RecommendRequest", "RecommendedItem", "Recommender",
           "RequestError", "UnknownItemError", "index_recall", "left_padded"]


class RequestError(SinerecError):
    """A request the recommender cannot answer (empty history, bad k, ...); the message names the problem."""


class UnknownItemError(RequestError):
    """Item ids that are not in the run's catalogue; ``ids`` lists them."""

    def __init__(self, ids: Sequence[Any], where: str = "history") -> None:
        self.ids = list(ids)
        self.where = where
        shown = ", ".join(show_id(i) for i in self.ids[:10]) + (f" and {len(self.ids) - 10} more"
                                                             if len(self.ids) > 10 else "")
        super().__init__(f"{where}: unknown item id{'s' if len(self.ids) > 1 else ''} {shown}")


@dataclass(frozen=True)
class RecommendRequest:
    history: Sequence[Any]  # original item ids, oldest first
    k: int = 10
    exclude: Sequence[Any] = ()  # original item ids never to recommend
    exclude_seen: bool = True  # remove every item of the history, as the offline evaluator does


@dataclass(frozen=True)
class RecommendedItem:
    item_id: Any  # the original id
    score: float  # inner product with the retrieval query (max over interests for multi-vector models)
    title: str | None = None
    categories: tuple[str, ...] = ()
    interest: int | None = None  # 0..K-1, the interest whose vector scores the item highest
    concept: int | None = None  # that interest's activated concept (prototype id), SINE only


@dataclass(frozen=True)
class HistoryStep:
    item_id: Any
    intention: tuple[float, ...]  # (K,) P(k|t): which interest this item expresses
    attention: tuple[float, ...]  # (K,) P(t|k): this item's weight in each interest


@dataclass(frozen=True)
class Explanation:
    """SINE's view of a history: which concepts it activated and how it mixed them."""

    concept_ids: tuple[int, ...]  # (K,) activated prototypes, best first; interest k is built on concept k
    gates: tuple[float, ...]  # (K,) sigmoid gates of the activated concepts
    aggregation: tuple[float, ...]  # (K,) e: the weight of interest k in the user vector
    history: tuple[HistoryStep, ...]  # the items the model saw, oldest first


@dataclass(frozen=True)
class Recommendation:
    items: list[RecommendedItem]
    explanation: Explanation | None
    history_used: int  # items the model saw: the last min(len(history), max_len)
    excluded: int = field(default=0)  # distinct items removed from the ranking


class Recommender:
    """Answers recommendation requests for one trained run; build once, call from any thread.

    Args:
        run: a ``LoadedRun``; its model is put in eval mode (dropout off), so that a freshly trained
            model serves the same answer to the same request.
        index: an index over the model's item vectors (checked by fingerprint); default: exact.
        max_history: the longest history accepted (None: any); the model still sees the last max_len.
    """

    def __init__(self, run: LoadedRun, index: ItemIndex | None = None, max_history: int | None = None) -> None:
        self.run = run
        self.model = run.model.eval()  # a model serves in eval mode (no dropout), even one fresh from training
        self.data = run.data
        self.max_len: int = run.config.data.max_len
        self.max_history = max_history
        self.item_vectors = self.model.item_embeddings().detach().float().contiguous()  # (M + 1, D)
        self.fingerprint = vectors_fingerprint(self.item_vectors)
        self.index = index if index is not None else build_index(self.item_vectors, IndexSettings("exact"))
        if self.index.fingerprint != self.fingerprint:
            raise SinerecError(f"the index was built from other item vectors (fingerprint "
                               f"{self.index.fingerprint}, the model's is {self.fingerprint})")
        self.item_map = IdMap(self.data.item_ids, first=1)  # "42" finds item 42 (see sinerec.ids)
        self.user_map = IdMap(self.data.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.data.item_ids) - 1

    # --- ids ----------------------------------------------------------------------------------------------

    def item_indices(self, item_ids: Sequence[Any], where: str = "history") -> np.ndarray:
        """Original ids -> item indices (N,) int64; raises UnknownItemError naming every unknown id."""
        found = [self.item_map.index(i) for i in item_ids]
        unknown = [i for i, idx in zip(item_ids, found, strict=True) if idx is None]
        if unknown:
            raise UnknownItemError(list(dict.fromkeys(unknown)), where)
        return np.asarray(found, dtype=np.int64)

    def user_history(self, user_id: Any) -> list[Any]:
        """The whole sequence of a known user, as original item ids (oldest first)."""
        u = self.user_map.index(user_id)
        if u is None:
            raise RequestError(f"user: unknown user id {show_id(user_id)}")
        return [plain_id(self.data.item_ids[i]) for i in self.data.sequence(u)]

    def _item(self, idx: int, score: float, interest: int | None, concept: int | None) -> RecommendedItem:
        data = self.data
        return RecommendedItem(item_id=plain_id(data.item_ids[idx]), score=score,
                               title=data.item_titles[idx] if data.item_titles else None,
                               categories=tuple(data.item_categories[idx]) if data.item_categories else (),
                               interest=interest, concept=concept)

    # --- requests -----------------------------------------------------------------------------------------

    def _validate(self, request: RecommendRequest, where: str) -> None:
        k = request.k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise RequestError(f"{where}k: must be an integer >= 1, got {k!r}")
        if len(request.history) == 0:
            raise RequestError(f"{where}history: is empty; give at least one item id")
        if self.max_history is not None and len(request.history) > self.max_history:
            raise RequestError(f"{where}history: at most {self.max_history} items are accepted, "
                               f"got {len(request.history)}")

    def recommend(self, history: Sequence[Any], k: int = 10, exclude: Sequence[Any] = (),
                  exclude_seen: bool = True) -> Recommendation:
        """The top k for one history of original ids (see :meth:`recommend_batch`)."""
        return self.recommend_batch([RecommendRequest(history, k, exclude, exclude_seen)], prefix=False)[0]

    def recommend_batch(self, requests: Sequence[RecommendRequest], prefix: bool = True) -> list[Recommendation]:
        """Answer B requests with one model call and one index search; a k above the catalogue size M gives
        every item that is not excluded.

        Raises RequestError (or UnknownItemError) naming the request (``requests[i].``) and the problem.
        """
        if not requests:
            return []
        histories, excluded = [], []
        for i, req in enumerate(requests):
            where = f"requests[{i}]." if prefix else ""
            self._validate(req, where)
            seen = self.item_indices(req.history, f"{where}history")
            drop = self.item_indices(req.exclude, f"{where}exclude")
            histories.append(seen)
            excluded.append(np.unique(np.concatenate([seen, drop]) if req.exclude_seen else drop))
        k = min(max(int(r.k) for r in requests), self.num_items)  # a list never holds more than M items
        batch = left_padded(histories, self.max_len)  # (B, T)
        with torch.inference_mode():
            out = self.model(torch.from_numpy(batch))
            query = ranking.retrieval_query(self.model, out)  # (B, D) or (B, K, D)
            interest: np.ndarray | None = None
            if query.dim() == 3:
                ids, scores, interest = self.index.search_multi(query, k, excluded)
            else:
                ids, scores = self.index.search(query, k, excluded)
                if out.interests is not None:  # single-vector models with interests (SINE)
                    interest = ranking.interest_behind(out.interests, self.item_vectors,
                                                       torch.from_numpy(ids)).numpy()
        extras = {name: t.float().numpy() for name, t in (out.extras or {}).items()}
        results = []
        for b, req in enumerate(requests):
            concept_ids = extras.get("concept_ids")
            items = []
            for j in range(min(int(req.k), k)):
                idx = int(ids[b, j])
                if idx < 1:
                    break
                kk = None if interest is None else int(interest[b, j])
                concept = int(concept_ids[b, kk]) if concept_ids is not None and kk is not None else None
                items.append(self._item(idx, float(scores[b, j]), kk, concept))
            used = min(len(histories[b]), self.max_len)
            results.append(Recommendation(items, self._explain(extras, b, batch[b, -used:]), used,
                                          len(excluded[b])))
        return results

    def _explain(self, extras: dict[str, np.ndarray], b: int, seen: np.ndarray) -> Explanation | None:
        """SINE's explanation of row b; ``seen`` (n,) the item indices the model saw, oldest first."""
        needed = ("concept_ids", "gates", "aggregation", "intention", "attention")
        if not all(name in extras for name in needed):
            return None
        n = len(seen)
        intention = extras["intention"][b, -n:]  # (n, K)  P(k|t) of the real (unpadded) positions
        attention = extras["attention"][b][:, -n:].T  # (K, n) -> (n, K)  P(t|k)
        steps = tuple(HistoryStep(plain_id(self.data.item_ids[i]), _floats(p), _floats(a))
                      for i, p, a in zip(seen, intention, attention, strict=True))
        return Explanation(concept_ids=tuple(int(c) for c in extras["concept_ids"][b]),
                           gates=_floats(extras["gates"][b]), aggregation=_floats(extras["aggregation"][b]),
                           history=steps)

    def similar(self, item_id: Any, k: int = 10) -> list[RecommendedItem]:
        """The k items whose vectors have the largest inner product with ``item_id``'s, itself excluded."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise RequestError(f"k: must be an integer >= 1, got {k!r}")
        idx = int(self.item_indices([item_id], "item")[0])
        k = min(int(k), self.num_items)
        query = self.item_vectors[idx:idx + 1]  # (1, D)
        if self.model.multi_vector_retrieval:
            ids, scores, _ = self.index.search_multi(query.unsqueeze(1), k, [[idx]])
        else:
            ids, scores = self.index.search(query, k, [[idx]])
        return [self._item(int(i), float(s), None, None) for i, s in zip(ids[0], scores[0], strict=True) if i >= 1]


def _floats(x: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in x)


def index_recall(run: LoadedRun, index: ItemIndex, k: int = 50, num_queries: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """recall@k of ``index`` against the exact ranking, on the retrieval queries of up to ``num_queries``
    sampled users of the run (their last max_len items, whole history excluded, as served)."""
    data = run.data
    users = np.sort(np.random.default_rng(seed).permutation(data.num_users)[:num_queries])
    history = torch.from_numpy(user_windows(data, users, run.config.data.max_len))  # (Q, T)
    with torch.inference_mode():
        query = ranking.retrieval_query(run.model, run.model(history))  # (Q, D) or (Q, K, D)
    exclude = [data.sequence(int(u)) for u in users]
    exact = build_index(run.model.item_embeddings().detach(), IndexSettings("exact"))
    if query.dim() == 3:
        approx_ids, truth = index.search_multi(query, k, exclude)[0], exact.search_multi(query, k, exclude)[0]
    else:
        approx_ids, truth = index.search(query, k, exclude)[0], exact.search(query, k, exclude)[0]
    return {"recall": recall_at_k(approx_ids, truth, k), "k": k, "queries": len(users)}
