"""``sinerec tune``: a hyperparameter search on Optuna over the ``[tune]`` section of a config file."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sinerec.cli.common import add_data_args, data_overrides
from sinerec.cli.train import add_log_to

EPILOG = """example:
  sinerec tune --config search.toml --trials 30 --out tune/sine
  (search.toml: model = "sine", [train] epochs = 10, and a [tune] section such as
   "train.lr" = {type = "float", low = 1e-4, high = 1e-2, log = true}
   "model_params.num_concepts" = {type = "int", low = 10, high = 100})
running it again resumes the study in --out; the best settings are in OUT/best.toml and OUT/best.json"""


def register(sub: Any) -> None:
    p = sub.add_parser("tune", help="search hyperparameters with Optuna (the config file's [tune] section)",
                       description="Search the [tune] section's settings with Optuna (TPE sampler, median\n"
                                   "pruning on the validation metric); each trial is a run directory under OUT/trials.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="TOML, JSON or YAML configuration with a [tune] section")
    p.add_argument("--out", required=True, help="the study's folder (study.db, trials/, best.toml, best.json); "
                                                "an existing study there is resumed")
    p.add_argument("--trials", type=int, default=20,
                   help="finished trials (complete or pruned) the study should have (default: %(default)s)")
    p.add_argument("--model", help="the model, instead of the file's")
    add_data_args(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of every trial, e.g. --set train.epochs=5")
    p.add_argument("--seed", type=int, help="the sampler's seed (default: train.seed)")
    p.add_argument("--no-prune", action="store_true", help="train every trial to its end (no median pruning)")
    add_log_to(p)
    p.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from sinerec.config import merge, parse_override, read_config_file
    from sinerec.tracking import make_callbacks
    from sinerec.tune import BEST_JSON, BEST_TOML, read_space, tune

    tree = read_config_file(args.config)
    space = read_space(tree.pop("tune", None))
    overrides = data_overrides(args) + ([f"model={json.dumps(args.model)}"] if args.model else [])
    tree.setdefault("train", {})["progress"] = False
    for text in overrides + args.overrides:
        merge(tree, *parse_override(text))
    make_callbacks(args.log_to)  # a missing tracker package fails before the first trial
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours
    except ImportError:
        pass  # tune() says what to install
    result = tune(tree, space, args.out, args.trials, prune=not args.no_prune, seed=args.seed,
                  callbacks=lambda: make_callbacks(args.log_to))
    best = result.best
    counts = ", ".join(f"{n} {state}" for state, n in best["trials"].items())
    print(f"best: trial {best['trial']}, {best['metric']} {best['value']:.4f} ({counts})")
    for key, value in best["params"].items():
        print(f"  {key} = {value!r}")
    print(f"  {result.out / BEST_TOML}\n  {result.out / BEST_JSON}\n  {best['run_dir']}")
    return 0
