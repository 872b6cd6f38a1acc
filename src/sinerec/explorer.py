"""The explorer: a page at ``/`` of ``sinerec serve`` to build a history, see the recommendations grouped by
the interest behind them, and browse the concept pool.

The page (``resources/explorer/index.html``) is plain HTML and vanilla JavaScript: no build step. For
recommendations it calls the serving API's ``POST /recommend``; the routes added here describe the run and
hold out a user's last item. The page uses relative URLs only, so it works behind a reverse proxy that serves
it under a path prefix (``https://host/some/prefix/``):

- ``GET /``: the page.
- ``GET /api/info``: model, dataset, catalogue size, T, K, L, whether items have titles and categories.
- ``GET /api/items?query=...&limit=20``: items whose title or id contains the query (case-insensitive),
  most popular first; an empty query lists the most popular items. ``GET /api/items?ids=1,2,3``: those items.
- ``GET /api/users/{id}``: a known user's whole sequence (original item ids with titles), oldest first;
  ``GET /api/users/random``: one drawn at random.
- ``GET /api/users/{id}/heldout?k=10``: the held-out view of a user (:func:`held_out`): the history up to the
  test point (the last item held out, as the ``loo`` protocol), the top k for it, and the true next item with
  its rank in the full ranking and the interest that scores it highest. ``exclude_history`` (default: the
  run's ``protocol.exclude_history``) removes the history's items from the ranking, as the evaluator does.

The user routes hand out training data, so they answer only when mounted with ``expose_users=True``
(``sinerec serve`` does so by default only on a loopback address); otherwise 403 naming the switch.
- ``GET /api/concepts``: the concept pool (SINE only, else 404): per concept its top items by cosine, the
  categories of its nearest items, how many users activate it and its mean gate
  (:func:`sinerec.explain.concept_table`, computed on first use over at most ``max_activation_users``).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sinerec import ranking
from sinerec.data.batching import gather_histories
from sinerec.errors import SinerecError
from sinerec.ids import IdMap, plain_id, show_id, split_ids

if TYPE_CHECKING:
    from sinerec.runs import LoadedRun

__all__ = ["HeldOut", "held_out", "mount_explorer", "page_html"]


def page_html() -> str:
    """The explorer page, read from the package's resources."""
    return resources.files("sinerec").joinpath("resources/explorer/index.html").read_text(encoding="utf-8")


@dataclass(frozen=True)
class HeldOut:
    """A user's last item held out and ranked, as the evaluator ranks a ``loo`` test query.

    Item ids are item indices (1..M). ``rank`` is the 1-based position of ``target`` in the full ranking
    (ties to the smaller id), None when the target is excluded (it is also in the history and the history is
    excluded). ``interests`` (k,) and ``target_interest``: the interest whose vector scores the item highest
    (None for models without interests); ``concept_ids`` (K,): SINE's activated concepts, else None.
    """

    user: int
    history: np.ndarray  # (n,) item indices up to the test point, oldest first
    target: int
    ids: np.ndarray  # (k,) the top k, best first (-1 past the items left to rank)
    scores: np.ndarray  # (k,)
    interests: np.ndarray | None  # (k,)
    rank: int | None
    target_score: float
    target_interest: int | None
    concept_ids: np.ndarray | None
    num_ranked: int  # items the target was ranked among (M minus the excluded ones)
    exclude_history: bool


