"""Re-score the runs of a `sinerec benchmark` on their test users with history exclusion on and off.

The same as `sinerec evaluate --run RUN --set protocol.exclude_history=true|false` for every run (both call
`sinerec.rescore.rescore`). The SINE paper says the items a user interacted with are not negatives (our `loo`
default, history excluded from the ranking); the official code ranks them anyway. This evaluates every finished
run of a benchmark both ways, with the same weights, and writes the means and sample standard deviations over seeds.

    python benchmarks/rescore_history.py benchmarks/baselines-ml1m-loo --out benchmarks/baselines-ml1m-loo/history.json

Benchmarks record the history-ranked test metrics of each run themselves now (``test_history_ranked`` in
``benchmark.json``); ``--fill-records`` adds them to the finished runs recorded before that (it needs their
weights, so run it where they trained), and the next ``sinerec benchmark`` of the folder tabulates them.

A benchmark that spans sittings keeps only the small records of the runs finished in earlier ones (weights are
not committed): such a run is taken from its record (``test`` and ``test_history_ranked``, the same numbers this
script computes from the weights); one whose record lacks the history-ranked metrics and whose weights are not
here is left out, and named, in the output (``left_out``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from sinerec.benchmark.report import mean_std
from sinerec.benchmark.runner import HISTORY_RANKED, RECORD
from sinerec.rescore import rescore
from sinerec.runs import MODEL, load_run
from sinerec.storage import write_json

METRICS = ("HR@10", "NDCG@10", "HR@50", "NDCG@50")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", type=Path, help="a sinerec benchmark output folder (with runs/)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--fill-records", action="store_true",
                        help="also write the history-ranked test metrics into each finished run's benchmark.json "
                             "that lacks them")
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_model: dict[str, dict[str, list[dict[str, float]]]] = {}
    left_out: list[str] = []
    for run_dir in sorted(p for p in (args.benchmark / "runs").iterdir() if (p / "metrics.json").exists()):
        record_path = run_dir / RECORD
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        if not (run_dir / MODEL).exists():  # finished in an earlier sitting: its record, if it has both scorings
            if HISTORY_RANKED not in record:
                left_out.append(run_dir.name)
                print(f"{run_dir.name}: left out (no {MODEL} here and no {HISTORY_RANKED} in its {RECORD})",
                      flush=True)
                continue
            entry = per_model.setdefault(record["model"], {"excluded": [], "included": []})
            entry["excluded"].append({m: record["test"][m] for m in METRICS})
            entry["included"].append({m: record[HISTORY_RANKED][m] for m in METRICS})
            print(run_dir.name, "from its record", flush=True)
            continue
        run = load_run(run_dir)
        entry = per_model.setdefault(run.config.model, {"excluded": [], "included": []})
        for key, exclude in (("excluded", "true"), ("included", "false")):  # `sinerec evaluate --set ...`
            result = rescore(run, [f"protocol.exclude_history={exclude}"], parts=["test"])["test"]
            entry[key].append({m: result[m] for m in METRICS})
            if key == "included" and args.fill_records and record and HISTORY_RANKED not in record \
                    and run.config.protocol.excludes_history:
                write_json(record_path, {**record, HISTORY_RANKED: result})
        print(run_dir.name, {k: round(100 * v[-1]["HR@10"], 2) for k, v in entry.items()}, flush=True)
    summary = {model: {key: {m: mean_std([r[m] for r in rows]) for m in METRICS} | {"n_seeds": len(rows)}
                       for key, rows in entry.items()}
               for model, entry in per_model.items()}
    write_json(args.out, {"benchmark": str(args.benchmark), "metrics": "test, fractions", "summary": summary,
                          "left_out": left_out})
    for model, s in sorted(summary.items(), key=lambda kv: -kv[1]["excluded"]["HR@10"]["mean"]):
        print(f"{model:12s} HR@10 excluded {100 * s['excluded']['HR@10']['mean']:.2f} "
              f"included {100 * s['included']['HR@10']['mean']:.2f}; NDCG@10 excluded "
              f"{100 * s['excluded']['NDCG@10']['mean']:.2f} included {100 * s['included']['NDCG@10']['mean']:.2f}")


if __name__ == "__main__":
    main()
