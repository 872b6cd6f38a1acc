"""What ``sinerec benchmark`` reports: per-model mean and spread over seeds, as JSON, CSV, Markdown and a chart.

Metrics stay fractions in ``results.json`` and ``results.csv`` (as in every ``metrics.json``) and are shown
in percent in the tables. The spread is the sample standard deviation over seeds (n - 1 in the denominator;
0 with one seed).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import statistics
from pathlib import Path
from typing import Any

from sinerec.benchmark.runner import HISTORY_RANKED
from sinerec.config import Config
from sinerec.errors import ConfigError
from sinerec.pipeline import Prepared
from sinerec.runs import dataset_summary, machine_summary
from sinerec.storage import atomic_write_bytes, atomic_write_text, write_json

#: Metric families shown in the tables, per protocol (Recall equals HR with one target, so not under loo).
TABLE_FAMILIES = {"loo": ("HR", "NDCG"), "comirec": ("HR", "Recall", "NDCG")}
TABLE_KS = (10, 20, 50)
#: Bars of the chart, per protocol (the SINE paper's @10/@50; ComiRec's @20/@50).
CHART_METRICS = {"loo": ("HR@10", "NDCG@10", "HR@50", "NDCG@50"),
                 "comirec": ("Recall@20", "NDCG@20", "Recall@50", "NDCG@50")}
#: The model every other one is compared with, when it is in the benchmark.
REFERENCE = "sine"


# ----------------------------------------------------------------------------------------- statistics
def mean_std(values: list[float | None]) -> dict[str, float] | None:
    """{"mean", "std"} of ``values`` (sample std, 0 for one value); None when any value is None or none given."""
    if not values or any(v is None for v in values):
        return None
    clean = [float(v) for v in values if v is not None]
    return {"mean": statistics.fmean(clean), "std": statistics.stdev(clean) if len(clean) > 1 else 0.0}


def summarise_model(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate the finished runs (records) of one model over its seeds."""
    out: dict[str, Any] = {"n_seeds": len(records), "seeds": [r["seed"] for r in records]}
    for part in ("test", "valid"):
        out[part] = {m: mean_std([r[part][m] for r in records]) for m in records[0][part]}
    ranked = [r[HISTORY_RANKED] for r in records if HISTORY_RANKED in r]
    if ranked:  # runs recorded before records held it have none: the count says how many seeds do
        out[HISTORY_RANKED] = {m: mean_std([r[m] for r in ranked]) for m in ranked[0]} | {"n_seeds": len(ranked)}
    for key in ("epochs", "best_epoch", "train_seconds", "seconds_per_epoch", "examples_per_second"):
        out[key] = mean_std([r[key] for r in records])
    for key in ("peak_rss_bytes", "peak_gpu_bytes"):
        values = [int(r[key]) for r in records if r.get(key) is not None]
        out[key] = max(values) if values else None
    out["n_parameters"] = records[0]["n_parameters"]
    return out


def check_sort_metric(sort_by: str, config: Config) -> None:
    name, _, k = sort_by.partition("@")
    if name not in config.eval.metrics or not k.isdigit() or int(k) not in config.eval.ks:
        raise ConfigError(f"benchmark: sort_by {sort_by!r} is not a computed metric "
                          f"({', '.join(config.eval.metrics)} at {', '.join(map(str, config.eval.ks))})")


# ----------------------------------------------------------------------------------------- documents
def machine() -> dict[str, Any]:
    """machine_summary() plus the CPU model, total memory and the GPU ("none" without CUDA)."""
    info = machine_summary()
    info["gpu"] = info.pop("cuda") or "none"
    for path, key, label in (("/proc/cpuinfo", "model name", "cpu_model"), ("/proc/meminfo", "MemTotal", "memory")):
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    value = line.split(":", 1)[1].strip()
                    info[label] = f"{int(value.split()[0]) / 2**20:.1f} GiB" if value.endswith("kB") else value
                    break
        except OSError:  # not Linux
            pass
    return info


