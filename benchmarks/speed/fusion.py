"""Eager against ``torch.compile``, float32 against bfloat16 autocast: one model's training step, interleaved.

Issue 13 item 2 asks whether fusing the training step (``train.compile``) and bfloat16 autocast
(``train.amp=bf16``) pay on this machine. This builds one trainer per combination of ``--modes`` (``eager``,
``compile``) and ``--precisions`` (``float32``, ``bf16``) in one process, warms each up (one epoch of
``--steps`` steps: the compilation happens there), then times ``--rounds`` rounds in which every combination
trains one epoch of ``--steps`` steps in turn, so a change of the machine's load hits all of them alike. It
reports each combination's median examples/s, its ratio to eager float32 in the same rounds, and the fraction
of the measured GEMM peak of its precision (``speed.py``'s 2048 x 1024 x 1024 product: the mean of the median of 5
timings before the rounds and that of 5 after them; FLOPs per example from PyTorch's counter, as in ``speed.py``).

    python benchmarks/speed/fusion.py --data-dir ../shared/data/ml-1m --out benchmarks/speed/fusion
    python benchmarks/speed/fusion.py --quick --out /tmp/fusion          # tiny synthetic data, seconds

Writes ``OUT/fusion.json`` (every timing, medians, ratios, machine, command, date) and ``OUT/fusion.md``.
"""

from __future__ import annotations

from sinerec import runtime

runtime.prefer_passive_wait()  # as the sinerec command does, before torch

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contention import machine  # noqa: E402
from speed import DTYPES, PRECISIONS, example_flops, gemm_peak, prepared_data  # noqa: E402

from sinerec.config import load_config  # noqa: E402
from sinerec.models import MODELS  # noqa: E402
from sinerec.pipeline import Prepared  # noqa: E402
from sinerec.train import Trainer  # noqa: E402

MODES = ("eager", "compile")


def build(args: argparse.Namespace, prepared: Prepared, mode: str, precision: str, warm: bool = True) -> dict[str, Any]:
    """A trainer for one combination, its optimizer and batches, warmed up by one epoch (``warm``)."""
    values: dict[str, Any] = {"model": args.model, "train": {
        "batch_size": args.batch, "amp": PRECISIONS[precision], "compile": mode == "compile",
        "max_steps_per_epoch": args.steps, "progress": False, "epochs": args.rounds + 1}}
    if args.quick:
        values["model_params"] = {"dim": 16}
    trainer = Trainer(load_config(values), prepared.data, prepared.split, log=lambda *a: None)
    trainer.wrap_step_module()
    entry = {"trainer": trainer, "optimizer": trainer.make_optimizer(), "batches": trainer.make_batches()}
    if not warm:
        return entry
    t0 = time.perf_counter()
    with trainer.random_stream():
        trainer.train_epoch(0, entry["optimizer"], entry["batches"])
    entry["warmup_seconds"] = round(time.perf_counter() - t0, 2)
    return entry


