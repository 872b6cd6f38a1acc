"""``sinerec train``: one run of the training job, printed."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sinerec.cli.common import add_data_args, data_overrides
from sinerec.cli.data import add_prepared_arg, prepared_overrides_for
from sinerec.errors import SinerecError

if TYPE_CHECKING:
    from sinerec.config import Config
    from sinerec.distributed import DistContext
    from sinerec.job import RunStart
    from sinerec.pipeline import Prepared


EPILOG = """examples:
  sinerec train                                          # SINE on ml-latest-small
  sinerec train --model sasrec --dataset ml-1m --epochs 20
  sinerec train --path log.csv --format table --set data.user_col=uid --out runs/mine
  sinerec train --out runs/mine --resume
  sinerec train --prepared prepared/taobao              # made by `sinerec data prepare`"""


def register(sub: Any) -> None:
    from sinerec.models import MODELS

    p = sub.add_parser("train", help="train a model and evaluate it (default: SINE on ml-latest-small)",
                       description="Train a model into a run directory. Settings: the model's shipped "
                                   "configs/MODEL.toml < --config < the flags < --set, exactly as `sinerec "
                                   "benchmark` resolves them; `sinerec config show` prints them.",
                       epilog=EPILOG)
    p.add_argument("--config", help="TOML, JSON or YAML settings over the model's shipped configs/MODEL.toml")
    p.add_argument("--model", help="the model, default sine (`--model X` starts from configs/X.toml): "
                                   + ", ".join(MODELS))
    add_data_args(p)
    add_prepared_arg(p)
    p.add_argument("--protocol", choices=["loo", "comirec"], help="evaluation protocol (default loo)")
    from_model = "(default: the model's settings, see `sinerec config show`)"
    p.add_argument("--epochs", type=int, help=f"train.epochs: the most epochs, early stopping aside {from_model}")
    p.add_argument("--batch-size", type=int, help=f"train.batch_size: examples per step {from_model}")
    p.add_argument("--lr", type=float, help=f"train.lr: learning rate {from_model}")
    p.add_argument("--seed", type=int, help=f"train.seed: the random seed {from_model}")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, help="torch CPU threads per process (default: the CPUs "
                   "not busy elsewhere at start, see sinerec.runtime; OMP_NUM_THREADS also sets it)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step (train.compile)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting, e.g. --set model_params.num_concepts=100 --set train.patience=5")
    p.add_argument("--out", help="run directory (default runs/MODEL-DATASET-TIME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint; --epochs N trains up to epoch N, and "
                        "--lr, --batch-size, --threads, --device, --quiet, --compile and --set apply from the "
                        "next epoch and are saved to config.json (model, protocol, seed, max_len, monitor and "
                        "the data are fixed)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    add_log_to(p)
    p.set_defaults(handler=cmd_train)


def add_log_to(p: argparse.ArgumentParser) -> None:
    """The ``--log-to`` flag (repeatable): experiment trackers of ``sinerec.tracking.TRACKERS``."""
    p.add_argument("--log-to", action="append", default=[], choices=["tensorboard", "mlflow"], metavar="TRACKER",
                   help="also log the run to tensorboard (RUN_DIR/tensorboard) or mlflow (MLFLOW_TRACKING_URI, "
                        "default sqlite RUN_DIR/mlflow.db); repeatable")


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` overrides the flags of ``sinerec train`` stand for (data, protocol, train), in order."""
    overrides = data_overrides(args) + prepared_overrides_for(args)
    for opt, key in (("protocol", "protocol.name"), ("epochs", "train.epochs"),
                     ("batch_size", "train.batch_size"), ("lr", "train.lr"), ("seed", "train.seed"),
                     ("device", "train.device"), ("threads", "train.threads")):
        value = getattr(args, opt)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    if args.quiet:
        overrides.append("train.progress=false")
    if args.compile:
        overrides.append("train.compile=true")
    return overrides


def train_config(args: argparse.Namespace) -> Config:
    """A new run's settings, resolved as ``sinerec benchmark`` resolves them (``sinerec.settings``): the
    model's shipped ``configs/MODEL.toml``, then ``--config``, then the flags, then ``--set``."""
    from sinerec.settings import resolve_config

    return resolve_config(args.model, file=args.config, overrides=flag_overrides(args) + args.overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from sinerec import distributed
    from sinerec.train import resolve_device

    out = Path(args.out) if args.out else None
    if args.resume:  # the run's own settings, with what the flags and --set change now
        model = [f"model={json.dumps(args.model)}"] if args.model else []
        config = resume_config(out, args.config, model + flag_overrides(args) + args.overrides)
    else:
        config = train_config(args)
    ctx = distributed.init(resolve_device(config.train.device))  # under torchrun: join the process group
    try:
        return train_body(args, config, out, ctx)
    finally:
        distributed.cleanup(ctx)


def resume_config(out: Path | None, config_file: str | None, overrides: list[str]) -> Config:
    """The configuration of a resumed run: its ``config.json`` with the flags and ``--set`` overrides given
    now (the job writes it back). Settings that decide what the checkpoint means
    (``sinerec.runs.FIXED_ON_RESUME``) cannot change, nor can a ``--config`` file replace the run's own."""
    from sinerec import runs
    from sinerec.config import load_config

    if out is None or not (out / runs.CONFIG).exists():
        raise SinerecError(f"--resume needs --out pointing at an earlier run directory (with {runs.CONFIG})")
    if config_file is not None:
        raise SinerecError(f"--resume continues with {out / runs.CONFIG}; pass changes as flags or --set, "
                           "not --config")
    saved = runs.read_json(out / runs.CONFIG)
    models = [text.split("=", 1)[1] for text in overrides if text.startswith("model=")]
    if models and json.loads(models[-1]) != saved.get("model"):  # report the model, not its parameters
        raise SinerecError(f"--resume cannot change model: {json.dumps(saved.get('model'))} -> {models[-1]} "
                           "(start a new run for that)")
    config = load_config(saved, overrides=overrides)
    changes = runs.resume_changes(load_config(saved), config)
    if changes:
        raise SinerecError(f"--resume cannot change {'; '.join(changes)} (start a new run for that)")
    return config


def train_body(args: argparse.Namespace, config: Config, out: Path | None, ctx: DistContext) -> int:
    """The body of ``sinerec train`` on every process (the training job); only rank 0 prints."""
    from sinerec import runs
    from sinerec.job import train_run
    from sinerec.tracking import make_callbacks

    say = (lambda *a: None) if args.quiet or not ctx.is_main else print

    def data_line(prepared: Prepared) -> None:
        d = prepared.data
        say(f"data: {d.name}: {d.num_users:,} users, {d.num_items:,} items, {d.num_interactions:,} interactions "
            f"(fingerprint {d.fingerprint()}); protocol {config.protocol.name} "
            f"(split {prepared.split.fingerprint}), {len(prepared.split.train):,} training examples "
            f"[{prepared.seconds:.1f}s]")

    def model_line(start: RunStart) -> None:
        where = f" x {ctx.world_size} processes ({ctx.backend})" if ctx.enabled else ""
        how = "bf16 autocast" if start.precision == "bf16" else "float32"
        say(f"model: {config.model} ({start.n_parameters:,} parameters) on {start.device}{where}, {how} "
            f"(train.amp = {config.train.amp!r})")

    callbacks = make_callbacks(args.log_to)
    run = train_run(config, out, resume=args.resume, log=say, dist=ctx, on_prepared=data_line, on_start=model_line,
                    callbacks=callbacks)
    if not ctx.is_main:
        return 0
    print(format_metrics_table(run.metrics))
    print(f"\nrun directory: {run.run_dir}")
    for name in (runs.METRICS, runs.CONFIG, runs.MODEL, runs.LOG, runs.ITEMS):
        if (run.run_dir / name).exists():
            print(f"  {run.run_dir / name}")
    return 0


def format_metrics_table(doc: dict[str, Any], parts: Sequence[str] = ("valid", "test")) -> str:
    """Validation and test metrics in percent, one row per metric, one column per cut-off.

    Rows follow the order of the metric table ``sinerec.metrics.METRICS`` (names it lacks, e.g. from an older
    run, come last by name); with leave-one-out a metric equal to another with one target is left out."""
    from sinerec.metrics import METRICS

    order = list(METRICS)
    lines = [f"{doc['model']} on {doc['dataset']['name']} ({doc['protocol']['name']}, fingerprint "
             f"{doc['protocol']['fingerprint']}): metrics in %"]
    for part in parts:
        metrics = doc[part]
        names = sorted({k.split("@")[0] for k in metrics},
                       key=lambda name: (order.index(name), "") if name in METRICS else (len(order), name))
        ks = sorted({int(k.split("@")[1]) for k in metrics})
        if doc["protocol"]["name"] == "loo":  # one target per query
            names = [name for name in names
                     if name not in METRICS or METRICS[name].single_target_twin not in names]
        width = max([6, *map(len, names)])  # the name column; 6 fits the built-in metrics
        header = f"{part:<{width + 2}}" + "".join(f"{'@' + str(k):>9}" for k in ks)
        lines.append(header)
        for name in names:
            lines.append(f"  {name:<{width}}" + "".join(f"{100 * metrics[f'{name}@{k}']:>9.2f}" for k in ks))
    return "\n".join(lines)
