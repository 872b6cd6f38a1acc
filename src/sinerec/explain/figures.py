"""The figures of ``sinerec explain`` (matplotlib, Agg canvas, no pyplot state), as PNG bytes.

They only render what :func:`sinerec.explain.explain_run` computed; the numbers live there.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sinerec.runs import LoadedRun

#: One colour per interest slot k (matplotlib's tab10), shared by the figures and the HTML.
SLOT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf"]


def slot_colour(k: int) -> str:
    return SLOT_COLOURS[k % len(SLOT_COLOURS)]


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # an optional dependency
        from sinerec.errors import SinerecError

        raise SinerecError("sinerec explain needs matplotlib: pip install 'sinerec[explain]'") from exc
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def curves_figure(curves: list[dict[str, Any]]) -> bytes:
    """Training loss and validation metrics (percent) per epoch."""
    fig = _figure(10, 3.6)
    ax_loss, ax_metric = fig.subplots(1, 2)
    epochs = [c["epoch"] for c in curves]
    ax_loss.plot(epochs, [c["loss"] for c in curves], marker="o", color="#333")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    names = [n for n in ("HR@10", "NDCG@10", "HR@50", "NDCG@50") if any(n in c["valid"] for c in curves)]
    for name in names or sorted({n for c in curves for n in c["valid"]})[:4]:
        ax_metric.plot(epochs, [100 * c["valid"].get(name, np.nan) for c in curves], marker="o", label=name)
    ax_metric.set(title="validation metrics", xlabel="epoch", ylabel="%")
    if ax_metric.lines:
        ax_metric.legend(fontsize=8)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
    return _png(fig)


def concepts_figure(activation: dict[str, Any]) -> bytes:
    """Per concept: users activating it, its mean gate and the items nearest to it."""
    counts = np.array(activation["counts"])
    gates = np.array([np.nan if g is None else g for g in activation["mean_gates"]], dtype=float)
    items = np.array(activation["items_per_concept"])
    x = np.arange(len(counts))
    fig = _figure(10, 5.4)
    ax_users, ax_gate, ax_items = fig.subplots(3, 1, sharex=True)
    ax_users.bar(x, counts, color="#1f77b4")
    ax_users.set(ylabel="users", title=f"concept activation over {activation['n_users']:,} users "
                                       f"({activation['ever_activated']} of {len(counts)} ever activated)")
    ax_gate.scatter(x, gates, s=10, color="#d62728")
    ax_gate.set(ylabel="mean gate", ylim=(0, 1.02))
    ax_items.bar(x, items, color="#2ca02c")
    ax_items.set(ylabel="nearest items", xlabel="concept")
    for ax in (ax_users, ax_gate, ax_items):
        ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def prototypes_figure(prototypes: np.ndarray) -> bytes:
    """Cosine similarity between prototypes (L x L)."""
    c = prototypes / np.maximum(np.linalg.norm(prototypes, axis=1, keepdims=True), 1e-12)
    fig = _figure(6, 5)
    ax = fig.subplots()
    im = ax.imshow(c @ c.T, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set(title="prototype cosine similarity", xlabel="concept", ylabel="concept")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def nmi_figure(nmi: dict[str, Any]) -> bytes:
    """The learned concepts' NMI against the spread of random assignments with the same cluster sizes."""
    fig = _figure(7, 3)
    ax = fig.subplots()
    ax.hist(nmi["random_values"], bins=15, color="#999", label=f"random assignment ({nmi['repeats']} draws)")
    ax.axvline(nmi["value"], color="#d62728", lw=2, label=f"learned concepts: {nmi['value']:.3f}")
    ax.set(title="NMI of each item's nearest concept vs the dataset's categories", xlabel="NMI",
           ylabel="draws")
    ax.set_xlim(0, max(nmi["value"], max(nmi["random_values"])) * 1.15 + 1e-3)
    ax.legend(fontsize=8)
    return _png(fig)


def concept_categories_figure(cc: dict[str, Any], items_per_concept: list[int], max_concepts: int = 60) -> bytes:
    """Heatmap: share of each concept's nearest items in each frequent category."""
    shares = np.array(cc["shares"])
    order = np.argsort(-np.array(items_per_concept), kind="stable")[:max_concepts]
    order = order[np.array(items_per_concept)[order] > 0]
    fig = _figure(max(6, 0.3 * len(cc["categories"]) + 2), max(4, 0.16 * len(order) + 1.5))
    ax = fig.subplots()
    im = ax.imshow(shares[order], aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
    ax.set_xticks(range(len(cc["categories"])), cc["categories"], rotation=90, fontsize=7)
    ax.set_yticks(range(len(order)), [f"c{c} ({items_per_concept[c]})" for c in order], fontsize=6)
    ax.set(title="category share of each concept's nearest items")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def user_figure(user: dict[str, Any]) -> bytes:
    """One user's history (oldest at the top) coloured by intention P(k|t), slot columns labelled with the
    activated concept, its gate and its aggregation weight."""
    history = user["history"]
    probs = np.array([h["intention"] for h in history]).reshape(len(history), -1)  # (t, K)
    n_slots = probs.shape[1]
    fig = _figure(3 + 1.1 * n_slots, 1.2 + 0.24 * max(len(history), 1))
    ax = fig.subplots()
    rgba = np.ones((max(len(history), 1), n_slots, 4))  # each slot's colour, opacity P(k|t)
    for k in range(n_slots):
        rgba[:, k, :3] = [int(slot_colour(k)[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    rgba[: len(history), :, 3] = probs
    rgba[len(history):, :, 3] = 0
    ax.imshow(rgba, aspect="auto", interpolation="nearest")
    for t, row in enumerate(probs):
        k = int(row.argmax())
        ax.add_patch(_rect(k, t, slot_colour(k)))
        for j, p in enumerate(row):
            ax.text(j, t, f"{p:.2f}", ha="center", va="center", fontsize=6)
    labels = [f"k={s['slot']}\nc{s['concept']}\ng {s['gate']:.2f} e {s['aggregation']:.2f}"
              for s in user["interests"]]
    ax.set_xticks(range(n_slots), labels, fontsize=7)
    ax.set_yticks(range(len(history)), [_short(h["title"] or str(h["item_id"])) for h in history], fontsize=6)
    for tick, k in zip(ax.get_xticklabels(), range(n_slots), strict=True):
        tick.set_color(slot_colour(k))
    ax.set_title(f"user {user['user_id']}: P(k|t) over the last {len(history)} items", fontsize=9)
    return _png(fig)


def _rect(x: int, y: int, colour: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor=colour, lw=2)


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def render_figures(run: LoadedRun, doc: dict[str, Any]) -> dict[str, bytes]:
    """name -> PNG bytes for every figure the document supports (``curves`` needs a training log)."""
    from sinerec.explain.concepts import require_sine

    figures: dict[str, bytes] = {}
    if doc["curves"]:
        figures["curves"] = curves_figure(doc["curves"])
    if "activation" in doc:
        figures["concepts"] = concepts_figure(doc["activation"])
        figures["prototypes"] = prototypes_figure(require_sine(run).prototypes.detach().float().numpy())
    if doc.get("nmi"):
        figures["nmi"] = nmi_figure(doc["nmi"])
    if doc.get("concept_categories"):
        figures["concept_categories"] = concept_categories_figure(doc["concept_categories"],
                                                                  doc["activation"]["items_per_concept"])
    for user in doc.get("users", []):
        figures[f"user_{user['user']}"] = user_figure(user)
    return figures
