"""Reproduce the SINE paper's MovieLens-1M numbers (Table 1) under leave-one-out, full ranking.

Trains SINE with the paper's settings (D 128, T 20, K 4, L 50, lambda 0.5, tau 0.1, Adam 1e-3) for each
variant and seed, each run in its own process (``--jobs`` at a time, ``--threads`` torch threads each), and
writes ``results.json`` and ``results.md`` (mean and standard deviation over seeds of test HR@10, NDCG@10,
HR@50, NDCG@50; epochs, seconds per epoch, training examples per second) into ``--out``. Rows of variants
already in ``--out/results.json`` and not run this time are kept, with the command that produced them
(``earlier``), so a variant can be added without rerunning the others.

    python benchmarks/reproduce_sine_ml1m.py --data-dir ../shared/data/ml-1m --out benchmarks/sine-ml1m

Extra ``--set key=value`` settings are passed to every run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

PAPER = {"HR@10": 16.34, "NDCG@10": 7.06, "HR@50": 45.79, "NDCG@50": 13.50}
SASREC_PAPER_HR10 = 17.34
REPORTED = ("HR@10", "NDCG@10", "HR@50", "NDCG@50")


def run_one(args: argparse.Namespace, variant: str, seed: int) -> subprocess.Popen:
    run_dir = Path(args.runs) / f"sine-{variant}-seed{seed}"
    cmd = [sys.executable, "-m", "sinerec", "train", "--model", "sine", "--dataset", "ml-1m",
           "--data-dir", args.data_dir, "--protocol", "loo", "--seed", str(seed), "--threads", str(args.threads),
           "--out", str(run_dir), "--quiet", "--set", f"model_params.variant={variant}",
           "--set", f"train.batch_size={args.batch_size}", "--set", f"train.epochs={args.epochs}",
           "--set", f"train.patience={args.patience}"]
    for extra in args.set:
        cmd += ["--set", extra]
    if (run_dir / "metrics.json").exists():
        return subprocess.Popen(["true"])  # finished earlier: reuse it
    if (run_dir / "checkpoint.pt").exists():
        cmd = [c for c in cmd if c != "--quiet"] + ["--resume", "--quiet"]
    log = open(Path(args.runs) / f"sine-{variant}-seed{seed}.log", "a")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def summarise(args: argparse.Namespace) -> dict:
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            run_dir = Path(args.runs) / f"sine-{variant}-seed{seed}"
            doc = json.loads((run_dir / "metrics.json").read_text())
            log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
            rows.append({"variant": variant, "seed": seed, "test": doc["test"], "valid": doc["valid"],
                         "epochs": len(log), "best_epoch": doc["train"]["best_epoch"],
                         "seconds": doc["train"]["seconds"],
                         "seconds_per_epoch": statistics.median(r["seconds"] for r in log),
                         "examples_per_second": statistics.median(r["examples_per_second"] for r in log),
                         "dataset": doc["dataset"], "split": doc["protocol"]["fingerprint"],
                         "precision": doc["train"].get("precision", "float32")})  # older runs: float32 on a CPU
    if len({r["precision"] for r in rows}) > 1:  # a table of one precision: never mix reused runs silently
        raise SystemExit(f"{args.runs}: the runs trained in different precisions "
                         f"({sorted({(r['variant'], r['seed'], r['precision']) for r in rows})}); rerun some with "
                         "--set train.amp=off (float32) or train.amp=bf16 into another --runs folder")
    return {"rows": rows, "summary": summarise_rows(rows, args.variants)}


def summarise_rows(rows: list[dict], variants: list[str]) -> dict:
    """Per variant: (mean, sample standard deviation) over seeds of each reported metric in %, as every table
    of the project reports it (0 with one seed); medians of the epoch counts, times and rates."""
    summary = {}
    for variant in variants:
        rs = [r for r in rows if r["variant"] == variant]
        entry: dict = {}
        for part in ("test", "valid"):
            for key in REPORTED:
                values = [100 * r[part][key] for r in rs]
                entry[f"{part} {key}"] = (statistics.mean(values),
                                          statistics.stdev(values) if len(values) > 1 else 0.0)
        for key in ("epochs", "best_epoch", "seconds", "seconds_per_epoch", "examples_per_second"):
            entry[key] = statistics.median(r[key] for r in rs)
        summary[variant] = entry
    return summary


def keep_earlier(args: argparse.Namespace, result: dict) -> dict:
    """``result`` plus the rows of ``--out/results.json`` for variants not run now, and that file's
    command, date and settings under ``earlier`` (one entry per earlier invocation)."""
    previous_file = Path(args.out) / "results.json"
    if not previous_file.exists():
        return result
    previous = json.loads(previous_file.read_text())
    kept = [r for r in previous["rows"] if r["variant"] not in args.variants]
    if not kept:
        return result
    variants = list(dict.fromkeys(r["variant"] for r in kept)) + list(args.variants)
    rows = kept + result["rows"]
    meta = {k: previous[k] for k in ("date", "command", "machine", "wall_seconds", "settings") if k in previous}
    earlier = [e for e in previous.get("earlier", []) if set(e["variants"]) & set(variants)]
    listed = {v for e in earlier for v in e["variants"]}
    earlier.append({**meta, "variants": sorted({r["variant"] for r in kept} - listed)})
    return {"rows": rows, "summary": summarise_rows(rows, variants), "earlier": earlier}


def write_report(args: argparse.Namespace, result: dict, wall: float) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = keep_earlier(args, result)
    machine = {"cpus": os.cpu_count(), "gpu": None, "python": platform.python_version(),
               "platform": platform.platform(), "jobs": args.jobs, "threads_per_job": args.threads}
    try:
        import torch

        machine["torch"] = torch.__version__
        machine["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    meta = {"date": dt.date.today().isoformat(), "command": " ".join(sys.argv), "machine": machine,
            "wall_seconds": round(wall, 1), "settings": {"batch_size": args.batch_size, "epochs": args.epochs,
                                                         "patience": args.patience, "extra": args.set}}
    (out / "results.json").write_text(json.dumps({**meta, **result}, indent=2) + "\n")
    first = result["rows"][0]
    lines = [
        "# SINE on MovieLens-1M, leave-one-out, full ranking, history excluded",
        "",
        f"- Date: {meta['date']}; machine: {machine['cpus']} CPU cores, GPU: {machine['gpu'] or 'none'}, "
        f"torch {machine.get('torch')}; {args.jobs} runs at a time, {args.threads} thread(s) each.",
        f"- Command: `{meta['command']}`",
        f"- Dataset ml-1m fingerprint `{first['dataset']['fingerprint']}` ({first['dataset']['n_users']} users, "
        f"{first['dataset']['n_items']} items, {first['dataset']['n_interactions']} interactions), "
        f"split fingerprint `{first['split']}`.",
        f"- Settings: D 128, T 20, K 4, L 50, lambda 0.5, tau 0.1, Adam 1e-3, batch {args.batch_size}, full "
        f"softmax, early stopping on validation NDCG@10 with patience {args.patience}; seeds "
        f"{', '.join(map(str, args.seeds))}. Extra: {', '.join(args.set) or 'none'}.",
    ]
    for earlier in result.get("earlier", []):
        lines.append(f"- Variants {', '.join(earlier['variants'])}: kept from {earlier['date']}, "
                     f"`{earlier['command']}` ({earlier['settings']['batch_size']} batch, "
                     f"{earlier['settings']['epochs']} epochs at most).")
    lines += [
        "",
        "Test metrics in %, mean ± sample standard deviation over seeds:",
        "",
        "| | HR@10 | NDCG@10 | HR@50 | NDCG@50 | epochs (best) | s / epoch | train examples / s |",
        "|---|---|---|---|---|---|---|---|",
        "| paper's SINE (Table 1) | " + " | ".join(f"{PAPER[k]:.2f}" for k in REPORTED) + " | | | |",
    ]
    for variant, e in result["summary"].items():
        cells = " | ".join(f"{e['test ' + k][0]:.2f} ± {e['test ' + k][1]:.2f}" for k in REPORTED)
        lines.append(f"| sinerec SINE `{variant}` | {cells} | {e['epochs']:.0f} ({e['best_epoch']:.0f}) | "
                     f"{e['seconds_per_epoch']:.0f} | {e['examples_per_second']:,.0f} |")
    lines += ["", "Validation metrics in % (used to pick the default):", "",
              "| variant | HR@10 | NDCG@10 | HR@50 | NDCG@50 |", "|---|---|---|---|---|"]
    for variant, e in result["summary"].items():
        lines.append(f"| `{variant}` | " + " | ".join(f"{e['valid ' + k][0]:.2f} ± {e['valid ' + k][1]:.2f}"
                                                     for k in REPORTED) + " |")
    lines += ["", "Per run:", "", "| variant | seed | test HR@10 | NDCG@10 | HR@50 | NDCG@50 | epochs | best | "
              "train s | ex/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(f"{100 * r['test'][k]:.2f}" for k in REPORTED)
                     + f" | {r['epochs']} | {r['best_epoch']} | {r['seconds']:.0f} | {r['examples_per_second']:,.0f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder with ml-1m's ratings.dat and movies.dat")
    p.add_argument("--out", default="benchmarks/sine-ml1m")
    p.add_argument("--runs", default="runs/reproduce-sine-ml1m", help="where the run directories go")
    p.add_argument("--variants", nargs="+", default=["paper", "official"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--set", action="append", default=[], help="extra settings for every run")
    args = p.parse_args()
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pending = [(v, s) for v in args.variants for s in args.seeds]
    running: list[subprocess.Popen] = []
    while pending or running:
        while pending and len(running) < args.jobs:
            running.append(run_one(args, *pending.pop(0)))
        time.sleep(2)
        for proc in list(running):
            if proc.poll() is not None:
                if proc.returncode != 0:
                    raise SystemExit(f"a run failed ({proc.args}); see its log in {args.runs}")
                running.remove(proc)
    write_report(args, summarise(args), time.perf_counter() - t0)


if __name__ == "__main__":
    main()
