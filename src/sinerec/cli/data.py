"""``sinerec data ...`` and ``sinerec datasets``: look at data before training on it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sinerec.cli.common import add_data_args, data_overrides


def register(sub: Any) -> None:
    p = sub.add_parser("data", help="inspect data")
    p.set_defaults(handler=None, group=p)
    dsub = p.add_subparsers(dest="data_command")
    d = dsub.add_parser("describe", help="counts of a dataset (no filters unless --set data.* is given)")
    add_data_args(d)
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(handler=cmd_describe)

    p = sub.add_parser("datasets", help="list the named datasets, their sizes and licences")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_datasets)


def cmd_describe(args: argparse.Namespace) -> int:
    from sinerec.config import load_config
    from sinerec.data.preprocess import preprocess
    from sinerec.pipeline import load_interactions

    config = load_config(overrides=data_overrides(args) + args.overrides)
    interactions = load_interactions(config.data)
    summary = interactions.describe()
    data = preprocess(interactions, config.data.preprocess_config())
    desc = data.describe()
    out = {"dataset": desc["name"], **{k: desc[k] for k in ("n_users", "n_items", "n_interactions")},
           "sequence_length": {k: desc[k] for k in ("min_length", "median_length", "max_length")},
           "fingerprint": desc["fingerprint"], "raw": summary,
           "has_timestamps": interactions.has_timestamps,
           "has_categories": data.item_categories is not None,
           "source": interactions.source}
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from sinerec.data.datasets import list_datasets

    rows = list_datasets()
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    for row in rows:
        print(json.dumps(row, default=str))
    return 0