def header(models: list[str], seeds: list[int], prepared: Prepared, configs: dict[str, Config],
           command: str | None, sort_by: str, isolate: bool, jobs: int) -> dict[str, Any]:
    """Everything about a benchmark except its results: command, date, machine, data, settings."""
    settings = {}
    for name, config in configs.items():
        d = config.to_dict()
        d["train"].pop("seed")
        settings[name] = {"file": f"sinerec/configs/{name}.toml", "resolved": d}
    first = configs[models[0]]
    return {
        "command": command,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "dataset": dataset_summary(prepared.data),
        "protocol": prepared.split.summary(),
        "models": models, "seeds": seeds, "sort_by": sort_by, "monitor": first.train.monitor,
        "isolation": "one process per run" if isolate else "in-process", "jobs": jobs,
        "units": "metrics are fractions; train_seconds excludes validation; examples_per_second is the median "
                 "over a run's epochs; std is the sample standard deviation over seeds (0 with one seed)",
        "peak_memory": ("peak resident set (VmHWM) of each run's own process: interpreter, torch, data, model, "
                        "optimiser and evaluation" if isolate else
                        "peak resident set of the benchmark process during the run (reset before each run)"),
        "settings": settings,
    }


def document(head: dict[str, Any], records: dict[str, dict[str, Any]], specs: list[Any],
             sort_by: str) -> dict[str, Any]:
    """results.json: the header, per-model summaries ranked by test ``sort_by``, every run, failures."""
    done = [r for r in records.values() if r["status"] == "done"]
    summary = {}
    for model in head["models"]:
        runs = sorted((r for r in done if r["model"] == model), key=lambda r: r["seed"])
        if runs:
            summary[model] = summarise_model(runs)
    ranking = sorted(summary, key=lambda m: -summary[m]["test"][sort_by]["mean"])
    names = {s.run_dir.name for s in specs}
    doc = {**head, "ranking": ranking, "summary": summary,
           "runs": sorted(done, key=lambda r: (r["seed"], head["models"].index(r["model"]))),
           "failed": [r for r in records.values() if r["status"] != "done"],
           "pending": sorted(names - set(records))}
    doc["versus"] = versus(doc)
    # the training time of every finished run, all its sittings' epochs (a run resumed across sittings counts
    # the epochs of each): what the table cost, also when no single invocation ran it from start to end; a run
    # copied from another benchmark (``reused_from``) cost nothing here and is counted apart
    trained = [r for r in done if not r.get("reused_from")]
    doc["compute"] = {"runs": len(trained), "reused": len(done) - len(trained),
                      "train_seconds": round(sum(r.get("train_seconds") or 0.0 for r in trained), 1)}
    return doc


def versus(doc: dict[str, Any], reference: str = REFERENCE) -> dict[str, Any] | None:
    """Every other model against ``reference`` on the table's test metrics; None without it or without others.

    ``relative[model][metric]`` is (model mean - reference mean) / reference mean (None when the reference's
    mean is 0); ``beaten_by[metric]`` lists, best first, the models whose mean is above the reference's, each
    with that relative gain and whether the gap is within the seeds' spread (smaller than the sum of the two
    standard deviations: the seeds cannot tell them apart).
    """
    summary = doc["summary"]
    if reference not in summary or len(summary) < 2:
        return None
    ref = summary[reference]["test"]
    metrics = table_metrics(doc)
    others = [n for n in doc["ranking"] if n != reference]
    relative = {n: {m: (summary[n]["test"][m]["mean"] - ref[m]["mean"]) / ref[m]["mean"] if ref[m]["mean"] else None
                    for m in metrics} for n in others}
    beaten_by = {}
    for m in metrics:
        better = sorted((n for n in others if summary[n]["test"][m]["mean"] > ref[m]["mean"]),
                        key=lambda n: -summary[n]["test"][m]["mean"])
        beaten_by[m] = [{"model": n, "relative": relative[n][m],
                         "within_spread": summary[n]["test"][m]["mean"] - ref[m]["mean"]
                         < summary[n]["test"][m]["std"] + ref[m]["std"]} for n in better]
    return {"reference": reference, "metrics": metrics, "relative": relative, "beaten_by": beaten_by}


def _versus_column(doc: dict[str, Any]) -> dict[str, Any] | None:
    """``doc["versus"]`` when the table gets a "SORT_BY vs REFERENCE" column (the sort metric is compared)."""
    v = doc.get("versus")
    return v if v and doc["sort_by"] in v["metrics"] else None


