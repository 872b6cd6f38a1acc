"""The paper's NMI analysis on trained SINE runs: each item's nearest concept against the dataset's categories,
next to random assignments with the same cluster sizes.

    python benchmarks/explain_nmi.py --run ml-1m=RUN_DIR --run amazon-beauty=RUN_DIR \\
        --repeats 100 --out benchmarks/explain_nmi.json

Writes one JSON document (per run: NMI, chance level, concept usage, dataset and split fingerprints, test
metrics) and prints a Markdown table. NMI: sinerec.explain (arithmetic-mean normalisation; several categories
per item as weighted (item, category) pairs, each item weighing 1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np


def measure(run_dir: str, seed: int, repeats: int, min_counts: list[int] | None = None) -> dict:
    from sinerec.explain import concept_nmi, entropy, user_activations
    from sinerec.runs import load_run

    run = load_run(run_dir)
    info = json.loads((Path(run_dir) / "data.json").read_text())
    params = run.config.model_params
    nmi = concept_nmi(run, seed, repeats)
    by_count = {str(n): concept_nmi(run, seed, repeats, min_count=n) for n in min_counts or []}
    acts = user_activations(run)
    counts = acts.counts(params.num_concepts)
    share = counts / counts.sum()
    test = (run.metrics or {}).get("test", {})
    return {
        "run": str(run_dir), "model": run.config.model,
        "settings": {"variant": params.variant, "dim": params.dim, "num_concepts": params.num_concepts,
                     "num_interests": params.num_interests, "epochs_trained": len(run.history),
                     "best_epoch": (run.metrics or {}).get("train", {}).get("best_epoch")},
        "dataset": {k: info["dataset"][k] for k in ("name", "n_users", "n_items", "n_interactions", "fingerprint")},
        "split": info["protocol"].get("fingerprint"),
        "test": {k: round(100 * test[k], 2) for k in ("HR@10", "NDCG@10", "HR@50", "NDCG@50") if k in test},
        "nmi": {k: v for k, v in (nmi or {}).items()},
        # the same over the items with at least N interactions (--min-count N)
        "nmi_by_min_count": {n: {k: v[k] for k in ("value", "random_mean", "random_std", "z", "n_items",
                                                    "clusters_used")} for n, v in by_count.items() if v},
        "concepts_ever_activated": int((counts > 0).sum()),
        "effective_concepts": round(float(np.exp(entropy(share))), 2),
        "mean_aggregation_peak": round(float(acts.aggregation.max(axis=1).mean()), 4),  # mean max_k e_k
        "mean_intention_peak": round(float(acts.intention_peak.mean()), 4),  # mean max_k P(k|t)
    }


def main() -> int:
    from sinerec.runs import machine_summary

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="NAME=DIR", help="a trained SINE run")
    parser.add_argument("--repeats", type=int, default=100, help="random assignments (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-count", type=int, action="append", default=[], metavar="N",
                        help="also the NMI over the items with at least N interactions (repeatable)")
    parser.add_argument("--out", default="benchmarks/explain_nmi.json")
    args = parser.parse_args()
    results = {}
    for spec in args.run:
        name, _, run_dir = spec.partition("=")
        results[name] = measure(run_dir, args.seed, args.repeats, args.min_count)
    doc = {"date": dt.date.today().isoformat(), "command": " ".join(["python"] + sys.argv),
           "machine": machine_summary(), "results": results}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print("| dataset | categories | items | concepts used / L | NMI (learned) | NMI (random, mean ± sd) | z |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        n = r["nmi"]
        print(f"| {name} | {n['n_categories']} | {n['n_items']:,} | {n['clusters_used']} / "
              f"{r['settings']['num_concepts']} | {n['value']:.4f} | {n['random_mean']:.4f} ± {n['random_std']:.4f} "
              f"| {n['z']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