def summarise(timings: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median examples/s per combination and its ratio to the median of ``eager/float32`` (when measured)."""
    medians = {name: statistics.median(values) for name, values in timings.items()}
    base = medians.get("eager/float32")
    return {name: {"examples_per_second": round(m, 1), "vs_eager_float32": round(m / base, 3) if base else None}
            for name, m in medians.items()}


def flops_per_example(args: argparse.Namespace, prepared: Prepared) -> float:
    """Forward + backward FLOPs of one training example (eager float32 trainer, one batch)."""
    entry = build(args, prepared, "eager", "float32", warm=False)
    with entry["trainer"].random_stream():
        return example_flops(entry["trainer"], entry["batches"])


def markdown(doc: dict[str, Any]) -> str:
    lines = ["# Eager against torch.compile, float32 against bf16 autocast (issue 13)", "",
             f"Command: `{doc['command']}`  ", f"Date: {doc['date']}  ",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['cpus']} CPUs, torch {doc['machine']['torch']}, "
             f"{doc['torch_threads']} torch threads; load average before / after: {doc['loadavg_before']} / "
             f"{doc['loadavg_after']}  ",
             f"Model {doc['model']}, batch {doc['batch']}, {doc['steps']} steps per timing, {doc['rounds']} "
             f"interleaved rounds; data: {doc['data']}", "",
             f"GEMM peak (mean of the medians before and after the rounds): float32 "
             f"{doc['gemm_peak_gflops']['float32']:.1f} GFLOP/s, bfloat16 {doc['gemm_peak_gflops']['bf16']:.1f} "
             f"GFLOP/s; {doc['flops_per_example'] / 1e6:.2f} MFLOP per training example", "",
             "| mode | precision | examples/s (median) | vs eager float32 | % of its precision's GEMM peak | "
             "warm-up s (incl. compilation) |", "|---|---|---|---|---|---|"]
    for name, s in doc["summary"].items():
        mode, precision = name.split("/")
        ratio = "" if s["vs_eager_float32"] is None else f"{s['vs_eager_float32']:.2f}x"
        lines.append(f"| {mode} | {precision} | {s['examples_per_second']:,.0f} | {ratio} | "
                     f"{100 * s['fraction_of_peak']:.1f} | {doc['warmup_seconds'][name]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-1m")
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data, dim 16: a smoke test")
    parser.add_argument("--model", default="sine", choices=sorted(MODELS))
    parser.add_argument("--modes", default="eager,compile")
    parser.add_argument("--precisions", default="float32,bf16")
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10, help="training steps per timing")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timings per combination")
    parser.add_argument("--out", default="benchmarks/speed/fusion")
    args = parser.parse_args(argv)
    modes, precisions = args.modes.split(","), args.precisions.split(",")
    unknown = sorted(set(modes) - set(MODES)) + sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        parser.error(f"unknown modes or precisions: {unknown} (modes {list(MODES)}, precisions {list(PRECISIONS)})")
    prepared = prepared_data(args)
    flops = flops_per_example(args, prepared)
    peaks_before = {name: gemm_peak(torch.device("cpu"), DTYPES[name], 5) for name in precisions}
    loadavg_before = os.getloadavg()[0]
    entries = {f"{m}/{p}": build(args, prepared, m, p) for m in modes for p in precisions}
    timings: dict[str, list[float]] = {name: [] for name in entries}
    for round_ in range(args.rounds):
        for name, e in entries.items():
            with e["trainer"].random_stream():
                record = e["trainer"].train_epoch(round_ + 1, e["optimizer"], e["batches"])
            timings[name].append(record["examples_per_second"])
            print(json.dumps({"round": round_, "combination": name,
                              "examples_per_second": record["examples_per_second"]}), flush=True)
    peaks = {name: statistics.mean([peaks_before[name], gemm_peak(torch.device("cpu"), DTYPES[name], 5)])
             for name in precisions}
    summary = summarise(timings)
    for name, entry in summary.items():
        entry["fraction_of_peak"] = round(entry["examples_per_second"] * flops / peaks[name.split("/")[1]], 4)
    doc = {"command": shlex.join([Path(sys.executable).name, *sys.argv]),
           "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
           "torch_threads": torch.get_num_threads(), "model": args.model, "batch": args.batch,
           "steps": args.steps, "rounds": args.rounds,
           "data": "synthetic planted concepts (300 users, 200 items)" if args.quick else f"ML-1M ({args.data_dir})",
           "loadavg_before": round(loadavg_before, 2), "loadavg_after": round(os.getloadavg()[0], 2),
           "warmup_seconds": {name: e["warmup_seconds"] for name, e in entries.items()},
           "flops_per_example": flops, "gemm_peak_gflops": {k: round(v / 1e9, 2) for k, v in peaks.items()},
           "timings": timings, "summary": summary}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fusion.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "fusion.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