def versus_text(doc: dict[str, Any]) -> str | None:
    """One sentence: on which metrics the reference model loses, to whom and by how much."""
    v = doc.get("versus")
    if not v:
        return None
    ref = v["reference"]

    def gain(b: dict[str, Any]) -> str:
        pct = "" if b["relative"] is None else f" {100 * b['relative']:+.1f}%"
        return f"{b['model']}{pct}" + (" (within the seeds' spread)" if b["within_spread"] else "")

    lost = [f"{m} to {', '.join(gain(b) for b in v['beaten_by'][m])}" for m in v["metrics"] if v["beaten_by"][m]]
    kept = [m for m in v["metrics"] if not v["beaten_by"][m]]
    if not lost:
        return f"{ref} has the best mean of every metric in the table."
    text = f"Where {ref} loses (test means, relative to {ref}'s): " + "; ".join(lost) + "."
    if kept:
        text += f" {ref} has the best mean of {', '.join(kept)}."
    return text


# ----------------------------------------------------------------------------------------- formatting
def at_ceiling(doc: dict[str, Any]) -> dict[str, list[int]]:
    """Per model, the seeds whose run trained every epoch it was allowed (``train.epochs``) without early
    stopping firing (its last ``train.patience`` epochs include its best): a run that may still have been
    improving, which a table of converged models must not count as converged."""
    out: dict[str, list[int]] = {}
    for r in doc["runs"]:
        train = doc.get("settings", {}).get(r["model"], {}).get("resolved", {}).get("train", {})
        cap, patience, epochs = train.get("epochs"), train.get("patience"), r.get("epochs") or 0
        if cap and epochs >= cap and (patience is None or epochs - (r.get("best_epoch") or 0) < patience):
            out.setdefault(r["model"], []).append(r["seed"])
    return {m: sorted(seeds) for m, seeds in out.items()}


def ceiling_note(hit: dict[str, list[int]]) -> str | None:
    """The line that explains the table's ``†`` (``hit``: what ``at_ceiling`` gives), or None when no run
    reached the ceiling."""
    if not hit:
        return None
    runs = "; ".join(f"{m} (seed {', '.join(map(str, seeds))})" for m, seeds in hit.items())
    return (f"† reached its epoch ceiling with the best validation epoch among its last train.patience epochs, "
            f"so early stopping did not end it and it may still have been improving: {runs}.")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{seconds:.1f}s"


def format_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def table_metrics(doc: dict[str, Any]) -> list[str]:
    """The metric columns of the tables: families of the protocol at @10/20/50, those computed."""
    computed = {m for s in doc["summary"].values() for m in s["test"]}
    fams = TABLE_FAMILIES.get(doc["protocol"]["name"], ("HR", "NDCG"))
    return [f"{f}@{k}" for f in fams for k in TABLE_KS if f"{f}@{k}" in computed]


def table_rows(doc: dict[str, Any], markdown: bool,
               ceiling: dict[str, list[int]]) -> tuple[list[str], list[list[str]]]:
    """Column names and rows (ranked, the best mean per metric marked: bold in Markdown, ``*`` in text; a
    model in ``ceiling``, what ``at_ceiling`` gives, with ``†`` by its epochs)."""
    metrics = table_metrics(doc)
    best = {m: max(doc["summary"][n]["test"][m]["mean"] for n in doc["ranking"]) for m in metrics} \
        if doc["ranking"] else {}
    v = _versus_column(doc)
    sort_key = doc["sort_by"]
    columns = ["#", "model", *metrics, *([f"{sort_key} vs {v['reference']}"] if v else []),
               "epochs (best)", "train time", "ex/s", "peak memory"]
    rows = []
    for rank, name in enumerate(doc["ranking"], 1):
        s = doc["summary"][name]
        cells = [str(rank), name]
        for m in metrics:
            mean, std = 100 * s["test"][m]["mean"], 100 * s["test"][m]["std"]
            text = f"{mean:.2f}"
            if s["test"][m]["mean"] == best[m]:
                text = f"**{text}**" if markdown else f"{text}*"
            cells.append(f"{text} ± {std:.2f}" if s["n_seeds"] > 1 else text)  # no spread from one seed
        if v:
            rel = v["relative"].get(name, {}).get(sort_key)
            cells.append("-" if name == v["reference"] or rel is None else f"{100 * rel:+.1f}%")
        epochs = "-" if not s["epochs"] or not s["epochs"]["mean"] else \
            f"{s['epochs']['mean']:.3g} ({s['best_epoch']['mean']:.3g})" + ("†" if name in ceiling else "")
        rate = s["examples_per_second"]
        cells += [epochs, format_seconds(s["train_seconds"]["mean"]) if s["epochs"] and s["epochs"]["mean"] else "-",
                  f"{rate['mean']:,.0f}" if rate else "-", format_bytes(s["peak_rss_bytes"])]
        rows.append(cells)
    return columns, rows