def held_out(run: LoadedRun, user: int, k: int, exclude_history: bool) -> HeldOut:
    """Hold out user ``user``'s last item and rank every item for the history before it.

    The evaluator's own steps (:mod:`sinerec.evaluate`): the window ``gather_histories``, the query
    ``ranking.retrieval_query``, the exclusion ``ranking.exclusion_pairs`` and ``ranking.topk_items`` over all
    items (the full ranking, so that a target outside the top k still has its rank); the interest behind an item
    is ``ranking.interest_behind``. Raises SinerecError for a user with fewer than 2 items.
    """
    data, model = run.data, run.model
    start, end = int(data.offsets[user]), int(data.offsets[user + 1]) - 1  # items[start:end] is the history
    if end - start < 1:
        raise SinerecError(f"user {plain_id(data.user_ids[user])!r} has {end - start + 1} item(s): holding "
                           "one out needs at least 2")
    starts, ends = np.array([start]), np.array([end])
    target = int(data.items[end])
    window = torch.from_numpy(gather_histories(data.items, starts, ends, run.config.data.max_len))  # (1, T)
    vectors = model.item_embeddings().detach()  # (M + 1, D)
    with torch.inference_mode():
        out = model(window)
        query = ranking.retrieval_query(model, out)  # (1, D) or (1, K, D)
        rows, items = ranking.exclusion_pairs(data.items, starts, ends) if exclude_history else (None, None)
        full_ids, full_scores = ranking.topk_items(query, vectors, data.num_items, rows, items)  # (1, M)
        listed = torch.cat([full_ids[:, :k], torch.tensor([[target]])], dim=1)  # (1, k + 1)
        behind = (None if out.interests is None else
                  ranking.interest_behind(out.interests, vectors, listed)[0].numpy())
    ids, scores = full_ids[0].numpy(), full_scores[0].float().numpy()
    where = np.flatnonzero(ids == target)
    rank = int(where[0]) + 1 if len(where) else None
    concepts = (out.extras or {}).get("concept_ids")
    return HeldOut(user=user, history=data.items[start:end].copy(), target=target, ids=ids[:k],
                   scores=scores[:k], interests=None if behind is None else behind[:k], rank=rank,
                   target_score=float(scores[rank - 1]) if rank is not None else float("nan"),
                   target_interest=None if behind is None else int(behind[-1]),
                   concept_ids=None if concepts is None else concepts[0].numpy(),
                   num_ranked=int((ids >= 1).sum()), exclude_history=exclude_history)


class _Catalogue:
    """Item and user lookups of a run, built once: string ids, lower-cased titles, popularity order."""

    def __init__(self, run: LoadedRun) -> None:
        data = run.data
        self.run = run
        self.titles = data.item_titles or [""] * len(data.item_ids)
        self.categories = data.item_categories or [()] * len(data.item_ids)
        self.ids = [str(plain_id(i)) for i in data.item_ids]  # index -> original id as text ("None" at 0)
        self.item_map = IdMap(data.item_ids, first=1)
        self.user_map = IdMap(data.user_ids)
        counts = np.bincount(data.items, minlength=len(data.item_ids))
        counts[0] = -1
        self.popular = np.argsort(-counts, kind="stable")[: len(data.item_ids) - 1]  # item indices, by count
        self.counts = counts
        self.haystack = [f"{t} {i}".lower() for t, i in zip(self.titles, self.ids, strict=True)]

    def item(self, idx: int) -> dict[str, Any]:
        return {"item_id": plain_id(self.run.data.item_ids[idx]), "title": self.titles[idx] or None,
                "categories": list(self.categories[idx]), "count": int(self.counts[idx])}

    def search(self, query: str, limit: int) -> list[dict[str, Any]]:
        q = query.strip().lower()
        if not q:
            return [self.item(int(i)) for i in self.popular[:limit]]
        exact_match = self.item_map.index(query.strip())
        exact = [] if exact_match is None else [exact_match]
        hits = [int(i) for i in self.popular if q in self.haystack[i] and int(i) not in exact]
        return [self.item(i) for i in (exact + hits)[:limit]]

    def user(self, u: int) -> dict[str, Any]:
        data = self.run.data
        seq = data.sequence(u)
        return {"user_id": plain_id(data.user_ids[u]), "length": int(len(seq)),
                "history": [self.item(int(i)) for i in seq]}

    def ranked(self, idx: int, score: float, interest: int | None, concepts: np.ndarray | None) -> dict[str, Any]:
        """An item of a ranking: the item, its score, the interest behind it and that interest's concept."""
        concept = None if concepts is None or interest is None else int(concepts[interest])
        return {**self.item(idx), "score": round(score, 6), "interest": interest, "concept": concept}

    def held_out(self, h: HeldOut) -> dict[str, Any]:
        """The JSON of :class:`HeldOut`: original ids, titles, and where the true next item landed."""
        data = self.run.data
        interests = [None] * len(h.ids) if h.interests is None else [int(i) for i in h.interests]
        target = self.ranked(h.target, h.target_score, h.target_interest, h.concept_ids)
        return {"user_id": plain_id(data.user_ids[h.user]), "length": int(len(h.history)) + 1,
                "history": [self.item(int(i)) for i in h.history], "k": len(h.ids),
                "items": [self.ranked(int(i), float(s), kk, h.concept_ids)
                          for i, s, kk in zip(h.ids, h.scores, interests, strict=True) if i >= 1],
                "target": {**target, "score": None if h.rank is None else target["score"], "rank": h.rank,
                           "in_top_k": h.rank is not None and h.rank <= len(h.ids)},
                "num_ranked": h.num_ranked, "exclude_history": h.exclude_history}


