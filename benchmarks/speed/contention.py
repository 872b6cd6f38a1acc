"""`sinerec train` throughput idle and next to other busy PyTorch jobs, old defaults against new (issue 13).

Measures, in one run and interleaved (every repeat runs each load level and each variant in turn), the
training examples/s of ``sinerec train`` (SINE on ML-1M, batch 2048, ``train.max_steps_per_epoch`` steps, one
epoch; the rate is the epoch's own ``examples_per_second`` from ``log.jsonl``) with 0, 1 and 2 other PyTorch
jobs busy on the machine. The other jobs are plain ``python -c`` matrix-multiply loops with PyTorch's default
settings (no OMP_WAIT_POLICY, no OMP_NUM_THREADS), started by this script and killed after each measurement.

Variants of sinerec's own process settings:

- ``old``: OpenMP's and torch's defaults (``SINEREC_PROCESS_DEFAULTS=0``: spinning waits, all cores);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` with torch's default thread count;
- ``new``: sinerec's defaults (``sinerec.runtime``: passive waits, threads = the usable CPUs; ``train.amp =
  "auto"``: bf16 autocast for SINE on CPUs with bf16 in hardware, float32 elsewhere);
- ``new-float32``: sinerec's defaults in float32 (``--set train.amp=off``);
- ``new-bf16``: sinerec's defaults in bf16 autocast (``--set train.amp=bf16``).

Each measurement records the precision the run trained in.

Writes ``OUT/contention.json`` (every measurement, medians, ratios loaded/idle, machine, command, date) and
``OUT/contention.md``. Usage (from the repository root; about 10 minutes on 2 cores)::

    python benchmarks/speed/contention.py --data-dir ../shared/data/ml-1m --out benchmarks/speed
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LOADER = ("import torch, sys\na = torch.randn(1024, 1024)\nprint('ready', flush=True)\n"
          "while True:\n    a @ a\n")
VARIANTS = {"old": {"SINEREC_PROCESS_DEFAULTS": "0"},
            "passive": {"OMP_WAIT_POLICY": "PASSIVE", "SINEREC_PROCESS_DEFAULTS": "0"},
            "new": {}, "new-float32": {}, "new-bf16": {}}
#: the command-line settings of a variant (beside its environment)
VARIANT_ARGS = {"new-float32": ["--set", "train.amp=off"], "new-bf16": ["--set", "train.amp=bf16"]}
CLEAN = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "SINEREC_PROCESS_DEFAULTS")


def clean_env() -> dict[str, str]:
    """This process's environment without any thread or wait-policy setting (what a user's shell has)."""
    return {k: v for k, v in os.environ.items() if k not in CLEAN}


def start_loaders(n: int) -> list[subprocess.Popen]:
    """``n`` busy PyTorch jobs with default settings, returned once each has imported torch and started."""
    procs = [subprocess.Popen([sys.executable, "-c", LOADER], env=clean_env(), stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def train_once(variant: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One ``sinerec train`` in a fresh process; its epoch's examples/s and the torch threads it used."""
    out = work / f"run-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "sinerec", "train", "--model", "sine", "--dataset", "ml-1m",
               "--data-dir", args.data_dir, "--batch-size", str(args.batch_size), "--epochs", "1", "--quiet",
               "--set", f"train.max_steps_per_epoch={args.steps}", *VARIANT_ARGS.get(variant, []), "--out", str(out)]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**clean_env(), **VARIANTS[variant], "PYTHONPATH": src}
    loadavg = Path("/proc/loadavg").read_text().split()[:4] if Path("/proc/loadavg").exists() else None
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    record = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    metrics = json.loads((out / "metrics.json").read_text())
    return {"examples_per_second": record["examples_per_second"], "seconds": record["seconds"],
            "torch_threads": find_key(metrics, "torch_threads"), "precision": find_key(metrics, "precision"),
            "loadavg_before": loadavg}


