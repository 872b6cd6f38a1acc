"""Scaling benchmark: training speed and memory against catalogue size, full-ranking evaluation over 1M items,
and 1 against 2 processes (torchrun, gloo) on this machine.

Data: ``sinerec.data.synthetic.taobao_like`` (power-law popularity, planted concepts, every item of the
catalogue present). Model: SINE (the default variant; `paper` when results.md was measured), sampled softmax
with shared popularity-sampled negatives,
Adam. Every configuration runs in a fresh process (``python benchmarks/scaling.py train ...``, or under
``torchrun`` for several processes); peak memory is the resident set's high-water mark (``VmHWM``, reset
through ``/proc/self/clear_refs`` after the data is built, so it measures training or evaluation alone; falls
back to ``getrusage`` peak where the reset is unavailable).

    PYTHONPATH=src python benchmarks/scaling.py all --out benchmarks/scaling            # everything (~25 min)
    PYTHONPATH=src python benchmarks/scaling.py train --items 100000 --steps 30          # one configuration
    PYTHONPATH=src torchrun --nproc-per-node 2 benchmarks/scaling.py train --items 10000 # two processes
    PYTHONPATH=src python benchmarks/scaling.py eval --items 1000000 --users 4096

Timings are medians over ``--repeats`` runs; the machine and its load average are recorded with them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sinerec import distributed
from sinerec.config import load_config
from sinerec.data.preprocess import preprocess
from sinerec.data.splits import EvalSet, make_split
from sinerec.data.synthetic import taobao_like
from sinerec.evaluate import EvalConfig, evaluate
from sinerec.train import Trainer

MB = 1 << 20


# --------------------------------------------------------------------------------------------- memory
def rss_mb() -> float:
    """Current resident set size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    """CPU time of this process, all threads (user + system): less sensitive than wall time to other jobs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM); False where that is unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb(reset_ok: bool) -> float:
    if reset_ok:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------- workers
def build_data(args: argparse.Namespace) -> tuple[Any, Any]:
    log = taobao_like(n_users=args.users, n_items=args.items, n_concepts=args.concepts, seed=args.seed)
    data = preprocess(log)
    del log
    split = make_split(data, load_config().protocol)
    gc.collect()
    return data, split


def config_for(args: argparse.Namespace) -> Any:
    return load_config(overrides=[
        "model=sine", f"model_params.dim={args.dim}", f"model_params.num_concepts={args.num_concepts}",
        f"model_params.num_interests={args.num_interests}", f"data.max_len={args.max_len}",
        "train.loss=sampled", f"train.num_negatives={args.negatives}", f"train.batch_size={args.batch_size}",
        "train.progress=false", "train.device=cpu", f"train.threads={args.threads or torch.get_num_threads()}",
        f"train.seed={args.seed}",
        f"train.optimizer={'adam' if args.optimizer == 'adam' else 'lazy-adam'}"])


class TorchSparseAdam:
    """The alternative to ``LazyAdam`` measured against it: ``torch.optim.SparseAdam`` for the (sparse) item
    tables and fused ``torch.optim.Adam`` for the other parameters (what ``train_epoch`` calls of an optimizer)."""

    def __init__(self, model: Any, lr: float) -> None:
        tables = {id(t.weight) for t in model.item_tables()}
        self.parts = [torch.optim.SparseAdam([p for p in model.parameters() if id(p) in tables], lr=lr),
                      torch.optim.Adam([p for p in model.parameters() if id(p) not in tables], lr=lr, fused=True)]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for part in self.parts:
            part.step()


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    """Examples per second and peak memory of ``--steps`` optimisation steps (after ``--warmup``)."""
    ctx = distributed.init("cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    data, split = build_data(args)
    rss_data = rss_mb()
    config = config_for(args)
    trainer = Trainer(config, data, split, log=lambda *a: None, dist=ctx)
    optimizer, batches = trainer.make_optimizer(), trainer.make_batches()
    if args.optimizer == "torch-sparse-adam":
        optimizer = TorchSparseAdam(trainer.model, config.train.lr)
    trainer.wrap_step_module()
    rss_model = rss_mb()
    reset_ok = reset_peak()
    config.train.max_steps_per_epoch = args.warmup
    trainer.train_epoch(0, optimizer, batches)  # allocates gradients and Adam's moments
    config.train.max_steps_per_epoch = args.steps
    cpu0 = cpu_seconds()
    record = trainer.train_epoch(1, optimizer, batches)
    cpu = cpu_seconds() - cpu0
    peak = peak_mb(reset_ok)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    table = trainer.model.item_embeddings()
    out: dict[str, Any] = {
        "items": data.num_items, "users": data.num_users, "interactions": data.num_interactions,
        "train_examples": len(split.train), "processes": ctx.world_size, "rank": ctx.rank,
        "threads": torch.get_num_threads(), "dim": args.dim, "batch_size": args.batch_size,
        "negatives": args.negatives, "steps": args.steps, "optimizer": args.optimizer,
        "examples_per_second": record["examples_per_second"], "seconds": record["seconds"],
        "ms_per_step": 1000 * record["seconds"] / args.steps, "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_example_this_rank": round(1000 * cpu / record["examples"], 4),
        "rss_data_mb": round(rss_data, 1), "rss_before_training_mb": round(rss_model, 1),
        "peak_rss_mb": round(peak, 1), "peak_is_training_only": reset_ok,
        "table_mb": round(table.numel() * table.element_size() / MB, 1),
        "params_mb": round(n_params * 4 / MB, 1), "load_before": load0, "load_after": os.getloadavg()[0],
    }
    # parameters + gradients + Adam's two moments: the state that grows with the catalogue
    out["table_state_mb"] = round(4 * out["table_mb"], 1)
    out["peak_minus_table_state_mb"] = round(peak - 4 * out["table_mb"], 1)
    # per-step work every rank repeats in full whatever the number of processes: Adam over all parameters
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        optimizer.step()  # with the last step's gradients (this changes the weights; nothing uses them after)
        times.append(time.perf_counter() - t0)
    out["optimizer_step_ms"] = round(1000 * statistics.median(times), 2)
    trainer.unwrap_step_module()  # DDP must not outlive the process group
    if ctx.enabled:  # what DDP adds per step: all-reduce of every gradient (one flat buffer of that size)
        flat = torch.zeros(n_params)
        times = []
        for _ in range(args.allreduce_repeats):
            distributed.barrier(ctx)
            t0 = time.perf_counter()
            torch.distributed.all_reduce(flat)
            times.append(time.perf_counter() - t0)
        out["allreduce_ms"] = round(1000 * statistics.median(times), 2)
        out["gradient_mb"] = round(n_params * 4 / MB, 1)
    distributed.cleanup(ctx)
    return out


def cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    """Full-ranking evaluation time of ``--eval-users`` queries over the whole catalogue (SINE, as initialised:
    the cost does not depend on the weights)."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    load0 = os.getloadavg()[0]
    data, split = build_data(args)
    q = min(args.eval_users, len(split.test))
    t = split.test
    queries = EvalSet(users=t.users[:q], hist_start=t.hist_start[:q], hist_end=t.hist_end[:q],
                      target_offsets=t.target_offsets[:q + 1], targets=t.targets[:t.target_offsets[q]])
    config = config_for(args)
    trainer = Trainer(config, data, split, log=lambda *a: None)
    eval_cfg = EvalConfig(batch_size=args.eval_batch, item_chunk=args.item_chunk)
    rss_before = rss_mb()
    reset_ok = reset_peak()
    t0 = time.perf_counter()
    res = evaluate(trainer.model, data, queries, args.max_len, True, eval_cfg)
    seconds = time.perf_counter() - t0
    peak = peak_mb(reset_ok)
    k = max(eval_cfg.ks)
    # running top-k per batch: scores (B, chunk) float32 plus the kept candidates, never B x M
    bound = args.eval_batch * (k + min(args.item_chunk, data.num_items + 1)) * 4 / MB
    return {"items": data.num_items, "eval_users": q, "dim": args.dim, "threads": torch.get_num_threads(),
            "eval_batch": args.eval_batch, "item_chunk": args.item_chunk, "seconds": round(seconds, 2),
            "users_per_second": round(q / seconds, 1), "rss_before_mb": round(rss_before, 1),
            "peak_rss_mb": round(peak, 1), "peak_minus_before_mb": round(peak - rss_before, 1),
            "score_chunk_mb": round(bound, 1), "users_x_items_matrix_mb": round(q * data.num_items * 4 / MB, 1),
            "HR@100": res.means["HR@100"], "load_before": load0, "load_after": os.getloadavg()[0]}


