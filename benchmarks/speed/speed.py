"""Training examples/s as a fraction of the machine's measured GEMM peak, for every model (issue 13 item 3).

In one run: the peak of a 2048 x 1024 x 1024 matrix product in float32 and bfloat16 on the device (median of
repeats); then for each model, precision (float32; ``bf16``: ``train.amp=bf16``, bfloat16 autocast of the
training loss) and batch size: the training examples/s of ``sinerec.train.Trainer.train_epoch`` (the second of
two epochs of ``--steps`` steps, so the first step's warm-up is left out), the FLOPs of one training example
(forward and backward, PyTorch's FlopCounterMode on one batch) and so the fraction of the GEMM peak of that
precision that the rate reaches (the peak is timed again just before each row, so that the two are measured
side by side; the run's first timings are in ``gemm_peak_gflops``); and the evaluator's users/s (full ranking
of the validation queries, ``sinerec.evaluate.evaluate``, float32, once per model). ``--loads N`` repeats
everything next to N busy PyTorch jobs (``contention.py``'s loaders).

    python benchmarks/speed/speed.py --data-dir ../shared/data/ml-1m --out benchmarks/speed     # CPU
    python benchmarks/speed/speed.py --data-dir DATA/ml-1m --device cuda --compile --out OUT    # a GPU
    python benchmarks/speed/speed.py --quick --out /tmp/speed                                    # seconds
    python benchmarks/speed/speed.py --models sine,sasrec --precisions float32 --recbole-python RECBOLE_VENV/bin/python

``--recbole-python`` (RecBole's venv, README "RecBole side by side"): after sinerec's float32 row of SINE and
SASRec, ``recbole_speed.py`` measures RecBole's same model and batch in that interpreter (anomaly detection as
shipped and off), and the rows get the ratio sinerec/RecBole; without it nothing of RecBole runs.

Writes ``OUT/speed.json`` (every row, the peaks, machine, command, date) and ``OUT/speed.md``.
"""

from __future__ import annotations

from sinerec import runtime

runtime.prefer_passive_wait()  # as the sinerec command does, before torch

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contention import machine, start_loaders, stop  # noqa: E402
from recbole_speed import DIFFERENCES, RECBOLE_MODELS, markdown_rows, run_child, with_ratios  # noqa: E402

from sinerec.config import Config, load_config  # noqa: E402
from sinerec.data.preprocess import preprocess  # noqa: E402
from sinerec.data.splits import make_split  # noqa: E402
from sinerec.data.synthetic import planted_concepts  # noqa: E402
from sinerec.evaluate import evaluate  # noqa: E402
from sinerec.models import MODELS  # noqa: E402
from sinerec.pipeline import Prepared, prepare  # noqa: E402
from sinerec.train import Trainer  # noqa: E402

GEMM = (2048, 1024, 1024)
PRECISIONS = {"float32": "off", "bf16": "bf16"}
DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_peak(device: torch.device, dtype: torch.dtype, repeats: int) -> float:
    """FLOP/s of a GEMM x GEMM product in ``dtype``: the median of ``repeats`` timings of 10 products."""
    m, k, n = GEMM
    a, b = torch.randn(m, k, device=device).to(dtype), torch.randn(k, n, device=device).to(dtype)
    a @ b
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        times.append((time.perf_counter() - t0) / 10)
    return 2 * m * k * n / statistics.median(times)


def prepared_data(args: argparse.Namespace) -> Prepared:
    """ML-1M from ``--data-dir`` (leave-one-out), or with ``--quick`` a tiny planted-concept log."""
    if args.quick:
        config = load_config({"model": "sine"})
        data = preprocess(planted_concepts(n_users=300, n_items=200, n_concepts=20, length=25, seed=0))
        return Prepared(data, make_split(data, config.protocol), 0.0)
    return prepare(load_config({"model": "sine", "data": {"dataset": "ml-1m", "data_dir": args.data_dir}}))


def model_config(model: str, precision: str, batch: int, args: argparse.Namespace) -> Config:
    """The shipped settings of ``model`` (the README's SINE: D 128, K 4, L 50, T 20, full softmax) with the
    measured precision, batch, steps and device."""
    values: dict[str, Any] = {"model": model, "train": {
        "batch_size": batch, "amp": PRECISIONS[precision], "max_steps_per_epoch": args.steps, "progress": False,
        "device": args.device, "compile": args.compile, "epochs": 2}}
    if args.quick:
        values["model_params"] = {"dim": 16} if model != "mostpop" else {}
    return load_config(values)


