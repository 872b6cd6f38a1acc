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
- ``max, unit item vectors``: ``max`` with every item vector scaled to norm 1 (cosine scores), which takes out
  what the item norms add to the ranking (a softmax over bounded queries, such as ComiRec-DR's squashed
  capsules, can sharpen only through them, and popular items grow most);
- ``max, routing draw d`` (MIND only): ``max`` with another fixed draw of the evaluation routing logits
  (``MIND.eval_routing_logits``, seeds 1000 + d), the spread that one draw of them adds.

Beside the readouts, how alike a user's interests are: the cosine of every pair of a query's K interests,
averaged over the pairs and the queries (1: K copies of one vector; 0: orthogonal interests); and how much the
retrieval leans on popular items: the mean norm of the interests and of the item vectors, and the share of the
model's own top 50 (``max``) that falls among the 5 % most frequent items of the log, beside the share of the
queries' targets that does.

Usage: python benchmarks/converged/interest_readouts.py RUN [RUN ...] --out FILE.json [--part valid] [--draws 2]
[--metrics NDCG@10,HR@10]
Writes FILE.json (every run's readouts, their mean and sample standard deviation over the runs, the command,
date, machine and the runs' dataset and split fingerprints) and FILE.md (the same as a table of the metrics in
%), and prints the table.
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

from sinerec import ranking
from sinerec.benchmark.report import machine, mean_std
from sinerec.data.splits import make_split
from sinerec.evaluate import evaluate, gather_histories
from sinerec.models.base import ModelOutput, SequentialRecommender
from sinerec.run_data import read_json
from sinerec.runs import load_run
from sinerec.storage import atomic_write_text, write_json

DEFAULT_METRICS = "NDCG@10,HR@10"


class Readout(SequentialRecommender):
    """``model`` with its interests replaced by ``pick(interests)`` (B, K', D) for retrieval."""

    multi_vector_retrieval = True

    def __init__(self, model: SequentialRecommender, pick: Callable[[torch.Tensor], torch.Tensor],
                 unit_items: bool = False) -> None:
        super().__init__(model.num_items)
        self.inner = model
        self.pick = pick
        self.unit_items = unit_items

    def forward(self, history: torch.Tensor, target: torch.Tensor | None = None) -> ModelOutput:
        out = self.inner(history)
        assert out.interests is not None
        return ModelOutput(user=out.user, interests=self.pick(out.interests))

    def item_embeddings(self) -> torch.Tensor:
        items = self.inner.item_embeddings()
        return torch.nn.functional.normalize(items, dim=-1) if self.unit_items else items


def fingerprints(run_dir: Path) -> str:
    """"dataset D, split S" of a run, from its data.json."""
    data = read_json(run_dir / "data.json")
    return f"dataset `{data['dataset']['fingerprint']}`, split `{data['protocol']['fingerprint']}`"


def pairwise_cosine(interests: torch.Tensor) -> torch.Tensor:
    """interests (B, K, D), K >= 2 -> (B,) the mean cosine over the K (K - 1) / 2 pairs of each row's interests."""
    unit = torch.nn.functional.normalize(interests.float(), dim=-1)
    gram = unit @ unit.transpose(1, 2)  # (B, K, K)
    k = interests.shape[1]
    return (gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)) / (k * (k - 1))


HEAD, LIST = 0.05, 50  # the popular head: the 5 % most frequent items; the retrieved list: top 50


def popularity(model: SequentialRecommender, data: Any, queries: Any, max_len: int, exclude: bool,
               batch_size: int) -> dict[str, float]:
    """Norms and the popular head's share of the retrieved top 50 and of the targets (module docstring)."""
    counts = np.bincount(data.items, minlength=model.num_items + 1)[1:]
    head = np.zeros(model.num_items + 1, dtype=bool)
    head[1 + np.argsort(-counts, kind="stable")[:max(1, round(HEAD * model.num_items))]] = True
    model.eval()
    items = model.item_embeddings().detach()
    norms, retrieved = [], []
    with torch.no_grad():
        for lo in range(0, len(queries), batch_size):
            hs, he = queries.hist_start[lo:lo + batch_size], queries.hist_end[lo:lo + batch_size]
            interests = model(torch.from_numpy(gather_histories(data.items, hs, he, max_len))).interests
            norms.append(interests.norm(dim=-1).flatten())
            rows, excluded = ranking.exclusion_pairs(data.items, hs, he) if exclude else (None, None)
            ids, _ = ranking.topk_items(interests, items, LIST, rows, excluded)
            retrieved.append(ids[ids > 0].numpy())
    return {"interest_norm": float(torch.cat(norms).mean()), "item_norm": float(items[1:].norm(dim=1).mean()),
            "head_share_retrieved": float(head[np.concatenate(retrieved)].mean()),
            "head_share_targets": float(head[queries.targets].mean())}