# --------------------------------------------------------------------------------------------- driver
def run_child(cmd: list[str], timeout: float, wait_policy: str = "PASSIVE") -> list[dict[str, Any]]:
    """Run one configuration in a fresh process; its JSON lines (one per rank).

    ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads sleep instead of spinning at barriers. On a machine shared with
    other jobs a spinning thread waits for a descheduled sibling at every parallel region (measured here: 2
    threads 50x slower than 1, see the report), which would measure the scheduler, not the code.
    """
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = wait_policy
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1] / "src"),
                                                    env.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def common_flags(args: argparse.Namespace) -> list[str]:
    return ["--users", str(args.users), "--dim", str(args.dim), "--batch-size", str(args.batch_size),
            "--negatives", str(args.negatives), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--num-concepts", str(args.num_concepts), "--num-interests", str(args.num_interests)]


def median_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the numeric fields over repeated runs (fields equal in every run keep their value)."""
    out = dict(rows[0])
    for key, value in rows[0].items():
        values = [r[key] for r in rows]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and len(set(values)) > 1:
            out[key] = statistics.median(values)
    out["repeats"] = len(rows)
    return out


def cmd_all(args: argparse.Namespace) -> None:
    me = [sys.executable, str(Path(__file__).resolve())]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                str(args.port), str(Path(__file__).resolve())]
    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results: dict[str, Any] = {"command": " ".join(sys.argv), "date": started, "machine": machine(),
                               "settings": {k: v for k, v in vars(args).items() if k != "func"}}
    # Repeats are interleaved (every configuration once, then again) so that a burst of load from other
    # jobs hits all configurations alike.
    train_cmds = {items: me + ["train", "--items", str(items), "--threads", str(args.threads)] + common_flags(args)
                  for items in args.catalogues}
    ddp_cmds = {}
    for items in args.ddp_catalogues:
        flags = ["train", "--items", str(items)] + common_flags(args)
        ddp_cmds[(items, "1 process x 2 threads")] = me + flags + ["--threads", "2"]
        ddp_cmds[(items, "1 process x 1 thread")] = me + flags + ["--threads", "1"]
        ddp_cmds[(items, "2 processes x 1 thread")] = torchrun + flags + ["--threads", "1"]
        # a rank's share of the step: with the full step's time this separates the per-step fixed cost
        # (operator dispatch, sampler, optimizer, table-sized gradient buffers) from the per-example cost
        half = list(flags)
        half[half.index("--batch-size") + 1] = str(args.batch_size // 2)
        ddp_cmds[(items, "1 process x 1 thread, half batch")] = me + half + ["--threads", "1"]
    active_key = (args.ddp_catalogues[0], "1 process x 2 threads, OMP_WAIT_POLICY=ACTIVE (spinning)")
    eval_cmd = me + ["eval", "--items", str(args.eval_items), "--eval-users", str(args.eval_users),
                     "--threads", str(args.threads)] + common_flags(args)
    train_rows: dict[int, list[dict[str, Any]]] = {items: [] for items in train_cmds}
    ddp_rows: dict[tuple[int, str], list[dict[str, Any]]] = {key: [] for key in ddp_cmds}
    eval_rows: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        for items, cmd in train_cmds.items():
            train_rows[items].append(run_child(cmd, args.timeout)[0])
            print(json.dumps(train_rows[items][-1]), flush=True)
        if rep < args.eval_repeats:
            eval_rows.append(run_child(eval_cmd, args.timeout)[0])
            print(json.dumps(eval_rows[-1]), flush=True)
        for key, cmd in ddp_cmds.items():
            ranks = run_child(cmd, args.timeout)
            row = next(r for r in ranks if r["rank"] == 0)
            row["peak_rss_mb_all_ranks"] = round(sum(r["peak_rss_mb"] for r in ranks), 1)
            row["cpu_ms_per_example"] = round(1000 * sum(r["cpu_seconds"] for r in ranks)
                                              / (row["steps"] * row["batch_size"]), 4)
            ddp_rows[key].append(row)
            print(json.dumps(row), flush=True)
        if rep == 0:  # once: what spinning OpenMP threads do on this shared machine
            row = run_child(ddp_cmds[(active_key[0], "1 process x 2 threads")], args.timeout, "ACTIVE")[0]
            row["peak_rss_mb_all_ranks"] = row["peak_rss_mb"]
            row["cpu_ms_per_example"] = row["cpu_ms_per_example_this_rank"]
            ddp_rows[active_key] = [row]
            print(json.dumps(row), flush=True)
    results["catalogue"] = [median_of(rows) for rows in train_rows.values()]
    results["evaluation"] = median_of(eval_rows)
    results["processes"] = [{"setup": key[1], **median_of(rows)} for key, rows in ddp_rows.items()]
    results["runs"] = {"catalogue": train_rows, "evaluation": eval_rows,
                       "processes": {f"{k[0]} items, {k[1]}": v for k, v in ddp_rows.items()}}
    results["runs"]["catalogue"] = {str(k): v for k, v in train_rows.items()}
    results["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(report(results))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def report(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [
        "# Scaling: catalogue size, evaluation over 1M items, 1 vs 2 processes", "",
        f"Command: `{r['command']}`  ", f"Date: {r['date']} to {r['finished']}  ",
        f"Machine: {r['machine']['cpus']} CPU cores, no GPU, {r['machine']['platform']}, torch "
        f"{r['machine']['torch']}; shared with other jobs (load average before/after each run in "
        "results.json). OpenMP threads wait passively (`OMP_WAIT_POLICY=PASSIVE`) except in the one row that "
        "says otherwise.", "",
        f"Data: `taobao_like` ({s['users']:,} users, ~30 interactions each, 1,000 planted concepts, every item "
        f"present). SINE (default variant), D = {s['dim']}, L = {s['num_concepts']}, K = {s['num_interests']}, "
        f"T = 20, sampled softmax with {s['negatives']} shared negatives, global batch {s['batch_size']}, Adam. "
        f"Medians of {s['repeats']} fresh processes, {s['steps']} timed steps after {s['warmup']} warm-up steps.",
        "", "## Training against catalogue size (1 process, 2 threads)", "",
        "| items | examples/s | ms/step | CPU ms/example | item table MB | RSS before training MB | peak RSS MB "
        "| added by training MB | added - 4 x table MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in r["catalogue"]:
        added = c["peak_rss_mb"] - c["rss_before_training_mb"]
        lines.append(f"| {c['items']:,} | {c['examples_per_second']:,.0f} | {c['ms_per_step']:.0f} | "
                     f"{c['cpu_ms_per_example_this_rank']:.3f} | {c['table_mb']:,.0f} | "
                     f"{c['rss_before_training_mb']:,.0f} | {c['peak_rss_mb']:,.0f} | {added:,.0f} | "
                     f"{added - 4 * c['table_mb']:,.0f} |")
    lines += ["", "RSS before training: interpreter, torch, data, the model (its item table included) and the "
              "sampler. Added by training: the gradient, Adam's two moments and one transient dense gradient of "
              "the table lookups (4 x the table), plus activations and the like, which do not grow with the "
              "catalogue (last column)."]
    e = r["evaluation"]
    lines += ["", "## Full-ranking evaluation", "",
              f"{e['eval_users']:,} users ranked over all {e['items']:,} items (history excluded, top 100, "
              f"batches of {e['eval_batch']} users, item chunks of {e['item_chunk']:,}): **{e['seconds']:.1f} s** "
              f"({e['users_per_second']:,.0f} users/s), peak RSS {e['peak_rss_mb']:,.0f} MB, "
              f"{e['peak_minus_before_mb']:,.0f} MB above the resident model and data; one batch's score chunk is "
              f"{e['score_chunk_mb']:,.0f} MB, a users x items matrix would be {e['users_x_items_matrix_mb']:,.0f} "
              "MB.", "", "## 1 vs 2 processes (torchrun, gloo)", "",
              "| items | setup | examples/s | ms/step | CPU ms/example (all ranks) | all-reduce ms/step (gradient MB) "
              "| Adam step ms | ms/step over 1 process x 2 threads | peak RSS MB (all ranks) |",
              "|---|---|---|---|---|---|---|---|---|"]
    base = {p["items"]: p["ms_per_step"] for p in r["processes"] if p["setup"] == "1 process x 2 threads"}
    for p in r["processes"]:
        ar = f"{p['allreduce_ms']:.1f} ({p['gradient_mb']:,.0f})" if "allreduce_ms" in p else "-"
        extra = f"{p['ms_per_step'] - base[p['items']]:+.1f}" if p["items"] in base else "-"
        lines.append(f"| {p['items']:,} | {p['setup']} | {p['examples_per_second']:,.0f} | {p['ms_per_step']:.0f} | "
                     f"{p['cpu_ms_per_example']:.3f} | {ar} | {p.get('optimizer_step_ms', float('nan')):.1f} | "
                     f"{extra} | {p['peak_rss_mb_all_ranks']:,.0f} |")
    rows = {(p["items"], p["setup"]): p for p in r["processes"]}
    for items in sorted({p["items"] for p in r["processes"]}):
        one, half = rows.get((items, "1 process x 1 thread")), rows.get((items, "1 process x 1 thread, half batch"))
        two = rows.get((items, "2 processes x 1 thread"))
        if one and half and two:
            fixed = 2 * half["ms_per_step"] - one["ms_per_step"]  # t(B) = fixed + B c, t(B/2) = fixed + B c / 2
            lines.append(f"\n{items:,} items: a step of 1 thread costs {one['ms_per_step']:.1f} ms, half a step "
                         f"{half['ms_per_step']:.1f} ms, so {fixed:.1f} ms of each step do not shrink with the batch. "
                         "Two processes that get no more CPU than one (no idle core) pay that fixed part twice, "
                         "plus the all-reduce: at most "
                         f"{one['ms_per_step']:.1f} + {fixed:.1f} + {two['allreduce_ms']:.1f} = "
                         f"{one['ms_per_step'] + fixed + two['allreduce_ms']:.1f} ms/step, measured "
                         f"{two['ms_per_step']:.1f}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="rewrite results.md from results.json")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "scaling"))
    for name in ("train", "eval", "all"):
        p = sub.add_parser(name)
        p.add_argument("--items", type=int, default=10_000)
        p.add_argument("--users", type=int, default=50_000)
        p.add_argument("--concepts", type=int, default=1000, help="planted concepts of the data")
        p.add_argument("--dim", type=int, default=64)
        p.add_argument("--num-concepts", type=int, default=100, help="SINE's L")
        p.add_argument("--num-interests", type=int, default=4, help="SINE's K")
        p.add_argument("--max-len", type=int, default=20)
        p.add_argument("--batch-size", type=int, default=256, help="global batch")
        p.add_argument("--negatives", type=int, default=1000)
        p.add_argument("--steps", type=int, default=40)
        p.add_argument("--warmup", type=int, default=5)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--optimizer", default="adam", choices=["adam", "lazy-adam", "torch-sparse-adam"],
                       help="train.optimizer (torch-sparse-adam: sparse tables with torch.optim.SparseAdam)")
        p.add_argument("--allreduce-repeats", type=int, default=10)
        p.add_argument("--eval-users", type=int, default=4096)
        p.add_argument("--eval-batch", type=int, default=512)
        p.add_argument("--item-chunk", type=int, default=1 << 16)
        if name == "all":
            p.add_argument("--catalogues", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
            p.add_argument("--eval-items", type=int, default=1_000_000)
            p.add_argument("--ddp-catalogues", type=int, nargs="+", default=[10_000, 100_000])
            p.add_argument("--repeats", type=int, default=3)
            p.add_argument("--eval-repeats", type=int, default=2)
            p.add_argument("--port", type=int, default=29533)
            p.add_argument("--timeout", type=float, default=1800)
            p.add_argument("--out", default=str(Path(__file__).resolve().parent / "scaling"))
    args = parser.parse_args()
    if args.command == "all":
        cmd_all(args)
    elif args.command == "report":
        out = Path(args.out)
        (out / "results.md").write_text(report(json.loads((out / "results.json").read_text())))
    else:
        print(json.dumps(cmd_train(args) if args.command == "train" else cmd_eval(args)), flush=True)


if __name__ == "__main__":
    main()
