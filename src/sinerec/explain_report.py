"""Figures (matplotlib, Agg canvas, no pyplot state) and the self-contained HTML of ``sinerec explain``.

Both functions only render what :func:`sinerec.explain.explain_run` computed; the numbers live there.
"""

from __future__ import annotations

import base64
import html
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


# ---------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------


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
    from sinerec.explain import require_sine

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


# ---------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{margin-top:32px;border-bottom:2px solid #dde;padding-bottom:4px}
.meta{color:#667}.card{background:#fff;border-radius:10px;box-shadow:0 1px 3px #0002;padding:16px;margin:12px 0}
img{max-width:100%}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5}.warn{background:#fff4e5;border-left:4px solid #f59e0b;padding:8px 12px;margin:6px 0}
.ok{background:#e8f7ee;border-left:4px solid #22c55e;padding:8px 12px}
.chip{display:inline-block;border-radius:6px;padding:2px 7px;margin:2px;font-size:12px;border:2px solid}
.cat{color:#667;font-size:11px}.num{font-variant-numeric:tabular-nums;text-align:right}
.groups{display:flex;gap:10px;flex-wrap:wrap}.group{flex:1 1 220px;border-top:4px solid;padding:6px 8px;
background:#fafbfc;border-radius:6px}.group ol{margin:4px 0;padding-left:20px}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _img(figures: dict[str, bytes], name: str, alt: str) -> str:
    if name not in figures:
        return ""
    data = base64.b64encode(figures[name]).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _item(x: dict[str, Any]) -> str:
    cats = ", ".join(x.get("categories") or [])
    title = x.get("title") or f"item {x['item_id']}"
    return f"{_e(title)} <span class=cat>#{_e(x['item_id'])}{' · ' + _e(cats) if cats else ''}</span>"


def _nmi_section(nmi: dict[str, Any] | None) -> str:
    if nmi is None:
        return "<p>The dataset has no item categories: no NMI.</p>"
    verdict = ("ok", "above") if nmi["value"] > nmi["random_mean"] + 3 * nmi["random_std"] else ("warn", "not above")
    return (f"<table><tr><th>learned concepts</th><th>random assignment, same cluster sizes</th><th>z</th>"
            f"<th>items</th><th>categories</th><th>concepts used</th></tr><tr>"
            f"<td class=num><b>{nmi['value']:.4f}</b></td>"
            f"<td class=num>{nmi['random_mean']:.4f} ± {nmi['random_std']:.4f} ({nmi['repeats']} draws)</td>"
            f"<td class=num>{_e(nmi['z'])}</td><td class=num>{nmi['n_items']:,}</td>"
            f"<td class=num>{nmi['n_categories']}</td><td class=num>{nmi['clusters_used']}</td></tr></table>"
            f"<p class={verdict[0]}>The learned concepts' NMI is {verdict[1]} chance level (mean + 3 sd of "
            f"random assignments).</p><p class=meta>Assignment: {_e(nmi['assignment'])}. Normalisation: "
            f"{_e(nmi['normalisation'])}. Several categories per item: {_e(nmi['multilabel'])}. The paper "
            "reports 0.09 / 0.37 / 0.29 against the three levels of a category tree (one label per item).</p>")


def _concepts_section(concepts: list[dict[str, Any]], n_show: int = 8) -> str:
    rows = []
    for c in sorted(concepts, key=lambda c: (-c["users"], c["concept"])):
        gate = "–" if c["mean_gate"] is None else f"{c['mean_gate']:.3f}"
        cats = ", ".join(f"{_e(lab)} {100 * s:.0f}%" for lab, s in c["top_categories"])
        items = "<br>".join(f"{_item(x)} <span class=cat>cos {x['cosine']:.2f}</span>"
                            for x in c["top_items"][:n_show])
        rows.append(f"<tr><td>c{c['concept']}</td><td class=num>{c['users']:,}<br><span class=cat>"
                    f"{100 * c['user_share']:.1f}%</span></td><td class=num>{gate}</td>"
                    f"<td class=num>{c['n_items']:,}</td><td>{cats}</td><td>{items}</td></tr>")
    return ("<table><tr><th>concept</th><th>users</th><th>mean gate</th><th>nearest items</th>"
            "<th>categories of its items</th><th>top items by cosine</th></tr>" + "".join(rows) + "</table>")


def _user_section(user: dict[str, Any], figures: dict[str, bytes]) -> str:
    chips = []
    for h in user["history"]:
        k, p = h["interest"], max(h["intention"])
        colour = slot_colour(k)
        alpha = f"{int(40 + 180 * p):02x}"
        chips.append(f'<span class=chip style="border-color:{colour};background:{colour}{alpha}" '
                     f'title="P(k|t) = {_e(h["intention"])}">{_e(h["title"] or h["item_id"])}</span>')
    slots = "".join(
        f'<tr><td><span class=chip style="border-color:{slot_colour(s["slot"])}">k={s["slot"]}</span></td>'
        f'<td>c{s["concept"]}</td><td class=num>{s["gate"]:.3f}</td><td class=num>{s["aggregation"]:.3f}</td>'
        f'<td class=num>{len(s["recommendations"])}</td></tr>' for s in user["interests"])
    groups = "".join(
        f'<div class=group style="border-color:{slot_colour(s["slot"])}"><b>interest k={s["slot"]} · '
        f'concept c{s["concept"]}</b> <span class=cat>e = {s["aggregation"]:.3f}</span><ol>'
        + "".join(f"<li>{_item(x)} <span class=cat>score {x['score']:.2f}</span></li>"
                  for x in s["recommendations"])
        + "</ol></div>" for s in user["interests"] if s["recommendations"])
    return (f"<div class=card><h3>user {_e(user['user_id'])} <span class=meta>({user['length']} interactions; "
            f"the last {len(user['history'])} shown, oldest first)</span></h3>"
            f"<p><b>History coloured by intention</b> (colour: the interest slot k with the largest P(k|t); "
            f"opacity: that probability)</p><div>{''.join(chips)}</div>"
            f"<p><b>Activated concepts</b></p><table style='width:auto'><tr><th>slot</th><th>concept</th>"
            f"<th>gate</th><th>aggregation e</th><th>recs</th></tr>{slots}</table>"
            f"<p><b>Recommendations grouped by the interest behind them</b> (the interest whose vector φ_k "
            f"scores the item highest)</p><div class=groups>{groups}</div>"
            f"{_img(figures, 'user_' + str(user['user']), 'intention heatmap')}</div>")


def render_html(doc: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The report as one HTML string, figures embedded as base64 PNGs."""
    ds = doc["dataset"]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>sinerec explain: {_e(ds['name'])}"
             f"</title><style>{_CSS}</style></head><body><main>",
             f"<h1>Looking inside {_e(doc['model'])} on {_e(ds['name'])}</h1>"
             f"<p class=meta>run {_e(doc['run'])} · {ds['n_users']:,} users · {ds['n_items']:,} items · "
             f"{ds['n_interactions']:,} interactions · dataset fingerprint {_e(ds['fingerprint'])}</p>"]
    if doc.get("note"):
        parts.append(f"<p class=warn>{_e(doc['note'])}</p>")
    parts.append("<h2>Training</h2>")
    parts.append(_img(figures, "curves", "training curves") or "<p>No training log (log.jsonl) in this run.</p>")
    if "activation" in doc:
        act = doc["activation"]
        parts.append("<h2>Concept pool health</h2>")
        parts.extend(f"<p class=warn>⚠ {_e(w)}</p>" for w in doc["warnings"])
        if not doc["warnings"]:
            parts.append("<p class=ok>No sign of collapse.</p>")
        uniform = 1 / act["num_interests"]
        parts.append(f"<p>{act['ever_activated']} of {act['num_concepts']} concepts are activated by at least one "
                     f"of {act['n_users']:,} users (K = {act['num_interests']} per user); effective number of "
                     f"concepts (exp of the entropy of activation shares): {act['effective_concepts']}.</p>")
        parts.append(f"<p>How peaked the interests are (1 = one-hot, {uniform:.2f} = uniform over K): mean over "
                     f"users of max<sub>k</sub> e<sub>k</sub> {act['mean_aggregation_peak']}; mean over history "
                     f"items of max<sub>k</sub> P(k|t) {act['mean_intention_peak']}.</p>")
        parts.append(_img(figures, "concepts", "concept activation"))
        parts.append(_img(figures, "prototypes", "prototype similarity"))
        parts.append("<h2>Do the concepts mean something? NMI against the dataset's categories</h2>")
        parts.append(_nmi_section(doc.get("nmi")))
        parts.append(_img(figures, "nmi", "NMI against random"))
        parts.append(_img(figures, "concept_categories", "categories per concept"))
        parts.append("<h2>Concepts</h2>" + _concepts_section(doc["concepts"]))
        parts.append("<h2>A sample of users</h2>")
        parts.extend(_user_section(u, figures) for u in doc["users"])
    parts.append("</main></body></html>")
    return "\n".join(p for p in parts if p)
