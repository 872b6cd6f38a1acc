"""The whole analysis of a run (``explain_run``, the content of ``explain.json``) and the report on disk
(``write_report``: ``report.html``, ``explain.json``, ``figures/*.png``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sinerec.explain.collapse import collapse_warnings, duplicate_prototypes
from sinerec.explain.concepts import (
    concept_nmi,
    concept_table,
    has_concepts,
    nearest_concepts,
    require_sine,
    usage_histogram,
    user_activations,
    user_explanations,
)
from sinerec.explain.nmi import entropy

if TYPE_CHECKING:
    from sinerec.runs import LoadedRun

__all__ = ["explain_run", "write_report"]


def _concept_category_shares(nearest: np.ndarray, categories: Sequence[tuple[str, ...]], num_concepts: int,
                             n_categories: int = 25) -> dict[str, Any]:
    """Share of each concept's items (nearest prototype) in each of the ``n_categories`` most frequent
    categories, fractional as in the NMI: {"categories": [C labels], "shares": (L, C) nested lists}."""
    total: dict[str, float] = defaultdict(float)
    for cats in categories:
        for label in cats:
            total[label] += 1.0 / len(cats)
    labels = [label for label, _ in sorted(total.items(), key=lambda x: -x[1])[:n_categories]]
    column = {label: j for j, label in enumerate(labels)}
    shares = np.zeros((num_concepts, len(labels)))
    sizes = np.bincount(nearest, minlength=num_concepts).astype(np.float64)
    for concept, cats in zip(nearest.tolist(), categories, strict=True):
        for label in cats:
            if label in column:
                shares[concept, column[label]] += 1.0 / len(cats)
    shares /= np.maximum(sizes, 1.0)[:, None]
    return {"categories": labels, "shares": np.round(shares, 4).tolist()}


def explain_run(run: LoadedRun, n_users: int = 6, n_top: int = 10, k: int = 10, seed: int = 0, repeats: int = 20,
                max_activation_users: int = 50_000) -> dict[str, Any]:
    """Every number of the report, as one JSON-ready dict (the content of ``explain.json``).

    Args:
        run: a LoadedRun (``sinerec.runs.load_run``).
        n_users: size of the random sample of explained users.
        n_top: items listed per concept; k: recommendations per explained user.
        seed: seeds the user samples and the random-assignment NMI.
        repeats: random assignments averaged for the chance-level NMI.
        max_activation_users: activation statistics use all users, or a random sample of this many.
    Returns:
        ``run``, ``model``, ``dataset``, ``curves`` (per-epoch loss and validation metrics) always; for SINE
        also ``nmi`` (None when the dataset has no categories), ``activation``, ``duplicates``, ``warnings``,
        ``concepts`` (:func:`concept_table`), ``concept_categories``, ``users`` (:func:`user_explanations`).
    """
    data = run.data
    rng = np.random.default_rng(seed)
    doc: dict[str, Any] = {
        "run": str(run.run_dir), "model": run.config.model,
        "dataset": {"name": data.name, "n_users": data.num_users, "n_items": data.num_items,
                    "n_interactions": data.num_interactions, "fingerprint": data.fingerprint()},
        "curves": [{"epoch": r.get("epoch"), "loss": r.get("loss"), "valid": r.get("valid", {})}
                   for r in run.history],
        "test": (run.metrics or {}).get("test"),
    }
    if not has_concepts(run):
        doc["note"] = (f"model {run.config.model!r} has no concept pool: concepts, interests and NMI exist for "
                       "SINE runs only; this report shows the training curves")
        return doc
    model = require_sine(run)
    num_concepts, num_interests = model.config.num_concepts, model.config.num_interests
    users = np.arange(data.num_users)
    if len(users) > max_activation_users:
        users = np.sort(rng.choice(users, max_activation_users, replace=False))
    acts = user_activations(run, users)
    counts = acts.counts(num_concepts)
    prototypes = model.prototypes.detach().float().numpy()
    nearest, _ = nearest_concepts(model.item_embeddings().detach(), model.prototypes.detach())
    share = counts / max(counts.sum(), 1)
    doc["activation"] = {
        "n_users": int(len(users)), "num_concepts": num_concepts, "num_interests": num_interests,
        "ever_activated": int((counts > 0).sum()),
        "effective_concepts": round(float(np.exp(entropy(share))), 2),  # exp(entropy) of activation shares
        "counts": counts.tolist(),
        "mean_gates": [None if np.isnan(g) else round(float(g), 4) for g in acts.mean_gates(num_concepts)],
        "mean_aggregation": [None if np.isnan(g) else round(float(g), 4)
                             for g in acts.mean_aggregation(num_concepts)],
        "items_per_concept": np.bincount(nearest, minlength=num_concepts).tolist(),
        # 1.0: one-hot (saturated); 1/K: uniform
        "mean_aggregation_peak": round(float(acts.aggregation.max(axis=1).mean()), 4) if len(users) else None,
        "mean_intention_peak": round(float(acts.intention_peak.mean()), 4) if len(users) else None,
        # are the K interests used? distributions over users, and how many interests each history expresses
        "aggregation_peak_histogram": usage_histogram(acts.aggregation.max(axis=1), num_interests),
        "intention_peak_histogram": usage_histogram(acts.intention_peak, num_interests),
        "interests_expressed": np.bincount(acts.expressed, minlength=num_interests + 1).tolist(),
    }
    doc["duplicates"] = [list(p) for p in duplicate_prototypes(prototypes)]
    doc["warnings"] = collapse_warnings(counts, prototypes, num_interests,
                                        aggregation_peak=doc["activation"]["mean_aggregation_peak"])
    doc["nmi"] = concept_nmi(run, seed, repeats, nearest)
    if data.item_categories is not None:
        doc["concept_categories"] = _concept_category_shares(nearest, data.item_categories[1:], num_concepts)
    doc["concepts"] = concept_table(run, n_top, acts)
    sample = np.sort(rng.choice(data.num_users, min(n_users, data.num_users), replace=False))
    doc["users"] = user_explanations(run, sample, k)
    return doc


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, n_users: int = 6, n_top: int = 10,
                 k: int = 10, seed: int = 0, repeats: int = 20) -> Path:
    """Explain the run in ``run_dir``: write ``report.html``, ``explain.json`` and ``figures/*.png``.

    ``out_dir`` defaults to ``RUN/explain``. The PNGs are written next to the report under ``figures/`` and
    also embedded in ``report.html`` as base64 data URIs, so the HTML file alone is self-contained. Every
    file is written atomically (temporary file, then rename). Non-SINE runs get a report with the training
    curves only. Needs matplotlib (``pip install 'sinerec[explain]'``).

    Returns:
        the path of ``report.html``.
    """
    from sinerec.explain.figures import render_figures
    from sinerec.explain.page import render_html
    from sinerec.runs import load_run
    from sinerec.storage import atomic_write_bytes, atomic_write_text, write_json

    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "explain"
    with torch.inference_mode():
        doc = explain_run(run, n_users=n_users, n_top=n_top, k=k, seed=seed, repeats=repeats)
    figures = render_figures(run, doc)
    for name, png in figures.items():
        atomic_write_bytes(out / "figures" / f"{name}.png", png)
    doc["figures"] = [f"figures/{name}.png" for name in figures]
    write_json(out / "explain.json", doc)
    report = out / "report.html"
    atomic_write_text(report, render_html(doc, figures))
    return report
