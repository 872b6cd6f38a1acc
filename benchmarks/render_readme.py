"""Regenerate the results tables of README.md and benchmarks/baselines.md from the committed results files.

Every table sits between ``<!-- table:NAME -->`` and ``<!-- /table -->`` in those files and is produced here
from files under benchmarks/ (nothing is copied by hand). Means ± the sample standard deviation (ddof 1)
over seeds, in %, two decimals; the best mean of each metric column in bold.

    python benchmarks/render_readme.py            # rewrite the tables in place
    python benchmarks/render_readme.py --check    # exit 1 and print a diff when a file is out of date
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
#: The documents whose tables are generated.
DOCUMENTS = (ROOT / "README.md", BENCH / "baselines.md", BENCH / "taobao-scale" / "stages.md")
MARKER = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)

#: The SINE paper's Table 1 (ML-1M): SINE and SASRec, in %.
PAPER_SINE = {"HR@10": 16.34, "NDCG@10": 7.06, "HR@50": 45.79, "NDCG@50": 13.50}
PAPER_SASREC = {"HR@10": 17.34, "NDCG@10": 7.84, "HR@50": 46.01, "NDCG@50": 13.53}
#: HR@10 on ML-1M in the SINE paper's Table 1, for the baselines it reports.
PAPER_HR10 = {"gru4rec": 14.61, "sasrec": 17.34, "sine": 16.34, "caser": 15.44, "mind": 15.62}
FOUR = ("HR@10", "NDCG@10", "HR@50", "NDCG@50")


def load(relative: str) -> dict[str, Any]:
    return json.loads((BENCH / relative).read_text())


def row(cells: list[str]) -> str:
    return ("| " + " | ".join(cells) + " |").replace("|  |", "| |")


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def cell(mean: float, sd: float | None, bold: bool = False) -> str:
    text = f"{mean:.2f}"
    text = f"**{text}**" if bold else text
    return text if sd is None else f"{text} ± {sd:.2f}"


def sine_ml1m() -> str:
    """The headline table: the paper's rows, SINE's variants (benchmarks/sine-ml1m), SINE scored with the
    history ranked (the default's runs: sine-ml1m/history.json; the paper variant's: the baselines benchmark)
    and MostPop (benchmarks/baselines-ml1m-loo)."""
    doc = load("sine-ml1m/results.json")
    mostpop = load("baselines-ml1m-loo/results.json")["summary"]["mostpop"]["test"]
    lines = [row(["", *FOUR]), "|---|---|---|---|---|",
             row(["SINE in the paper (Table 1)", *(f"{PAPER_SINE[m]:.2f}" for m in FOUR)]),
             row(["SASRec in the paper (Table 1)", *(f"{PAPER_SASREC[m]:.2f}" for m in FOUR)])]
    labels = {"paper-cosine": 'sinerec SINE, `variant = "paper-cosine"` (default)',
              "paper": 'sinerec SINE, `variant = "paper"` (the equations as printed)',
              "official": 'sinerec SINE, `variant = "official"`'}
    labels = {v: label for v, label in labels.items() if any(r["variant"] == v for r in doc["rows"])}
    stats = {v: {m: mean_sd([100 * r["test"][m] for r in doc["rows"] if r["variant"] == v]) for m in FOUR}
             for v in labels}
    best = {m: max(stats[v][m][0] for v in labels) for m in FOUR}
    for v, label in labels.items():
        lines.append(row([label, *(cell(*stats[v][m], bold=stats[v][m][0] == best[m]) for m in FOUR)]))
    ranked = []
    if (BENCH / "sine-ml1m/history.json").exists():
        ranked.append(('sinerec SINE, `"paper-cosine"`, history items ranked as in the official code¹',
                       load("sine-ml1m/history.json")["summary"]["sine"]["included"]))
    ranked.append(('sinerec SINE, `"paper"`, history items ranked as in the official code (batch 128)¹',
                   load("baselines-ml1m-loo/history.json")["summary"]["sine"]["included"]))
    for label, history in ranked:
        lines.append(row([label, *(cell(100 * history[m]["mean"], 100 * history[m]["std"]) for m in FOUR)]))
    lines.append(row(["MostPop (same split)", *(cell(100 * mostpop[m]["mean"], None) for m in FOUR)]))
    return "\n".join(lines)


def baselines(folder: str, metrics: tuple[str, ...], paper: bool = False) -> Callable[[], str]:
    """A benchmark's table: one row per model in its ranking, ``metrics`` as mean ± sd, the paper's HR@10
    (``paper``), the sort metric relative to SINE and the mean training time per run."""
    def render() -> str:
        from sinerec.benchmark.report import format_seconds

        doc = load(f"{folder}/results.json")
        summary, sort_by = doc["summary"], doc["sort_by"]
        relative = doc["versus"]["relative"]
        best = {m: max(summary[n]["test"][m]["mean"] for n in doc["ranking"]) for m in metrics}
        head = ["model", *metrics, *(["paper HR@10"] if paper else []), f"{sort_by} vs SINE", "train time / run"]
        lines = [row(head), "|---|" + "---:|" * (len(head) - 1)]
        for name in doc["ranking"]:
            s = summary[name]
            cells = [name, *(cell(100 * s["test"][m]["mean"], 100 * s["test"][m]["std"],
                                  bold=s["test"][m]["mean"] == best[m]) for m in metrics)]
            if paper:
                cells.append(f"{PAPER_HR10[name]:.2f}" if name in PAPER_HR10 else "-")
            rel = relative.get(name, {}).get(sort_by)
            cells.append("-" if rel is None else f"{100 * rel:+.1f}%")
            trained = s["epochs"] and s["epochs"]["mean"]
            cells.append(format_seconds(s["train_seconds"]["mean"]) if trained else "-")
            lines.append(row(cells))
        return "\n".join(lines)
    return render


def mostpop_mls() -> str:
    """MostPop on the built-in ml-latest-small (benchmarks/ml-latest-small/mostpop-metrics.json)."""
    test = load("ml-latest-small/mostpop-metrics.json")["test"]
    return "\n".join([row(["", *FOUR]), "|---|---|---|---|---|",
                      row(["`sinerec train --model mostpop`", *(cell(100 * test[m], None) for m in FOUR)])])


#: The converged tables (benchmarks/converged/run.sh), in the order the script runs them: folder, title, metrics.
CONVERGED = (
    ("ml1m-loo", "ML-1M, `loo`, history excluded", FOUR),
    ("beauty-loo", "Amazon Beauty, `loo`, history excluded", FOUR),
    ("beauty-comirec", "Amazon Beauty, ComiRec's protocol", ("Recall@20", "NDCG@20", "Recall@50", "NDCG@50", "HR@50")),
    ("ml1m-loo-d64", "ML-1M, `loo`, every neural model at D = 64", FOUR),
    ("beauty-loo-d64", "Amazon Beauty, `loo`, every neural model at D = 64", FOUR),
)


def _history_ranked_rows(doc: dict[str, Any], paper: bool) -> list[str]:
    """The models the SINE paper lists, scored with the history ranked as its official code does (each run's
    ``test_history_ranked``), beside the paper's Table 1 where ``paper`` (ML-1M)."""
    listed = [m for m in doc["ranking"] if m in PAPER_HR10 and "test_history_ranked" in doc["summary"][m]]
    if not listed:
        return []
    head = ["model", "seeds", *FOUR, *(["paper (Table 1)"] if paper else [])]
    lines = ["", "Scored as the official code does (history ranked), the models the paper lists:", "", row(head),
             "|---|" + "---:|" * (len(head) - 1)]
    for name in listed:
        s = doc["summary"][name]["test_history_ranked"]
        one = s["n_seeds"] == 1
        cells = [name, str(s["n_seeds"]), *(cell(100 * s[m]["mean"], None if one else 100 * s[m]["std"]) for m in FOUR)]
        if paper:
            full = {"sine": PAPER_SINE, "sasrec": PAPER_SASREC}.get(name)
            cells.append(" / ".join(f"{full[m]:.2f}" for m in FOUR) if full else f"HR@10 {PAPER_HR10[name]:.2f}")
        lines.append(row(cells))
    return lines