def mount_explorer(app: Any, run: LoadedRun, max_activation_users: int = 20_000, seed: int = 0,
                   expose_users: bool = True) -> None:
    """Add the explorer's page and ``/api/...`` routes to a FastAPI ``app`` serving ``run`` (a LoadedRun).

    ``max_activation_users`` bounds the users run through the model for the concept pool's activation
    counts (a sample drawn with ``seed`` beyond that); the pool is computed on its first request.
    ``expose_users`` False answers the user routes with 403.
    """
    from fastapi import HTTPException
    from fastapi.responses import HTMLResponse

    catalogue = _Catalogue(run)
    has_concepts = hasattr(run.model, "prototypes")
    lock = threading.Lock()
    cache: dict[str, Any] = {}
    draw = random.Random(seed)

    def concepts() -> dict[str, Any]:
        with lock:
            if "concepts" not in cache:
                from sinerec.explain import concept_table, user_activations

                users = np.arange(run.data.num_users)
                if len(users) > max_activation_users:
                    users = np.sort(np.random.default_rng(seed).choice(users, max_activation_users, replace=False))
                acts = user_activations(run, users)
                cache["concepts"] = {"n_users": int(len(users)), "concepts": concept_table(run, 12, acts)}
            return cache["concepts"]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(page_html())

    @app.get("/api/info", summary="Explorer: what the served run is")
    def info() -> dict[str, Any]:
        cfg = getattr(run.model, "config", None)
        return {"model": run.config.model, "dataset": run.data.name, "num_items": run.data.num_items,
                "num_users": run.data.num_users, "max_len": run.config.data.max_len,
                "num_interests": getattr(cfg, "num_interests", None),
                "exclude_history": run.config.protocol.excludes_history,
                "num_concepts": getattr(cfg, "num_concepts", None) if has_concepts else None,
                "has_titles": run.data.item_titles is not None,
                "has_categories": run.data.item_categories is not None, "has_concepts": has_concepts}

    @app.get("/api/items", summary="Explorer: search items by title or id, or look up ids")
    def items(query: str = "", ids: str = "", limit: int = 20) -> dict[str, Any]:
        limit = max(1, min(limit, 200))
        if ids:
            wanted = [(i, catalogue.item_map.index(i)) for i in split_ids(ids)]
            unknown = [i for i, idx in wanted if idx is None]
            found = [catalogue.item(idx) for _, idx in wanted if idx is not None]
            return {"items": found, "unknown": unknown}
        return {"items": catalogue.search(query, limit), "unknown": []}

    def check_users_exposed() -> None:
        if not expose_users:
            raise HTTPException(403, "user histories are not served: start `sinerec serve` with --expose-users "
                                     "to serve them (the default only on a loopback address)")

    @app.get("/api/users/random", summary="Explorer: a random known user's sequence (with --expose-users)")
    def random_user() -> dict[str, Any]:
        check_users_exposed()
        return catalogue.user(draw.randrange(run.data.num_users))

    @app.get("/api/users/{user_id}", summary="Explorer: a known user's sequence, oldest first (with --expose-users)")
    def user(user_id: str) -> dict[str, Any]:
        check_users_exposed()
        u = catalogue.user_map.index(user_id)
        if u is None:
            raise HTTPException(404, f"user: unknown user id {show_id(user_id)}")
        return catalogue.user(u)

    @app.get("/api/users/{user_id}/heldout",
             summary="Explorer: a user's last item held out and ranked (with --expose-users)")
    def user_heldout(user_id: str, k: int = 10, exclude_history: bool | None = None) -> dict[str, Any]:
        check_users_exposed()
        u = catalogue.user_map.index(user_id)
        if u is None:
            raise HTTPException(404, f"user: unknown user id {show_id(user_id)}")
        if not 1 <= k <= run.data.num_items:
            raise HTTPException(422, f"k: must be between 1 and {run.data.num_items}, got {k}")
        exclude = run.config.protocol.excludes_history if exclude_history is None else exclude_history
        try:
            result = held_out(run, u, k, exclude)
        except SinerecError as exc:
            raise HTTPException(422, str(exc)) from None
        return catalogue.held_out(result)

    @app.get("/api/concepts", summary="Explorer: the concept pool (SINE)")
    def concept_pool() -> dict[str, Any]:
        if not has_concepts:
            raise HTTPException(404, f"model {run.config.model!r} has no concept pool (SINE only)")
        return concepts()