def readouts(run_dir: Path, part: str, draws: int,
             metrics: list[str]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Readout name -> {metric: fraction} for one run, and its statistics: the mean pairwise cosine of its
    queries' interests and :func:`popularity`'s."""
    run = load_run(run_dir)
    model = run.model
    if not model.multi_vector_retrieval:
        sys.exit(f"interest_readouts: {run_dir}: {run.config.model} retrieves with one vector, not K interests")
    split = make_split(run.data, run.config.protocol)
    queries = split.valid if part == "valid" else split.test
    exclude = run.config.protocol.excludes_history

    def score(pick: Callable[[torch.Tensor], torch.Tensor], unit_items: bool = False) -> Any:
        return evaluate(Readout(model, pick, unit_items), run.data, queries, run.config.data.max_len, exclude,
                        run.config.eval)

    def means(result: Any) -> dict[str, float]:
        missing = [m for m in metrics if m not in result.means]
        if missing:
            sys.exit(f"interest_readouts: --metrics: {', '.join(missing)} not measured under {run_dir}'s "
                     f"protocol; measured: {', '.join(result.means)}")
        return {m: result.means[m] for m in metrics}

    cosines: list[torch.Tensor] = []

    def own(interests: torch.Tensor) -> torch.Tensor:  # the model's retrieval, noting how alike the K are
        if interests.shape[1] > 1:
            cosines.append(pairwise_cosine(interests))
        return interests

    out = {"max": means(score(own)), "mean": means(score(lambda v: v.mean(1, keepdim=True)))}
    stats = {"interest_cosine": float(torch.cat(cosines).mean())} if cosines else {}
    stats.update(popularity(model, run.data, queries, run.config.data.max_len, exclude, run.config.eval.batch_size))
    singles = []
    for k in range(model.config.num_interests):  # every multi-vector model (MIND, ComiRec) has K
        result = score(lambda v, k=k: v[:, k:k + 1])
        singles.append(result.per_query)
        out[f"interest {k}"] = means(result)
    out["best interest per user"] = {m: float(np.max([s[m] for s in singles], axis=0).mean()) for m in metrics}
    out["max, unit item vectors"] = means(score(lambda v: v, unit_items=True))
    if hasattr(model, "eval_routing_logits"):
        kept = model.eval_routing_logits.clone()
        for draw in range(draws):
            generator = torch.Generator().manual_seed(1000 + draw)
            fresh = torch.randn(kept.shape, generator=generator) * model.config.routing_logits_std
            model.eval_routing_logits.copy_(fresh)
            out[f"max, routing draw {draw}"] = means(score(lambda v: v))
        model.eval_routing_logits.copy_(kept)
    return out, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of one multi-interest model")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--part", choices=("valid", "test"), default="valid",
                        help="which evaluation set (default valid: these readouts are a diagnosis, not a result)")
    parser.add_argument("--draws", type=int, default=2, help="other routing draws to score (MIND only)")
    parser.add_argument("--metrics", default=DEFAULT_METRICS,
                        help=f"comma list of the evaluator's metrics to report (default {DEFAULT_METRICS})")
    args = parser.parse_args()
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if not metrics:
        sys.exit("interest_readouts: --metrics: name at least one metric, e.g. NDCG@10")
    torch.set_num_threads(1)
    measured = {str(run): readouts(run, args.part, args.draws, metrics) for run in args.runs}
    per_run = {run: rows for run, (rows, _) in measured.items()}
    stats = {run: values for run, (_, values) in measured.items()}
    names = list(next(iter(per_run.values())))
    summary = {name: {m: mean_std([r[name][m] for r in per_run.values() if name in r]) for m in metrics}
               for name in names}
    command = "python " + " ".join(["benchmarks/converged/interest_readouts.py", *sys.argv[1:]])
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    data = sorted({fingerprints(run) for run in args.runs})
    host = machine()
    keys = sorted({key for values in stats.values() for key in values})
    statistics = {key: {"runs": {run: v[key] for run, v in stats.items() if key in v},
                        **mean_std([v[key] for v in stats.values() if key in v])} for key in keys}
    write_json(args.out, {"part": args.part, "command": command, "date": date, "machine": host,
                          "data": data, "runs": per_run, "summary": summary, "statistics": statistics})
    lines = [f"| readout ({args.part}, {len(per_run)} runs) | {' | '.join(metrics)} |",
             "|---|" + "---:|" * len(metrics)]
    for name in names:
        cells = [f"{100 * summary[name][m]['mean']:.2f} ± {100 * summary[name][m]['std']:.2f}" for m in metrics]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    labels = {"interest_cosine": "mean pairwise cosine of a query's interests",
              "interest_norm": "mean norm of an interest", "item_norm": "mean norm of an item vector",
              "head_share_retrieved": f"share of the top {LIST} among the {HEAD:.0%} most frequent items",
              "head_share_targets": f"share of the targets among the {HEAD:.0%} most frequent items"}
    lines += ["", "| statistic | mean ± sd |", "|---|---:|"]
    lines += [f"| {labels[key]} | {statistics[key]['mean']:.3f} ± {statistics[key]['std']:.3f} |" for key in keys]
    table = "\n".join(lines)
    print(table)
    atomic_write_text(args.out.with_suffix(".md"), "\n\n".join([
        f"# Interest readouts: {', '.join(str(run) for run in args.runs)}",
        f"`{command}`; {'; '.join(data)}; {date}, {host.get('cpu_model', 'cpu')}. Metrics in %, mean ± "
        "sample standard deviation over the runs; readouts as in the script's docstring.",
        table]) + "\n")


if __name__ == "__main__":
    main()
