"""RecBole's SINE and SASRec training examples/s on ML-1M with sinerec's benchmark settings (issue 13 item 3).

Runs in RecBole's own virtual environment (README, "RecBole side by side"; RecBole is not a dependency of
sinerec), in its own process: ``speed.py --recbole-python PATH`` starts it once per model and batch, next to
sinerec's own row, so that the ratio sinerec/RecBole is measured side by side.

Converts ML-1M's ``ratings.dat`` to a RecBole atomic file (``ml-1m.inter``: user, item, timestamp) in
``--work-dir`` (a temporary folder by default; RecBole's logs, checkpoints and tensorboard folder go there
too), builds RecBole's dataset (each user's history in time order, leave-one-out: the last two items are
validation and test, every earlier position a training example with its last ``MAX_ITEM_LIST_LENGTH`` items,
as sinerec's trainer does) and times ``--steps`` steps of RecBole's own ``Trainer._train_epoch`` after
``--warmup-steps`` steps, for each anomaly-detection setting:

- ``shipped``: as RecBole ships it: importing ``recbole.model.sequential_recommender`` runs SINE's module-level
  ``torch.autograd.set_detect_anomaly(True)``, which holds for every model of the process, SASRec included;
- ``off``: ``torch.autograd.set_detect_anomaly(False)`` before the row.

Settings (sinerec's shipped ``sine.toml`` and ``sasrec.toml`` where RecBole has the knob): float32 on the CPU,
full softmax (``loss_type: CE``, no negative sampling), Adam with learning rate 1e-3, T = 20
(``MAX_ITEM_LIST_LENGTH``); SINE: D 128, L 50 concepts (``prototype_size``), K 4 interests, tau 0.1; SASRec:
D 50, 2 blocks, 1 head, dropout 0.2, ReLU feed-forward of width D. ``OMP_WAIT_POLICY=PASSIVE`` unless set, and
``--threads`` torch threads. What differs from sinerec's models is in ``DIFFERENCES`` (and in the README).

Prints one JSON row per model, batch and anomaly setting on stdout (``"framework": "recbole"``).

    /path/to/recbole-venv/bin/python benchmarks/speed/recbole_speed.py --data-dir ../shared/data/ml-1m \\
        --models sine,sasrec --batches 256,2048 --steps 20
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

RECBOLE_MODELS = {"sine": "SINE", "sasrec": "SASRec"}
ANOMALY = ("shipped", "off")
COMMON = {  # every model: ML-1M as sinerec reads it, leave-one-out in time order, full softmax, no evaluation
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 20,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "train_neg_sample_args": None, "loss_type": "CE", "learning_rate": 0.001, "weight_decay": 0.0,
    "use_gpu": False, "show_progress": False, "worker": 0, "seed": 0, "reproducibility": True,
    "state": "ERROR", "log_wandb": False, "save_dataset": False, "save_dataloaders": False}
MODEL_SETTINGS = {  # sinerec's configs/sine.toml and configs/sasrec.toml in RecBole's keys
    "sine": {"embedding_size": 128, "prototype_size": 50, "interest_size": 4, "tau_ratio": 0.1,
             "reg_loss_ratio": 0.5},
    "sasrec": {"hidden_size": 50, "inner_size": 50, "n_layers": 2, "n_heads": 1, "hidden_dropout_prob": 0.2,
               "attn_dropout_prob": 0.2, "hidden_act": "relu"}}
DIFFERENCES = {  # the models are each library's own code: what differs beyond the settings above
    "sine": "RecBole's SINE with loss_type CE adds no covariance regulariser (its reg_loss_ratio applies with NLL "
            "only; sinerec adds 0.5 x L_c, one L x L product per step); it has no padding masks and no "
            "positional embeddings; it builds K copies of the history for the attention weighting ([B, K, T, D] "
            "x [K, D, D]) and the [B, T, D] intention sequence for Eq. 6, which sinerec computes as [B, K, D]; "
            "LayerNorm eps 1e-12 (sinerec: 1e-5)",
    "sasrec": "RecBole's SASRec has an output projection after attention, post-LayerNorm blocks and a LayerNorm "
              "on the embeddings (sinerec: the paper's pre-LayerNorm layout, no output projection); its "
              "feed-forward is set to ReLU and width D here (RecBole's defaults: GELU, 256); both score one "
              "output per history"}


def write_atomic(ratings: Path, folder: Path) -> Path:
    """``ratings.dat`` (``user::item::rating::timestamp`` lines) -> ``folder/ml-1m/ml-1m.inter``, RecBole's
    atomic layout (tab-separated, ``name:type`` header; ratings are not needed); an existing file is reused."""
    inter = folder / "ml-1m" / "ml-1m.inter"
    if inter.is_file():
        return inter
    inter.parent.mkdir(parents=True, exist_ok=True)
    partial = inter.with_suffix(".partial")
    with ratings.open(encoding="latin-1") as src, partial.open("w", encoding="utf-8") as dst:
        dst.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for number, line in enumerate(src, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("::")
            if len(fields) != 4:
                raise SystemExit(f"recbole_speed.py: error: {ratings}:{number}: expected user::item::rating::"
                                 f"timestamp, got {line.rstrip()!r}")
            dst.write(f"{fields[0]}\t{fields[1]}\t{fields[3]}\n")
    partial.replace(inter)
    return inter


def recbole_config(model: str, batch: int, work: Path) -> dict[str, Any]:
    """RecBole's configuration dictionary for ``model`` (a key of RECBOLE_MODELS) at ``batch``."""
    return {**COMMON, **MODEL_SETTINGS[model], "train_batch_size": batch, "data_path": str(work),
            "checkpoint_dir": str(work / "saved")}


