"""``sinerec explain``: the HTML report on a trained run."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sinerec.cli.common import RUN_HELP


def register(sub: Any) -> None:
    p = sub.add_parser("explain", help="HTML report on a trained run: curves, concepts, NMI, users")
    p.add_argument("--run", required=True, help=RUN_HELP)
    p.add_argument("--out", help="output folder (default RUN/explain)")
    p.add_argument("--users", type=int, default=6, help="number of sampled users to explain (default 6)")
    p.add_argument("--top", type=int, default=10, help="items listed per concept (default 10)")
    p.add_argument("--k", type=int, default=10, help="recommendations per explained user (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the user sample and the random NMI")
    p.add_argument("--repeats", type=int, default=20, help="random assignments for the chance-level NMI")
    p.set_defaults(handler=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from sinerec.explain import write_report

    report = write_report(args.run, args.out, n_users=args.users, n_top=args.top, k=args.k, seed=args.seed,
                          repeats=args.repeats)
    doc = json.loads((report.parent / "explain.json").read_text())
    if doc.get("note"):
        print(f"note: {doc['note']}")
    nmi = doc.get("nmi")
    if nmi:
        print(f"NMI of the concepts vs the dataset's categories: {nmi['value']:.4f} (random assignment with the "
              f"same cluster sizes: {nmi['random_mean']:.4f} +- {nmi['random_std']:.4f})")
    for warning in doc.get("warnings", []):
        print(f"warning: {warning}")
    print(f"report: {report}")
    return 0
