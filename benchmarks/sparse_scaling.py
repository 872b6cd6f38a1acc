"""Dense Adam against row-sparse item tables (``train.optimizer = "lazy-adam"``, and torch's SparseAdam for
comparison): training examples/s and peak RSS of SINE with sampled softmax, interleaved in one run.

Every configuration runs ``benchmarks/scaling.py train`` in a fresh process (``OMP_WAIT_POLICY=PASSIVE``);
the optimizers alternate within each repeat so that they see the same machine load; medians over repeats and
the ratio of the medians are reported.

    PYTHONPATH=src python benchmarks/sparse_scaling.py --out benchmarks/scaling             # ~6 min
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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OPTIMIZERS = ("adam", "lazy-adam", "torch-sparse-adam")


def run(items: int, optimizer: str, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent / "src"), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, str(HERE / "scaling.py"), "train", "--items", str(items), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--optimizer", optimizer]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    added = [r["peak_rss_mb"] - r["rss_before_training_mb"] for r in runs]
    return {"examples_per_second": statistics.median(r["examples_per_second"] for r in runs),
            "ms_per_step": statistics.median(r["ms_per_step"] for r in runs),
            "optimizer_step_ms": statistics.median(r["optimizer_step_ms"] for r in runs),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
            "added_by_training_mb": statistics.median(added), "table_mb": runs[0]["table_mb"],
            "added_over_table": round(statistics.median(added) / runs[0]["table_mb"], 2)}


def loads(r: dict[str, Any]) -> str:
    """The range of the 1-minute load averages read before the runs."""
    values = [run["load_before"] for run in r["runs"] if run.get("load_before") is not None]
    return f"{min(values):.1f}-{max(values):.1f}" if values else "not recorded"


def report(r: dict[str, Any]) -> str:
    lines = ["# Dense Adam vs row-sparse item tables (SINE, sampled softmax)", "",
             f"Command: `{r['command']}`  ", f"Date: {r['date']} to {r['finished']}  ",
             f"Machine: {r['machine']}; load average before each run {loads(r)} (each run's before/after in "
             "results-sparse.json).", "", r.get("note", ""), "",
             f"SINE (variant {r.get('variant', 'paper')}), D = 64, L = 100, K = 4, T = 20, 1,000 shared "
             "popularity-sampled negatives, batch 256, 2 threads, 50,000 synthetic users (`taobao_like`); "
             f"{r['steps']} timed steps after "
             f"{r['warmup']} warm-up steps; medians of {r['repeats']} fresh processes per configuration, the "
             "optimizers interleaved within each repeat.", "",
             "| items | optimizer | examples/s | ms/step | optimizer step ms | peak RSS MB | added by training MB "
             "| added / table | examples/s vs adam |", "|---|---|---|---|---|---|---|---|---|"]
    for items, per in r["summary"].items():
        base = per["adam"]["examples_per_second"]
        for name, s in per.items():
            lines.append(f"| {int(items):,} | {name} | {s['examples_per_second']:,.0f} | {s['ms_per_step']:.1f} | "
                         f"{s['optimizer_step_ms']:.2f} | {s['peak_rss_mb']:,.0f} | {s['added_by_training_mb']:,.0f} "
                         f"| {s['added_over_table']:.2f} | {s['examples_per_second'] / base:.2f}x |")
    lines += ["", "Added by training: peak RSS during training minus RSS before it (model, data and sampler "
              "resident). Dense Adam adds the gradient, two moments and a transient dense gradient of the "
              "lookups (about 4 tables); lazy-adam and SparseAdam add the two moments (about 2 tables) and "
              "the step's sparse rows. Optimizer step ms: one `optimizer.step()` with the last step's gradients."]
    if r.get("notes"):
        lines += ["", r["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", default=str(HERE / "scaling"))
    parser.add_argument("--note", default="", help="a line for the report (e.g. what else ran on the machine)")
    args = parser.parse_args()
    import torch

    from sinerec.config import load_config

    results: dict[str, Any] = {
        "command": "PYTHONPATH=src python benchmarks/sparse_scaling.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU cores, no GPU, {platform.platform()}, torch {torch.__version__}",
        "repeats": args.repeats, "steps": args.steps, "warmup": args.warmup, "note": args.note,
        "variant": load_config(overrides=["model=sine"]).model_params.variant, "runs": [], "summary": {}}
    for items in args.items:
        for rep in range(args.repeats):
            order = args.optimizers if rep % 2 == 0 else list(reversed(args.optimizers))
            for name in order:
                record = {**run(items, name, args), "requested_items": items}
                results["runs"].append(record)
                print(f"{items:>9,} {name:>18} {record['examples_per_second']:>9,.0f} ex/s "
                      f"peak {record['peak_rss_mb']:,.0f} MB", flush=True)
        results["summary"][str(items)] = {
            name: summarise([r for r in results["runs"] if r["requested_items"] == items and r["optimizer"] == name])
            for name in args.optimizers}
    results["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results-sparse.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results-sparse.md").write_text(report(results))
    print(f"wrote {out / 'results-sparse.json'} and {out / 'results-sparse.md'}")


if __name__ == "__main__":
    main()
