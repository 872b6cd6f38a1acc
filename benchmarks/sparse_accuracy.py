"""Accuracy of ``train.optimizer = "lazy-adam"`` against dense Adam on ML-1M: SINE (shipped settings), sampled
softmax, the same data, steps, seeds and evaluation; validation and test metrics of the best epoch, per seed
and as mean ± sample standard deviation over the seeds (the optimizers alternate within each seed).

    PYTHONPATH=src python benchmarks/sparse_accuracy.py --data-dir ../shared/data/ml-1m --out benchmarks/scaling
    PYTHONPATH=src python benchmarks/sparse_accuracy.py --data-dir ../shared/data/ml-1m --seeds 0,1,2 \
        --epochs 3 --steps-per-epoch 600 --out benchmarks/scaling/sparse-accuracy-3seeds
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from sinerec.job import train_run
from sinerec.settings import resolve_config

OPTIMIZERS = ("adam", "lazy-adam")
METRICS = ("NDCG@10", "HR@10", "NDCG@50", "HR@50")


def summary(values: list[float]) -> str:
    """Mean ± sample standard deviation."""
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=1000)
    parser.add_argument("--negatives", type=int, default=1000)
    parser.add_argument("--seeds", default="2021", help="comma-separated seeds (default 2021)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "scaling"))
    args = parser.parse_args()
    seeds = [int(x) for x in args.seeds.split(",")]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    settings = ["data.dataset=ml-1m", f"data.data_dir={args.data_dir}", "train.loss=sampled",
                f"train.num_negatives={args.negatives}", f"train.epochs={args.epochs}",
                f"train.max_steps_per_epoch={args.steps_per_epoch}",
                f"train.threads={args.threads}", "train.progress=false", "train.device=cpu",
                f"train.patience={args.epochs}"]
    results: dict[str, Any] = {
        "command": "PYTHONPATH=src python benchmarks/sparse_accuracy.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU cores, no GPU, {platform.platform()}, torch {torch.__version__}",
        "settings": settings, "seeds": seeds, "load_before": round(os.getloadavg()[0], 2),
        "runs": {name: [] for name in OPTIMIZERS}}
    prepared = None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for name in OPTIMIZERS:
                config = resolve_config("sine", overrides=[*settings, f"train.seed={seed}",
                                                           f"train.optimizer={name}"])
                run = train_run(config, Path(tmp) / f"{name}-{seed}", log=print, prepared=prepared)
                prepared = run.prepared
                res = run.result
                results["runs"][name].append({
                    "seed": seed, "best_epoch": res.best_epoch, "train_seconds": round(res.train_seconds, 1),
                    "examples_per_second": round(res.examples_per_second, 1),
                    "valid": {m: res.valid.means[m] for m in METRICS},
                    "test": {m: res.test.means[m] for m in METRICS},
                    "valid_by_epoch": [h.get("valid", {}).get("NDCG@10") for h in res.history]})
    results["load_after"] = round(os.getloadavg()[0], 2)
    results["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    out = Path(args.out)
    (out / "results-sparse-accuracy.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# lazy-adam vs dense Adam on ML-1M (SINE, sampled softmax)", "",
             f"Command: `{results['command']}`  ", f"Date: {results['date']} to {results['finished']}  ",
             f"Machine: {results['machine']}; 1-minute load average {results['load_before']} before, "
             f"{results['load_after']} after.", "",
             f"Shipped SINE settings (D 128, L 50, K 4, batch 128, lr 1e-3), leave-one-out, full ranking with "
             f"history exclusion; sampled softmax with {args.negatives} negatives; {args.epochs} epochs of "
             f"{args.steps_per_epoch} steps, seeds {', '.join(map(str, seeds))}; metrics of the best epoch "
             "(validation NDCG@10).", "",
             "| optimizer | seed | best epoch | valid NDCG@10 | valid HR@10 | test NDCG@10 | test HR@10 | test HR@50 "
             "| valid NDCG@10 by epoch | examples/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in results["runs"].items():
        for r in rows:
            by_epoch = ", ".join(f"{v:.4f}" for v in r["valid_by_epoch"] if v is not None)
            lines.append(f"| {name} | {r['seed']} | {r['best_epoch']} | {r['valid']['NDCG@10']:.4f} | "
                         f"{r['valid']['HR@10']:.4f} | {r['test']['NDCG@10']:.4f} | {r['test']['HR@10']:.4f} | "
                         f"{r['test']['HR@50']:.4f} | {by_epoch} | {r['examples_per_second']:,.0f} |")
    if len(seeds) > 1:
        lines += ["", "Mean ± sample standard deviation over the seeds:", "",
                  "| optimizer | valid NDCG@10 | valid HR@10 | test NDCG@10 | test HR@10 | test HR@50 |",
                  "|---|---|---|---|---|---|"]
        for name, rows in results["runs"].items():
            cells = [summary([r[part][m] for r in rows]) for part, m in
                     (("valid", "NDCG@10"), ("valid", "HR@10"), ("test", "NDCG@10"), ("test", "HR@10"),
                      ("test", "HR@50"))]
            lines.append(f"| {name} | {' | '.join(cells)} |")
    (out / "results-sparse-accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
