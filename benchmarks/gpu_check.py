"""GPU check: training examples per second and full-ranking evaluation time of SINE on MovieLens-1M.

GPU NUMBERS ARE PENDING: this script was written and smoke-tested on a 2-core CPU machine without a GPU
(``--device cpu --max-steps 20``); it has not been run on a GPU yet. Run it on one and commit its output.

It runs in a few minutes: data preparation (~10 s), ``--warmup`` untimed steps (CUDA kernels, autotuning,
``--compile``), ``--max-steps`` timed training steps of the paper's settings (D 128, L 50, K 4, T 20, full
softmax over the 3,706 items, bf16 autocast where ``train.amp=auto`` gives it unless ``--amp off``, pinned-memory
prefetching), then a timed full-ranking evaluation of every validation and test user (6,040 each, history
excluded).

    python benchmarks/gpu_check.py --data-dir ../shared/data/ml-1m                     # CUDA
    python benchmarks/gpu_check.py --data-dir ../shared/data/ml-1m --compile           # + torch.compile
    python benchmarks/gpu_check.py --data-dir ../shared/data/ml-1m --device cpu --max-steps 20 --warmup 2
    torchrun --nproc-per-node 4 benchmarks/gpu_check.py --data-dir ../shared/data/ml-1m  # 4 GPUs (DDP)

Prints one JSON object (rank 0) and, with ``--out FILE``, writes it there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from sinerec import distributed
from sinerec.config import load_config
from sinerec.job import apply_process_settings
from sinerec.pipeline import prepare
from sinerec.train import Trainer, resolve_device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder holding ML-1M's ratings.dat (and movies.dat)")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, cpu or auto")
    p.add_argument("--max-steps", type=int, default=300, help="timed training steps (default 300)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first (default 20)")
    p.add_argument("--batch-size", type=int, default=1024, help="global batch (default 1024)")
    p.add_argument("--loss", choices=["full", "sampled"], default="full")
    p.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--eval-batch", type=int, default=2048, help="users per evaluation batch")
    p.add_argument("--threads", type=int, help="CPU threads (default torch's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="also write the JSON result to this file")
    args = p.parse_args(argv)

    config = load_config(overrides=[
        "model=sine", "data.dataset=ml-1m", f"data.data_dir={json.dumps(args.data_dir)}", "protocol.name=loo",
        "model_params.dim=128", "model_params.num_concepts=50", "model_params.num_interests=4",
        f"train.batch_size={args.batch_size}", f"train.loss={args.loss}", f"train.amp={args.amp}",
        f"train.compile={str(args.compile).lower()}", f"train.device={args.device}", "train.progress=false",
        f"eval.batch_size={args.eval_batch}", *([f"train.threads={args.threads}"] if args.threads else []),
        *args.overrides])
    ctx = distributed.init(resolve_device(config.train.device))
    apply_process_settings(config)  # threads and seed, as the training job sets them
    t0 = time.perf_counter()
    prepared = prepare(config)
    prep_seconds = time.perf_counter() - t0
    trainer = Trainer(config, prepared.data, prepared.split, log=lambda *a: None, dist=ctx)
    optimizer, batches = trainer.make_optimizer(), trainer.make_batches()
    trainer.wrap_step_module()

    config.train.max_steps_per_epoch = args.warmup
    t0 = time.perf_counter()
    trainer.train_epoch(0, optimizer, batches)
    sync(trainer.device)
    warmup_seconds = time.perf_counter() - t0
    config.train.max_steps_per_epoch = args.max_steps
    sync(trainer.device)
    record = trainer.train_epoch(1, optimizer, batches)  # its loss total syncs the device at the end
    trainer.unwrap_step_module()  # DDP must not outlive the process group
    evals = {}
    for which in ("valid", "test"):
        sync(trainer.device)
        t0 = time.perf_counter()
        res = trainer.evaluate(which)
        sync(trainer.device)
        evals[which] = {"seconds": round(time.perf_counter() - t0, 3), "users": res.n_queries,
                        "HR@10": res.means["HR@10"]}
    peak = torch.cuda.max_memory_allocated(trainer.device) / 2**20 if trainer.device.type == "cuda" else None
    result = {
        "dataset": prepared.data.name, "users": prepared.data.num_users, "items": prepared.data.num_items,
        "train_examples": len(prepared.split.train), "device": str(trainer.device),
        "gpu": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else None,
        "processes": ctx.world_size, "threads": torch.get_num_threads(), "amp_bf16": trainer.autocast,
        "compile": args.compile, "prefetch": trainer.prefetch, "batch_size": args.batch_size, "loss_kind": args.loss,
        "prepare_seconds": round(prep_seconds, 2), "warmup_steps": args.warmup,
        "warmup_seconds": round(warmup_seconds, 2), "timed_steps": args.max_steps,
        "train_seconds": record["seconds"], "examples_per_second": record["examples_per_second"],
        "epoch_minutes_at_this_rate": round(len(prepared.split.train) / record["examples_per_second"] / 60, 2),
        "train_loss": record["loss"], "eval": evals, "peak_gpu_memory_mb": peak,
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "cpus": os.cpu_count(), "command": " ".join(sys.argv),
    }
    distributed.cleanup(ctx)
    if ctx.is_main:
        print(json.dumps(result, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