class FirstBatches:
    """The first ``n`` batches of a RecBole data loader, counting the examples it hands out."""

    def __init__(self, loader: Iterable[Any], n: int) -> None:
        self.loader, self.n, self.examples = loader, n, 0

    def __iter__(self) -> Iterator[Any]:
        for interaction in itertools.islice(iter(self.loader), self.n):
            self.examples += len(interaction)
            yield interaction

    def __len__(self) -> int:
        return self.n


def measure(model: str, batches: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per batch and anomaly setting: RecBole's own training step, timed over ``args.steps`` steps."""
    import torch  # here, not at the top: --help and speed.py's import of this file need neither
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    torch.set_num_threads(args.threads)
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value pairs from the command line: give it none
    warnings.filterwarnings("ignore", category=FutureWarning)  # pandas' and torch.cuda.amp's, on every row
    config = Config(model=RECBOLE_MODELS[model], dataset="ml-1m",
                    config_dict=recbole_config(model, batches[0], args.work))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    rows = []
    for batch in batches:
        config["train_batch_size"] = batch
        train_data, _, _ = data_preparation(config, dataset)
        for anomaly in args.anomaly:
            torch.autograd.set_detect_anomaly(anomaly == "shipped")
            init_seed(config["seed"], config["reproducibility"])
            net = get_model(config["model"])(config, train_data.dataset).to(config["device"])
            trainer = Trainer(config, net)
            trainer._train_epoch(FirstBatches(train_data, args.warmup_steps), 0)
            timed = FirstBatches(train_data, args.steps)
            t0 = time.perf_counter()
            trainer._train_epoch(timed, 1)
            seconds = time.perf_counter() - t0
            rows.append({"framework": "recbole", "model": model, "precision": "float32", "batch": batch,
                         "anomaly": anomaly, "anomaly_enabled": torch.is_anomaly_enabled(), "status": "ok",
                         "examples_per_second": round(timed.examples / seconds, 1), "examples": timed.examples,
                         "seconds": round(seconds, 3), "steps": args.steps, "warmup_steps": args.warmup_steps,
                         "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                         "training_examples": len(train_data.dataset), "recbole": recbole_version(),
                         "loadavg_1min_after": round(os.getloadavg()[0], 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def recbole_version() -> str:
    import recbole

    return str(recbole.__version__)


# --- speed.py's side, in sinerec's venv: start this script in RecBole's venv, merge its rows with sinerec's ---


def run_child(python: str, model: str, batch: int, *, data_dir: str, steps: int, threads: int,
              work_dir: Path) -> list[dict[str, Any]]:
    """This script through RecBole's ``python`` for one model and batch (both anomaly settings): its rows, or
    one row whose ``status`` says why there are none (the exit code and the last line of its stderr)."""
    command = [python, str(Path(__file__).resolve()), "--data-dir", str(Path(data_dir).resolve()), "--models",
               model, "--batches", str(batch), "--steps", str(steps), "--threads", str(threads),
               "--work-dir", str(work_dir)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"framework": "recbole"')]
    if done.returncode != 0 or not rows:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [{"framework": "recbole", "model": model, "precision": "float32", "batch": batch,
                 "status": f"failed (exit {done.returncode}): {last}"}]
    return rows


def with_ratios(sinerec_row: dict[str, Any], recbole_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RecBole's rows for the model, batch and precision of ``sinerec_row`` (measured next to it), each with
    sinerec's examples/s and ``ratio`` = sinerec / RecBole (None where either has no rate)."""
    key = ("model", "precision", "batch")
    merged = []
    for row in recbole_rows:
        if tuple(row[k] for k in key) != tuple(sinerec_row[k] for k in key):
            raise ValueError(f"RecBole row {[row[k] for k in key]} next to sinerec's "
                             f"{[sinerec_row[k] for k in key]}")
        ours, theirs = sinerec_row.get("examples_per_second"), row.get("examples_per_second")
        merged.append({**row, "load": sinerec_row.get("load", 0), "sinerec_examples_per_second": ours,
                       "ratio": round(ours / theirs, 3) if ours and theirs else None})
    return merged


def markdown_rows(rows: list[dict[str, Any]]) -> list[str]:
    """The Markdown table of merged rows (``with_ratios``): one line per RecBole row."""
    lines = ["| other jobs | model | batch | sinerec examples/s | RecBole anomaly detection | RecBole examples/s "
             "| sinerec / RecBole |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ours = f"{r['sinerec_examples_per_second']:,.0f}" if r.get("sinerec_examples_per_second") else ""
        if r["status"] != "ok":
            lines.append(f"| {r.get('load', 0)} | {r['model']} | {r['batch']} | {ours} | | {r['status']} | |")
            continue
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
        lines.append(f"| {r['load']} | {r['model']} | {r['batch']} | {ours} | {r['anomaly']} | "
                     f"{r['examples_per_second']:,.0f} | {ratio} |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/ml-1m", help="the ML-1M folder (ratings.dat)")
    parser.add_argument("--models", default="sine,sasrec", help=f"of {','.join(RECBOLE_MODELS)}")
    parser.add_argument("--batches", default="256,2048")
    parser.add_argument("--steps", type=int, default=5, help="measured training steps per row")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--anomaly", default=",".join(ANOMALY),
                        help="anomaly detection: shipped (on, as RecBole's SINE module sets it), off")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--work-dir", help="folder for the atomic file and RecBole's files (default: a temporary "
                        "folder, removed afterwards)")
    args = parser.parse_args(argv)
    args.models, args.anomaly = args.models.split(","), args.anomaly.split(",")
    unknown = sorted(set(args.models) - set(RECBOLE_MODELS)) + sorted(set(args.anomaly) - set(ANOMALY))
    if unknown:
        parser.error(f"unknown models or anomaly settings: {unknown} (models {sorted(RECBOLE_MODELS)}, anomaly "
                     f"{list(ANOMALY)})")
    if not (Path(args.data_dir) / "ratings.dat").is_file():
        parser.error(f"--data-dir {args.data_dir}: no ratings.dat there (the ML-1M folder)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Python puts this script's folder first on sys.path, and its results folder recbole/ would pass for a
    # (namespace) package recbole wherever RecBole is not installed: import RecBole from the venv only
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch, as sinerec's own processes do
    ratings = (Path(args.data_dir) / "ratings.dat").resolve()
    with tempfile.TemporaryDirectory(prefix="recbole-speed-") as tmp:
        args.work = Path(args.work_dir or tmp).resolve()
        write_atomic(ratings, args.work)
        os.chdir(args.work)  # RecBole writes log/, log_tensorboard/ and saved/ into the working directory
        for model in args.models:
            measure(model, [int(b) for b in args.batches.split(",")], args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