def example_flops(trainer: Trainer, batches: Any) -> float:
    """Forward + backward FLOPs of one training example: PyTorch's counter over the epoch's first batch
    (inside the caller's ``trainer.random_stream()``); the gradients it leaves are the caller's to clear."""
    hist, target = next(iter(batches.epoch(0)))
    with FlopCounterMode(display=False) as counter:
        loss, _ = trainer.loss(hist, target)
        loss.backward()
    return counter.get_total_flops() / hist.shape[0]


def measure_model(model: str, precision: str, batch: int, prepared: Prepared,
                  args: argparse.Namespace) -> dict[str, Any]:
    """One row: examples/s, FLOPs per example and (float32 at the first batch size) the evaluator's users/s."""
    config = model_config(model, precision, batch, args)
    trainer = Trainer(config, prepared.data, prepared.split, log=lambda *a: None)
    if not any(p.requires_grad for p in trainer.model.parameters()):
        return {"model": model, "precision": precision, "batch": batch, "status": "no trainable parameters"}
    trainer.wrap_step_module()
    optimizer, batches = trainer.make_optimizer(), trainer.make_batches()
    with trainer.random_stream():
        flops = example_flops(trainer, batches)
        optimizer.zero_grad(set_to_none=True)
        trainer.train_epoch(0, optimizer, batches)  # warm-up (and compilation)
        record = trainer.train_epoch(1, optimizer, batches)
    row: dict[str, Any] = {"model": model, "precision": precision, "batch": batch, "status": "ok",
                           "examples_per_second": record["examples_per_second"], "steps": args.steps,
                           "flops_per_example": flops}
    if precision == "float32" and batch == args.eval_batch:  # once per model: it does not depend on them
        queries = prepared.split.valid
        sync(trainer.device)
        t0 = time.perf_counter()
        evaluate(trainer.model, prepared.data, queries, config.data.max_len, prepared.split.protocol.excludes_history,
                 config.eval, trainer.device)
        sync(trainer.device)
        row["eval_users_per_second"] = round(len(queries) / (time.perf_counter() - t0), 1)
    return row


def markdown(doc: dict[str, Any]) -> str:
    peaks = doc["gemm_peak_gflops"]
    lines = ["# Training speed against the measured GEMM peak (issue 13)", "",
             f"Command: `{doc['command']}`  ", f"Date: {doc['date']}  ",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['cpus']} CPUs, torch {doc['machine']['torch']}, "
             f"device {doc['device']}, {doc['torch_threads']} torch threads  ",
             f"GEMM peak ({'x'.join(map(str, GEMM))}): float32 {peaks['float32']:.1f} GFLOP/s, bfloat16 "
             f"{peaks['bf16']:.1f} GFLOP/s  ", f"Data: {doc['data']}; {doc['steps']} measured steps per row", "",
             doc["note"], "",
             "| other jobs | model | precision | batch | examples/s | MFLOP/example | GEMM GFLOP/s (row's) | % of peak "
             "| eval users/s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['load']} | {r['model']} | {r['precision']} | {r['batch']} | {r['status']} | | | | |")
            continue
        lines.append(f"| {r['load']} | {r['model']} | {r['precision']} | {r['batch']} | "
                     f"{r['examples_per_second']:,.0f} | {r['flops_per_example'] / 1e6:.2f} | "
                     f"{r['gemm_peak_flops'] / 1e9:.1f} | "
                     f"{100 * r['fraction_of_peak']:.1f} | {r.get('eval_users_per_second', '')} |")
    if "recbole" in doc:
        lines += ["", "## RecBole side by side", "",
                  "RecBole's own model and training step (`recbole_speed.py`, in its venv, "
                  f"`{doc['recbole']['python']}`) measured right after sinerec's row of the same model, batch and "
                  "precision (float32), same data, threads and steps; ratio = sinerec / RecBole. What differs:", "",
                  *(f"- {model}: {text}" for model, text in doc["recbole"]["differences"].items()), "",
                  *markdown_rows(doc["recbole"]["rows"])]
    return "\n".join(lines) + "\n"


