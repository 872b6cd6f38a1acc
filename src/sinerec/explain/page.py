"""The self-contained HTML page of ``sinerec explain``: figures embedded as base64 PNGs.

It only renders what :func:`sinerec.explain.explain_run` computed; the numbers live there.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from sinerec.explain.figures import slot_colour

__all__ = ["render_html"]

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
        if "interests_expressed" in act:
            parts.append(_usage_section(act))
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


def _usage_section(act: dict[str, Any]) -> str:
    """Are the K interests used? How many each history expresses, and the peaks of e and P(k|t) by user."""
    expressed = act["interests_expressed"]
    total = max(sum(expressed), 1)
    head = "".join(f"<th>{n}</th>" for n in range(len(expressed)))
    cells = "".join(f"<td>{100 * c / total:.1f} %</td>" for c in expressed)
    rows = [f"<table><tr><th>interests expressed by the history (argmax<sub>k</sub> P(k|t) of some item)</th>"
            f"{head}</tr><tr><td>share of users</td>{cells}</tr></table>"]
    for key, label in (("aggregation_peak_histogram", "max<sub>k</sub> e<sub>k</sub>"),
                       ("intention_peak_histogram", "mean max<sub>k</sub> P(k|t)")):
        hist = act[key]
        edges, counts = hist["edges"], hist["counts"]
        n = max(sum(counts), 1)
        bins = "".join(f"<th>{lo:.2f}-{hi:.2f}</th>" for lo, hi in zip(edges, edges[1:], strict=False))
        shares = "".join(f"<td>{100 * c / n:.1f} %</td>" for c in counts)
        rows.append(f"<table><tr><th>{label} per user</th>{bins}</tr><tr><td>share of users</td>{shares}"
                    "</tr></table>")
    return "\n".join(rows)
