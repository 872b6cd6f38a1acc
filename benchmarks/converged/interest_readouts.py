"""Where a multi-interest model's accuracy goes: trained runs of a model that retrieves with K interest vectors
(MIND, ComiRec-SA, ComiRec-DR) scored on their own split under several readouts of the same vectors.

Readouts, each ranked by the offline evaluator (``sinerec.evaluate``, the run's own protocol and history
exclusion):

- ``max``: every interest retrieves and an item scores its max over the K (what the model's evaluation and
  serving do; equals the run's own metrics);
- ``mean``: the mean of the K interests as one query vector;
- ``interest k``: interest k alone;
- ``best interest per user``: per query, the best of the one-interest rankings, chosen *with the target*: an
  upper bound that no retrieval reaches, showing how much the interests hold that ``max`` does not find;
- ``max, routing draw d`` (MIND only): ``max`` with another fixed draw of the evaluation routing logits
  (``MIND.eval_routing_logits``, seeds 1000 + d), the spread that one draw of them adds.

Usage: python benchmarks/converged/interest_readouts.py RUN [RUN ...] --out FILE.json [--part valid] [--draws 2]
Writes FILE.json (every run's readouts, their mean and sample standard deviation over the runs, the command,
date, machine and the runs' dataset and split fingerprints) and FILE.md (the same as a table of NDCG@10 and
HR@10 in %), and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sinerec.benchmark.report import machine, mean_std
from sinerec.data.splits import make_split
from sinerec.evaluate import evaluate
from sinerec.models.base import ModelOutput, SequentialRecommender
from sinerec.run_data import read_json
from sinerec.runs import load_run
from sinerec.storage import atomic_write_text, write_json

METRICS = ("NDCG@10", "HR@10")


class Readout(SequentialRecommender):
    """``model`` with its interests replaced by ``pick(interests)`` (B, K', D) for retrieval."""

    multi_vector_retrieval = True

    def __init__(self, model: SequentialRecommender, pick: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__(model.num_items)
        self.inner = model
        self.pick = pick

    def forward(self, history: torch.Tensor, target: torch.Tensor | None = None) -> ModelOutput:
        out = self.inner(history)
        assert out.interests is not None
        return ModelOutput(user=out.user, interests=self.pick(out.interests))

    def item_embeddings(self) -> torch.Tensor:
        return self.inner.item_embeddings()


def fingerprints(run_dir: Path) -> str:
    """"dataset D, split S" of a run, from its data.json."""
    data = read_json(run_dir / "data.json")
    return f"dataset `{data['dataset']['fingerprint']}`, split `{data['protocol']['fingerprint']}`"


def readouts(run_dir: Path, part: str, draws: int) -> dict[str, dict[str, float]]:
    """Readout name -> {metric: fraction} for one run."""
    run = load_run(run_dir)
    model = run.model
    if not model.multi_vector_retrieval:
        sys.exit(f"interest_readouts: {run_dir}: {run.config.model} retrieves with one vector, not K interests")
    split = make_split(run.data, run.config.protocol)
    queries = split.valid if part == "valid" else split.test
    exclude = run.config.protocol.excludes_history

    def score(pick: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        return evaluate(Readout(model, pick), run.data, queries, run.config.data.max_len, exclude, run.config.eval)

    def means(result: Any) -> dict[str, float]:
        return {m: result.means[m] for m in METRICS}

    out = {"max": means(score(lambda v: v)), "mean": means(score(lambda v: v.mean(1, keepdim=True)))}
    singles = []
    for k in range(model.config.num_interests):  # every multi-vector model (MIND, ComiRec) has K
        result = score(lambda v, k=k: v[:, k:k + 1])
        singles.append(result.per_query)
        out[f"interest {k}"] = means(result)
    out["best interest per user"] = {m: float(np.max([s[m] for s in singles], axis=0).mean()) for m in METRICS}
    if hasattr(model, "eval_routing_logits"):
        kept = model.eval_routing_logits.clone()
        for draw in range(draws):
            generator = torch.Generator().manual_seed(1000 + draw)
            fresh = torch.randn(kept.shape, generator=generator) * model.config.routing_logits_std
            model.eval_routing_logits.copy_(fresh)
            out[f"max, routing draw {draw}"] = means(score(lambda v: v))
        model.eval_routing_logits.copy_(kept)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of one multi-interest model")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--part", choices=("valid", "test"), default="valid",
                        help="which evaluation set (default valid: these readouts are a diagnosis, not a result)")
    parser.add_argument("--draws", type=int, default=2, help="other routing draws to score (MIND only)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_run = {str(run): readouts(run, args.part, args.draws) for run in args.runs}
    names = list(next(iter(per_run.values())))
    summary = {name: {m: mean_std([r[name][m] for r in per_run.values() if name in r]) for m in METRICS}
               for name in names}
    command = "python " + " ".join(["benchmarks/converged/interest_readouts.py", *sys.argv[1:]])
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    data = sorted({fingerprints(run) for run in args.runs})
    host = machine()
    write_json(args.out, {"part": args.part, "command": command, "date": date, "machine": host,
                          "data": data, "runs": per_run, "summary": summary})
    lines = [f"| readout ({args.part}, {len(per_run)} runs) | NDCG@10 | HR@10 |", "|---|---:|---:|"]
    for name in names:
        cells = [f"{100 * summary[name][m]['mean']:.2f} ± {100 * summary[name][m]['std']:.2f}" for m in METRICS]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    table = "\n".join(lines)
    print(table)
    atomic_write_text(args.out.with_suffix(".md"), "\n\n".join([
        f"# Interest readouts: {', '.join(str(run) for run in args.runs)}",
        f"`{command}`; {'; '.join(data)}; {date}, {host.get('cpu_model', 'cpu')}. Metrics in %, mean ± "
        "sample standard deviation over the runs; readouts as in the script's docstring.",
        table]) + "\n")


if __name__ == "__main__":
    main()