def format_table(doc: dict[str, Any], markdown: bool) -> str:
    """The results table: Markdown (for results.md) or aligned plain text (for the terminal), with a title."""
    ceiling = at_ceiling(doc)
    columns, rows = table_rows(doc, markdown, ceiling)
    n_seeds = len(doc["seeds"])
    title = (f"{doc['dataset']['name']}, protocol {doc['protocol']['name']}: test metrics in %, mean ± std over "
             f"{n_seeds} seed{'s' if n_seeds > 1 else ''}, sorted by {doc['sort_by']}")
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---:" if i != 1 else "---"
                                                                  for i in range(len(columns))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]

        def line(cells: list[str]) -> str:  # the model name left-aligned, numbers right-aligned
            pairs = enumerate(zip(cells, widths, strict=True))
            return "  ".join(x.ljust(w) if i == 1 else x.rjust(w) for i, (x, w) in pairs)

        lines = [title, line(columns), *(line(r) for r in rows)]
        lines.append("* best mean of the column")
        if (text := versus_text(doc)) is not None:
            lines.append(text)
    after = [note for note in [ceiling_note(ceiling)] if note]
    after += [f"FAILED: {r['model']} seed {r['seed']} ({r['error']}; log {r['log']})" for r in doc["failed"]]
    if doc["pending"]:
        after.append(f"not run yet: {', '.join(doc['pending'])}")
    # in Markdown a line right under a table would be read as one more row
    return "\n".join(lines + ([""] if markdown and after else []) + after)


