"""The explorer: a page at ``/`` of ``sinerec serve`` to build a history, see the recommendations grouped by
the interest behind them, and browse the concept pool.

The page (``resources/explorer/index.html``) is plain HTML and vanilla JavaScript: no build step. For
recommendations it calls the serving API's ``POST /recommend``; the routes added here only describe the
run:

- ``GET /``: the page.
- ``GET /api/info``: model, dataset, catalogue size, T, K, L, whether items have titles and categories.
- ``GET /api/items?query=...&limit=20``: items whose title or id contains the query (case-insensitive),
  most popular first; an empty query lists the most popular items. ``GET /api/items?ids=1,2,3``: those items.
- ``GET /api/users/{id}``: a known user's whole sequence (original item ids with titles), oldest first;
  ``GET /api/users/random``: one drawn at random. These hand out training data, so they answer only when
  mounted with ``expose_users=True`` (``sinerec serve`` does so by default only on a loopback address);
  otherwise 403 naming the switch.
- ``GET /api/concepts``: the concept pool (SINE only, else 404): per concept its top items by cosine, the
  categories of its nearest items, how many users activate it and its mean gate
  (:func:`sinerec.explain.concept_table`, computed on first use over at most ``max_activation_users``).
"""

from __future__ import annotations

import random
import threading
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from sinerec.ids import IdMap, plain_id, show_id, split_ids

if TYPE_CHECKING:
    from sinerec.runs import LoadedRun

__all__ = ["mount_explorer", "page_html"]


def page_html() -> str:
    """The explorer page, read from the package's resources."""
    return resources.files("sinerec").joinpath("resources/explorer/index.html").read_text(encoding="utf-8")


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
                "num_interests": getattr(cfg, "num_interests", None) if has_concepts else None,
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

    @app.get("/api/concepts", summary="Explorer: the concept pool (SINE)")
    def concept_pool() -> dict[str, Any]:
        if not has_concepts:
            raise HTTPException(404, f"model {run.config.model!r} has no concept pool (SINE only)")
        return concepts()
