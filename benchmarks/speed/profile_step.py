"""Where one training step's time goes: batching, operators, and everything outside them (issue 13 item 2).

``--part eval`` profiles the evaluator instead: one full-ranking pass over the validation queries
(``sinerec.evaluate.evaluate``, the functions serving shares), its users/s and its operator table.

Builds the trainer ``sinerec train`` would (``--model``, ``--batch``, ``--precision``), runs one warm-up epoch of
``--steps`` steps, then times ``--steps`` steps split into (a) getting the batch (the epoch's batch iterator:
slicing, padding, collating; serial here, where ``Trainer.train_epoch`` prefetches it on a thread), (b) the
step itself (forward, backward, optimizer), and profiles the same steps with ``torch.profiler`` to split (b)
into time inside ATen operators (their self time, summed) and the rest (Python, autograd bookkeeping,
allocation outside operators). Writes the operator table (top ``--rows`` by
self time) and the split as ``OUT/profile-MODEL-PRECISION-BATCH.{json,md}``.

    python benchmarks/speed/profile_step.py --data-dir ../shared/data/ml-1m --out benchmarks/speed/profile
    python benchmarks/speed/profile_step.py --quick --out /tmp/profile        # tiny synthetic data, seconds
"""

from __future__ import annotations

from sinerec import runtime

runtime.prefer_passive_wait()  # as the sinerec command does, before torch

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contention import machine  # noqa: E402
from speed import PRECISIONS, prepared_data  # noqa: E402

from sinerec.config import load_config  # noqa: E402
from sinerec.evaluate import evaluate  # noqa: E402
from sinerec.models import MODELS  # noqa: E402
from sinerec.train import Trainer  # noqa: E402


def timed_steps(trainer: Trainer, optimizer: torch.optim.Optimizer, batches: Any, epoch: int,
                steps: int) -> tuple[float, float]:
    """Seconds spent getting ``steps`` batches and seconds spent in the steps themselves."""
    fetch = compute = 0.0
    iterator = iter(batches.epoch(epoch))
    for _ in range(steps):
        t0 = time.perf_counter()
        hist, target = next(iterator)
        t1 = time.perf_counter()
        loss, _ = trainer.loss(hist, target)  # negatives (sampled softmax) and autocast as in train_epoch
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        compute += time.perf_counter() - t1
        fetch += t1 - t0
    return fetch, compute


def operator_rows(prof: Any, wall: float, rows: int) -> tuple[float, list[dict[str, Any]]]:
    """Seconds inside ATen operators (self time, summed) and the top ``rows`` operators by self time."""
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    in_ops = sum(e.self_cpu_time_total for e in events) / 1e6
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return in_ops, [{"name": e.key, "self_seconds": round(e.self_cpu_time_total / 1e6, 4), "calls": e.count,
                     "share": round(e.self_cpu_time_total / 1e6 / wall, 4)} for e in top]