def history_ranked_table(doc: dict[str, Any]) -> str | None:
    """The table's models scored again with the history ranked (``HISTORY_RANKED`` of their records), in the
    table's order: Markdown, or None when no run recorded it."""
    models = [m for m in doc["ranking"] if HISTORY_RANKED in doc["summary"][m]]
    if not models:
        return None
    first = doc["summary"][models[0]][HISTORY_RANKED]
    metrics = [m for m in first if m != "n_seeds"]
    lines = ["| model | seeds | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for model in models:
        s = doc["summary"][model][HISTORY_RANKED]
        lines.append(f"| {model} | {s['n_seeds']} | "
                     + " | ".join(f"{100 * s[m]['mean']:.2f} ± {100 * s[m]['std']:.2f}" for m in metrics) + " |")
    return "\n".join(lines)


def markdown_document(doc: dict[str, Any]) -> str:
    """results.md: title, table, and how it was made (command, date, machine, data, split, seeds)."""
    d, p, m = doc["dataset"], doc["protocol"], doc["machine"]
    seeds = ", ".join(map(str, doc["seeds"]))
    notes = [
        f"Test metrics in %, mean ± sample standard deviation over seeds {seeds}; each run's test metrics come "
        f"from its best validation {doc['monitor']} epoch. Sorted by test {doc['sort_by']}; the best mean of each "
        "column is in bold.",
        *([f"{doc['sort_by']} vs {v['reference']}: the relative difference of the model's mean from "
           f"{v['reference']}'s (positive: better than {v['reference']})."] if (v := _versus_column(doc)) else []),
        f"Full ranking over all {d['n_items']:,} items; items of the user's history excluded: "
        f"{'yes' if p['exclude_history'] else 'no'}.",
    ]
    if p["name"] == "comirec":
        notes.append("NDCG divides by the ideal DCG of min(|targets|, K) hits (ComiRec's code divides by the number "
                     "of hits, which overstates NDCG).")
    notes.append("epochs (best): epochs trained and the best validation epoch, means over seeds. train time: "
                 "training per run without validation, mean. ex/s: training examples per second, the median over "
                 f"a run's epochs, mean over seeds. peak memory: {doc['peak_memory']}, max over seeds.")
    versus_line = versus_text(doc)
    ranked = history_ranked_table(doc)
    ranked_part = ["## Scored as the official code does (history ranked)", "",
                   "The same weights on the same test users with the items of each user's history left among the "
                   "candidates, as the official code of SINE and of its baselines ranks them (the papers' own "
                   "numbers are of this kind); mean ± sample standard deviation over the seeds counted.", "",
                   ranked, ""] if ranked else []
    lines = [f"# Benchmark: {d['name']}, {p['name']}", "", *notes, "", format_table(doc, markdown=True), "",
             *([versus_line, ""] if versus_line else []), *ranked_part,
             "## How it was made", "",
             f"- command: `{doc['command']}`" if doc["command"] else "- command: (library call)",
             f"- date: {doc['date']}" + (f"; wall time {format_seconds(doc['wall_seconds'])}"
                                         if "wall_seconds" in doc else ""),
             *([f"- compute: {c['runs']} finished runs trained for {format_seconds(c['train_seconds'])} in all "
                "(every sitting's epochs; validation and testing not counted)"
                + (f"; {c['reused']} more copied from another benchmark with the same settings (`reused_from`)"
                   if c.get("reused") else "")] if (c := doc.get("compute")) else []),
             f"- machine: {m.get('cpus')} CPUs ({m.get('cpu_model', 'unknown model')}), {m.get('memory', '?')} "
             f"memory, GPU: {m['gpu']}; torch {m['torch']}, Python {m['python']}, sinerec {m['sinerec']}; "
             f"{doc['isolation']}, {doc['jobs']} at a time",
             f"- dataset: {d['name']}, {d['n_users']:,} users, {d['n_items']:,} items, "
             f"{d['n_interactions']:,} interactions, fingerprint `{d['fingerprint']}`; steps: "
             f"`{json.dumps(d.get('steps', {}))}`",
             f"- split: {p['name']}, fingerprint `{p['fingerprint']}`, {p['n_train_examples']:,} training examples, "
             f"{p['n_valid_users']:,} validation and {p['n_test_users']:,} test users",
             f"- seeds: {seeds}",
             "- settings: each model's shipped file (" + ", ".join(f"`{s['file']}`" for s in doc["settings"].values())
             + ") plus the command's options; the resolved settings are in results.json"]
    return "\n".join(lines) + "\n"


def csv_text(doc: dict[str, Any]) -> str:
    """results.csv: one row per model (ranked); metric columns are fractions, ``test_HR@10_mean`` etc."""
    metrics = sorted({m for s in doc["summary"].values() for m in s["test"]},
                     key=lambda x: (x.split("@")[0], int(x.split("@")[1])))
    cols = ["rank", "model", "n_seeds"] + [f"test_{m}_{s}" for m in metrics for s in ("mean", "std")] + \
        ["epochs_mean", "best_epoch_mean", "train_seconds_mean", "train_seconds_std", "examples_per_second_mean",
         "peak_rss_bytes_max", "peak_gpu_bytes_max", "n_parameters"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for rank, name in enumerate(doc["ranking"], 1):
        s = doc["summary"][name]
        row: list[Any] = [rank, name, s["n_seeds"]]
        row += [s["test"][m][k] for m in metrics for k in ("mean", "std")]
        for key, sub in (("epochs", "mean"), ("best_epoch", "mean"), ("train_seconds", "mean"),
                         ("train_seconds", "std"), ("examples_per_second", "mean")):
            row.append(s[key][sub] if s[key] else "")
        row += [s["peak_rss_bytes"] or "", s["peak_gpu_bytes"] or "", s["n_parameters"]]
        w.writerow(row)
    return buf.getvalue()


def write_tables(out_dir: Path, doc: dict[str, Any]) -> list[Path]:
    """results.json, results.csv and results.md into ``out_dir`` (atomically); returns their paths."""
    paths = [out_dir / "results.json", out_dir / "results.csv", out_dir / "results.md"]
    write_json(paths[0], doc)
    atomic_write_text(paths[1], csv_text(doc))
    atomic_write_text(paths[2], markdown_document(doc))
    return paths


def write_chart(path: Path, doc: dict[str, Any]) -> Path | None:
    """Grouped bars (one group per model, ranked; one bar per metric) with std error bars; None without
    matplotlib. Uses the Agg canvas directly, so the caller's matplotlib backend is untouched."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    models = doc["ranking"]
    metrics = [m for m in CHART_METRICS.get(doc["protocol"]["name"], CHART_METRICS["loo"])
               if models and m in doc["summary"][models[0]]["test"]]
    fig = Figure(figsize=(max(6.0, 1.1 * len(models) + 2), 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(len(metrics), 1)
    for j, metric in enumerate(metrics):
        means = [100 * doc["summary"][n]["test"][metric]["mean"] for n in models]
        stds = [100 * doc["summary"][n]["test"][metric]["std"] for n in models]
        xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(models))]
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=metric)
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax.set_ylabel("test metric (%)")
    n = len(doc["seeds"])
    ax.set_title(f"{doc['dataset']['name']} ({doc['protocol']['name']}): mean ± std over {n} seed{'s' * (n > 1)}")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(ncols=len(metrics), fontsize="small", loc="outside lower center")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())
    return path