def find_key(doc: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in a JSON document (None if absent)."""
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        doc = list(doc.values())
    if isinstance(doc, list):
        for value in doc:
            found = find_key(value, key)
            if found is not None:
                return found
    return None


def summarise(rows: list[dict[str, Any]], variants: list[str], loads: list[int]) -> dict[str, Any]:
    """Median examples/s per (variant, load) and its ratio to the same variant's idle median."""
    summary: dict[str, Any] = {}
    for v in variants:
        med = {n: statistics.median(r["examples_per_second"] for r in rows if r["variant"] == v and r["load"] == n)
               for n in loads}
        summary[v] = {f"load{n}": {"median_examples_per_second": round(med[n], 1),
                                   "ratio_to_idle": round(med[n] / med[0], 3) if 0 in med else None}
                      for n in loads}
    return summary


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else None
    import torch

    return {"cpu": cpu, "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def markdown(doc: dict[str, Any]) -> str:
    lines = ["# `sinerec train` next to busy PyTorch jobs (issue 13)", "",
             f"Command: `{doc['command']}`  ", f"Date: {doc['date']}  ",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['cpus']} CPUs, torch {doc['machine']['torch']}  ",
             f"Settings: SINE, ML-1M, batch {doc['batch_size']}, {doc['steps']} steps, {doc['repeats']} repeats "
             "(interleaved); medians of examples/s; ratio = loaded median / the same variant's idle median.", "",
             doc["note"], "",
             "| variant | other jobs | examples/s (median) | ratio to idle | torch threads | precision |",
             "|---|---|---|---|---|---|"]
    for v, per_load in doc["summary"].items():
        for key, s in per_load.items():
            n = int(key[4:])
            mine = [r for r in doc["rows"] if r["variant"] == v and r["load"] == n]
            threads = sorted({r["torch_threads"] for r in mine})
            precision = sorted({str(r.get("precision")) for r in mine})
            lines.append(f"| {v} | {n} | {s['median_examples_per_second']:,.0f} | {s['ratio_to_idle']} | "
                         f"{', '.join(map(str, threads))} | {', '.join(precision)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-1m")
    parser.add_argument("--out", default="benchmarks/speed")
    parser.add_argument("--steps", type=int, default=10, help="training steps per measurement")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loads", default="0,1,2", help="numbers of other busy PyTorch jobs")
    parser.add_argument("--variants", default="old,passive,new")
    parser.add_argument("--note", default="", help="a line on the conditions (e.g. a shared machine)")
    parser.add_argument("--rows", help="summarise these measurements (the JSON lines a run printed) instead")
    args = parser.parse_args(argv)
    loads = [int(x) for x in args.loads.split(",")]
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {sorted(VARIANTS)}")
    rows = [json.loads(line) for line in Path(args.rows).read_text().splitlines()
            if line.startswith("{")] if args.rows else []
    with tempfile.TemporaryDirectory(prefix="sinerec-contention-") as tmp:
        for repeat in range(0 if args.rows else args.repeats):
            for n in loads:
                loaders = start_loaders(n)
                try:
                    for v in variants:
                        row = {"repeat": repeat, "load": n, "variant": v, **train_once(v, args, Path(tmp))}
                        print(json.dumps(row), flush=True)
                        rows.append(row)
                finally:
                    stop(loaders)
    loads = [n for n in loads if any(r["load"] == n for r in rows)]
    variants = [v for v in variants if any(r["variant"] == v for r in rows)]
    doc = {"command": shlex.join([Path(sys.executable).name, *sys.argv]),
           "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": machine(), "batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
           "note": args.note,
           "variants": {v: {"env": VARIANTS[v], "args": VARIANT_ARGS.get(v, [])} for v in variants},
           "repeats_done": {v: {n: sum(r["variant"] == v and r["load"] == n for r in rows) for n in loads}
                            for v in variants},
           "summary": summarise(rows, variants, loads), "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "contention.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "contention.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