def document(args: argparse.Namespace, device: torch.device, peaks: dict[str, float],
             rows: list[dict[str, Any]], recbole_rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The results document: command, date, machine, settings, the peaks and the rows measured so far (and
    with ``--recbole-python`` RecBole's rows, merged by ``recbole_speed.with_ratios``)."""
    recbole = {} if args.recbole_python is None else {"recbole": {
        "python": args.recbole_python, "differences": DIFFERENCES, "rows": recbole_rows or []}}
    return {"command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "torch_threads": torch.get_num_threads(), "compile": args.compile,
            "data": "synthetic planted concepts (300 users, 200 items)" if args.quick else f"ML-1M ({args.data_dir})",
            "steps": args.steps, "note": args.note,
            "gemm_peak_gflops": {k: round(v / 1e9, 2) for k, v in peaks.items()}, "gemm_peak_flops": peaks,
            "rows": rows, **recbole}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-1m")
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data, dim 16: a smoke test")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training loss (train.compile)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--precisions", default="float32,bf16")
    parser.add_argument("--batches", default="256,2048")
    parser.add_argument("--steps", type=int, default=5, help="measured training steps per row")
    parser.add_argument("--loads", default="0", help="numbers of other busy PyTorch jobs, e.g. 0,2")
    parser.add_argument("--repeats", type=int, default=5, help="GEMM timings (the peak is their median)")
    parser.add_argument("--note", default="")
    parser.add_argument("--recbole-python", help="RecBole's venv's python: also measure RecBole's SINE and SASRec "
                        "(float32 rows), side by side")
    parser.add_argument("--out", default="benchmarks/speed")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"speed.py: error: --device {args.device}: CUDA is not available here (torch {torch.__version__}); "
              "run it on a machine with a GPU and a CUDA build of torch", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    models, precisions = args.models.split(","), args.precisions.split(",")
    unknown = sorted(set(models) - set(MODELS)) + sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        parser.error(f"unknown models or precisions: {unknown} (models {sorted(MODELS)}, precisions "
                     f"{sorted(PRECISIONS)})")
    if args.recbole_python is not None and (args.quick or not Path(args.recbole_python).is_file()):
        parser.error(f"--recbole-python {args.recbole_python}: " + ("RecBole's rows need ML-1M (--data-dir), not "
                     "--quick" if args.quick else "no such file (the python of RecBole's venv: README)"))
    args.eval_batch = int(args.batches.split(",")[0])
    prepared = prepared_data(args)
    peaks = {name: gemm_peak(device, dtype, args.repeats) for name, dtype in DTYPES.items()}
    rows: list[dict[str, Any]] = []
    recbole_rows: list[dict[str, Any]] = []
    # RecBole's atomic file, converted by its first child and reused by the others
    recbole_work = Path(tempfile.mkdtemp(prefix="recbole-speed-")) if args.recbole_python else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for load in (int(x) for x in args.loads.split(",")):
        loaders = start_loaders(load)
        try:
            for model in models:
                for precision in precisions:
                    for batch in (int(x) for x in args.batches.split(",")):
                        # the peak again just before the row: on a machine whose load changes, the row's
                        # fraction compares two timings taken side by side
                        peak = gemm_peak(device, DTYPES[precision], args.repeats)
                        row = {"load": load, **measure_model(model, precision, batch, prepared, args),
                               "gemm_peak_flops": peak}
                        if row["status"] == "ok":
                            row["fraction_of_peak"] = round(
                                row["examples_per_second"] * row["flops_per_example"] / peak, 4)
                        print(json.dumps(row), flush=True)
                        rows.append(row)
                        if recbole_work and precision == "float32" and model in RECBOLE_MODELS:
                            theirs = run_child(args.recbole_python, model, batch, data_dir=args.data_dir,
                                               steps=args.steps, threads=torch.get_num_threads(),
                                               work_dir=recbole_work)
                            for merged in with_ratios(row, theirs):
                                print(json.dumps(merged), flush=True)
                                recbole_rows.append(merged)
                        doc = document(args, device, peaks, rows, recbole_rows)
                        (out / "speed.json").write_text(json.dumps(doc, indent=1) + "\n")  # so far: a stopped
                        (out / "speed.md").write_text(markdown(doc))  # run keeps its measured rows
        finally:
            stop(loaders)
    if recbole_work:
        shutil.rmtree(recbole_work, ignore_errors=True)
    print(markdown(document(args, device, peaks, rows, recbole_rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
