"""``sinerec evaluate``: re-score a saved run under another protocol or evaluation setting."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sinerec.cli.common import RUN_HELP

EPILOG = """examples:
  sinerec evaluate --run runs/sine-ml-1m-20260101-120000
  sinerec evaluate --run RUN --set protocol.exclude_history=false     # history ranked, as the paper's code
  sinerec evaluate --run RUN --protocol comirec --part test --json"""


def register(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="re-score a saved run (same weights, another protocol or setting)",
                       description="Re-score a trained run's best weights; only protocol.* and eval.* "
                                   "settings may change.", epilog=EPILOG)
    p.add_argument("--run", required=True, help=RUN_HELP)
    p.add_argument("--protocol", choices=["loo", "comirec"], help="evaluation protocol (default: the run's own)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a protocol.* or eval.* setting, e.g. --set protocol.exclude_history=false (repeatable)")
    p.add_argument("--part", choices=["valid", "test", "both"], default="both", help="which held-out users")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sinerec.cli.train import format_metrics_table
    from sinerec.rescore import PARTS, rescore
    from sinerec.runs import load_run

    run = load_run(args.run, device=args.device)
    overrides = ([f"protocol.name={args.protocol}"] if args.protocol else []) + args.overrides
    parts = PARTS if args.part == "both" else (args.part,)
    doc = rescore(run, overrides, parts, device=args.device)
    if args.json:
        print(json.dumps(doc))
        return 0
    table = {"model": doc["model"], "dataset": {"name": run.data.name}, "protocol": doc["protocol"],
             "valid": doc.get("valid", {}), "test": doc.get("test", {})}
    print(format_metrics_table(table, parts=parts))
    print(f"\nhistory {'excluded' if doc['exclude_history'] else 'ranked'}; trained under "
          f"{doc['trained_protocol']}")
    return 0