def profile_eval(args: argparse.Namespace, trainer: Trainer, prepared: Any, config: Any) -> int:
    """Users/s and the operator table of one full-ranking pass over the validation queries (untrained model:
    the cost does not depend on the weights)."""
    model, queries = trainer.model.eval(), prepared.split.valid
    def run() -> None:
        evaluate(model, prepared.data, queries, config.data.max_len, prepared.split.protocol.excludes_history,
                 config.eval, trainer.device)

    run()  # warm-up
    t0 = time.perf_counter()
    run()
    seconds = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run()
        wall = time.perf_counter() - t0
    in_ops, operators = operator_rows(prof, wall, args.rows)
    doc = {"command": shlex.join([Path(sys.executable).name, *sys.argv]),
           "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
           "torch_threads": torch.get_num_threads(), "loadavg": round(os.getloadavg()[0], 2), "model": args.model,
           "queries": len(queries), "users_per_second": round(len(queries) / seconds, 1),
           "profiled": {"wall_seconds": round(wall, 4), "aten_self_seconds": round(in_ops, 4)},
           "operators": operators}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile-eval-{args.model}.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [f"# One evaluation pass of {args.model}: full ranking of {len(queries):,} validation users (issue 13)",
             "", f"Command: `{doc['command']}`  ", f"Date: {doc['date']}; load average {doc['loadavg']}  ",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['cpus']} CPUs, torch {doc['machine']['torch']}, "
             f"{doc['torch_threads']} threads", "", f"{doc['users_per_second']:,.0f} users/s.", "",
             "| operator | self s | calls | share of the profiled wall |", "|---|---:|---:|---:|"]
    lines += [f"| `{o['name']}` | {o['self_seconds']:.3f} | {o['calls']} | {100 * o['share']:.1f} % |"
              for o in operators]
    (out / f"profile-eval-{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-1m")
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data, dim 16: a smoke test")
    parser.add_argument("--model", default="sine", choices=sorted(MODELS))
    parser.add_argument("--precision", default="float32", choices=sorted(PRECISIONS))
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rows", type=int, default=25, help="operators in the table")
    parser.add_argument("--part", default="train", choices=("train", "eval"))
    parser.add_argument("--out", default="benchmarks/speed/profile")
    args = parser.parse_args(argv)
    prepared = prepared_data(args)
    values: dict[str, Any] = {"model": args.model, "train": {
        "batch_size": args.batch, "amp": PRECISIONS[args.precision], "max_steps_per_epoch": args.steps,
        "progress": False, "epochs": 3}}
    if args.quick:
        values["model_params"] = {"dim": 16}
    config = load_config(values)
    trainer = Trainer(config, prepared.data, prepared.split, log=lambda *a: None)
    if args.part == "eval":
        return profile_eval(args, trainer, prepared, config)
    optimizer, batches = trainer.make_optimizer(), trainer.make_batches()
    trainer.model.train()
    with trainer.random_stream():
        timed_steps(trainer, optimizer, batches, 0, args.steps)  # warm-up
        fetch, compute = timed_steps(trainer, optimizer, batches, 1, args.steps)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            timed_steps(trainer, optimizer, batches, 2, args.steps)
            profiled_wall = time.perf_counter() - t0
    in_ops, operators = operator_rows(prof, profiled_wall, args.rows)
    examples = args.steps * args.batch
    doc = {"command": shlex.join([Path(sys.executable).name, *sys.argv]),
           "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
           "torch_threads": torch.get_num_threads(), "loadavg": round(os.getloadavg()[0], 2),
           "model": args.model, "precision": args.precision, "batch": args.batch, "steps": args.steps,
           "examples_per_second": round(examples / (fetch + compute), 1),
           "seconds": {"batching": round(fetch, 4), "step": round(compute, 4)},
           "profiled": {"wall_seconds": round(profiled_wall, 4), "aten_self_seconds": round(in_ops, 4),
                        "outside_operators_share": round(max(0.0, 1 - in_ops / profiled_wall), 4)},
           "operators": operators}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"profile-{args.model}-{args.precision}-{args.batch}"
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    total = fetch + compute
    lines = [f"# One training step of {args.model}, {args.precision}, batch {args.batch} (issue 13)", "",
             f"Command: `{doc['command']}`  ", f"Date: {doc['date']}; load average {doc['loadavg']}  ",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['cpus']} CPUs, torch {doc['machine']['torch']}, "
             f"{doc['torch_threads']} threads", "",
             f"{args.steps} steps, {doc['examples_per_second']:,.0f} examples/s: batching {fetch:.3f} s "
             f"({100 * fetch / total:.1f} %), the steps {compute:.3f} s ({100 * compute / total:.1f} %). Profiled: "
             f"{profiled_wall:.3f} s wall, of which {in_ops:.3f} s inside ATen operators (self time) and "
             f"{100 * doc['profiled']['outside_operators_share']:.1f} % outside them (Python, autograd, allocation).",
             "", "| operator | self s | calls | share of the profiled wall |", "|---|---:|---:|---:|"]
    lines += [f"| `{o['name']}` | {o['self_seconds']:.3f} | {o['calls']} | {100 * o['share']:.1f} % |"
              for o in doc["operators"]]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