def converged() -> str:
    """The converged tables as far as they have run: per table, one row per model with the seeds finished so
    far, the epochs trained (best), the sort metric against SINE with whether the gap is beyond the seeds'
    spread, and what has not finished yet (benchmarks/converged/FOLDER/results.json)."""
    from sinerec.benchmark.report import at_ceiling, ceiling_note, format_seconds

    parts = []
    for folder, title, metrics in CONVERGED:
        path = BENCH / "converged" / folder / "results.json"
        if not path.exists():
            parts.append(f"**{title}**: not started yet.")
            continue
        doc = json.loads(path.read_text())
        summary, sort_by, versus = doc["summary"], doc["sort_by"], doc.get("versus") or {}
        spread = {b["model"]: b["within_spread"] for b in versus.get("beaten_by", {}).get(sort_by, [])}
        best = {m: max(summary[n]["test"][m]["mean"] for n in doc["ranking"]) for m in metrics}
        ceiling = at_ceiling(doc)
        head = ["model", "seeds", *metrics, "epochs (best)", f"{sort_by} vs SINE", "train time / run"]
        lines = [f"**{title}** (`benchmarks/converged/{folder}/`):", "", row(head),
                 "|---|" + "---:|" * (len(head) - 1)]
        for name in doc["ranking"]:
            s = summary[name]
            one = s["n_seeds"] == 1  # no spread to show yet
            cells = [name, str(s["n_seeds"]), *(cell(100 * s["test"][m]["mean"],
                                                    None if one else 100 * s["test"][m]["std"],
                                                    bold=s["test"][m]["mean"] == best[m]) for m in metrics)]
            trained = s["epochs"] and s["epochs"]["mean"]
            cells.append(f"{s['epochs']['mean']:.0f} ({s['best_epoch']['mean']:.0f})"
                         + ("†" if name in ceiling else "") if trained else "-")
            rel = (versus.get("relative") or {}).get(name, {}).get(sort_by)
            note = " (within spread)" if spread.get(name) else ""
            cells.append("-" if rel is None else f"{100 * rel:+.1f}%{note}")
            cells.append(format_seconds(s["train_seconds"]["mean"]) if trained else "-")
            lines.append(row(cells))
        if explained := ceiling_note(ceiling):
            lines += ["", explained]
        lines += _history_ranked_rows(doc, paper=folder.startswith("ml1m"))
        copies = [Path(r["reused_from"]).parent.parent.name for r in doc["runs"] if r.get("reused_from")]
        total = sum(r.get("train_seconds") or 0.0 for r in doc["runs"] if not r.get("reused_from"))
        n_runs = len(doc["runs"]) + len(doc["pending"]) + len(doc["failed"])
        seeds_of: dict[str, list[str]] = {}
        for run_name in doc["pending"]:  # "comirec-sa-seed2" -> comirec-sa: 2
            model, _, seed = run_name.rpartition("-seed")
            seeds_of.setdefault(model, []).append(seed)
        waiting = "; ".join(f"{m} (seed {', '.join(v)})" for m, v in seeds_of.items()) or "none"
        copied = (f" ({len(copies)} of them the same runs as in `{'`, `'.join(sorted(set(copies)))}`, copied)"
                  if copies else "")
        lines += ["", f"{len(doc['runs'])} of {n_runs} runs finished{copied}, trained for {format_seconds(total)} "
                  f"in all (every sitting's epochs); not finished yet: {waiting}."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


#: The configurations of benchmarks/taobao-scale/stages.py in the order they are shown (others follow by name).
STAGE_ORDER = ("10M-1M", "100M-4M", "taobao-sample")


def _stage_result(stage: str, r: dict[str, Any], doc: dict[str, Any]) -> str:
    """One stage's outcome in words, from what stages.py recorded (``doc``: the whole record of the log)."""
    settings = doc["settings"]
    if stage == "synth":
        return f"{r['file_gb']:.2f} GB CSV"
    if stage == "prepare":
        sm, split = r["summary"], r["summary"]["split"]
        return (f"{sm['n_users']:,} users, {sm['n_items']:,} items, {sm['n_interactions']:,} events; "
                f"{split['n_train_examples']:,} training examples; artifact {r['artifact_gb']:.2f} GB")
    if stage == "train":
        t, v, n = r["train"], r["valid"], r["evaluated"]["valid_queries"]
        cut = f" of {settings['max_steps']} steps" if settings.get("max_steps") else ""
        return (f"{t['epochs']} epoch(s){cut}, {t['examples_per_second']:,.0f} examples/s "
                f"({t['seconds']:,.0f} s training, {t.get('precision', 'float32')}); "
                f"valid Recall@50 {v['Recall@50']:.2f} %, NDCG@50 {v['NDCG@50']:.2f} % ({n:,} users)")
    if stage == "evaluate":
        test, n = r["result"]["test"], settings["eval_queries"]
        split = doc["stages"].get("prepare", {}).get("summary", {}).get("split", {})
        n = min(n, split.get("n_test_users", n))
        return f"test Recall@50 {100 * test['Recall@50']:.2f} %, NDCG@50 {100 * test['NDCG@50']:.2f} % ({n:,} users)"
    if stage == "export":
        return f"{r['export_gb']:.2f} GB of vectors"
    if stage == "index":
        rc = r.get("recall", {})
        probe = f", nprobe {r['settings']['nprobe']}" if "IVF" in r["settings"]["factory"] else ""
        return (f"`{r['settings']['factory']}`{probe}: recall@{rc.get('k')} "
                f"{rc.get('value', float('nan')):.3f} against exact ({rc.get('users', 0):,} users); "
                f"{r['index_gb']:.2f} GB")
    if stage == "serve":
        return (f"single requests (k 50): p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                f"{r['requests_per_s']:.0f}/s; startup {r['startup_seconds']:.1f} s")
    if stage == "nmi":
        n, by_count = r["result"]["nmi"], r["result"].get("nmi_by_min_count", {})
        parts = [f"all {n['n_items']:,} items: NMI {n['value']:.3f} against random {n['random_mean']:.3f}, "
                 f"{n['clusters_used']:,} of {r['result']['settings']['num_concepts']:,} concepts hold items"]
        parts += [f"items with >= {c} events ({v['n_items']:,}): {v['value']:.3f} against {v['random_mean']:.3f}"
                  for c, v in by_count.items()]
        return "; ".join(parts)
    return ""


def taobao_stages() -> str:
    """Every stage of benchmarks/taobao-scale/stages.py, one row each (stages/stages-LABEL.json)."""
    docs = {p.stem.removeprefix("stages-"): json.loads(p.read_text())
            for p in sorted((BENCH / "taobao-scale" / "stages").glob("stages-*.json"))}
    labels = [x for x in STAGE_ORDER if x in docs] + sorted(set(docs) - set(STAGE_ORDER))
    lines = [row(["log", "stage", "wall s", "peak RSS GiB", "load", "result"]), "|---|---|---|---|---|---|"]
    for label in labels:
        doc = docs[label]
        for stage, r in doc["stages"].items():
            if r.get("exit") != 0:
                continue
            lines.append(row([label, stage, f"{r['seconds']:,.1f}", f"{r['peak_rss_gb']:.2f}",
                              f"{r['load_before']:.1f}", _stage_result(stage, r, doc)]))
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {
    "sine-ml1m": sine_ml1m,
    "baselines-ml1m-loo": baselines("baselines-ml1m-loo", FOUR, paper=True),
    "baselines-beauty-loo": baselines("baselines-beauty-loo", FOUR),
    "baselines-beauty-comirec": baselines("baselines-beauty-comirec",
                                          ("Recall@20", "NDCG@20", "Recall@50", "NDCG@50", "HR@50")),
    "mostpop-ml-latest-small": mostpop_mls,
    "taobao-stages": taobao_stages,
    "converged": converged,
}


def render(text: str) -> str:
    """``text`` with every marked table regenerated; an unknown table name is an error."""
    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in TABLES:
            raise SystemExit(f"unknown table marker {name!r} (known: {', '.join(TABLES)})")
        return f"{match[1]}{TABLES[name]()}\n{match[4]}"
    return MARKER.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", type=Path, default=list(DOCUMENTS), help="documents (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 with a diff when out of date")
    args = p.parse_args(argv)
    stale = 0
    for path in args.files:
        old = path.read_text()
        new = render(old)
        if old == new:
            continue
        stale += 1
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       str(path), "generated"))
        else:
            path.write_text(new)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
