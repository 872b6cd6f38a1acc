"""``sinerec data ...`` and ``sinerec datasets``: look at data before training on it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sinerec.cli.common import add_data_args, data_overrides, non_negative_int, positive_int


def register(sub: Any) -> None:
    p = sub.add_parser("data", help="inspect data (describe) or generate it (synth)")
    p.set_defaults(handler=None, group=p)
    dsub = p.add_subparsers(dest="data_command")
    d = dsub.add_parser("describe", help="counts of a dataset (no filters unless --set data.* is given)")
    add_data_args(d)
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a data.* setting, e.g. --set data.min_user_count=5 (repeatable)")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(handler=cmd_describe)
    d = dsub.add_parser("synth", help="write a Taobao-shaped CSV (user,item,category,behavior,timestamp) with "
                        "planted concepts, and FILE.items.csv (item,concept,category)")
    d.add_argument("--rows", type=positive_int, required=True, help="number of events (lines)")
    d.add_argument("--items", type=positive_int, required=True, help="catalogue size (power-law popularity)")
    d.add_argument("--users", type=positive_int, required=True, help="number of users (several interests each)")
    d.add_argument("--concepts", type=positive_int, default=1000, help="planted concepts")
    d.add_argument("--seed", type=non_negative_int, default=0, help="random seed")
    d.add_argument("--out", required=True, help="FILE.csv or FILE.csv.gz (written atomically)")
    d.add_argument("--quiet", action="store_true", help="no progress lines")
    d.set_defaults(handler=cmd_synth)

    p = sub.add_parser("datasets", help="list the named datasets, their sizes and licences")
    p.add_argument("--json", action="store_true", help="print every field as JSON instead of the table")
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


def format_datasets(rows: list[dict[str, Any]]) -> str:
    """The rows of ``list_datasets`` as a table: name, users, items, interactions, licence (its name, the
    text before the first colon; ``--json`` has it whole) and where the files are (their folder, "download"
    when they would be downloaded, "-" when neither)."""
    def count(value: Any) -> str:
        return f"{value:,}" if isinstance(value, int) else "-"

    def where(row: dict[str, Any]) -> str:
        if row.get("path"):
            return f"{row['location']}: {row['path']}"
        return "download" if row.get("downloadable") else "-"

    table = [("name", "users", "items", "interactions", "licence", "where")]
    table += [(row["name"], count(row["n_users"]), count(row["n_items"]), count(row["n_interactions"]),
               str(row["licence"]).split(":")[0], where(row)) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    right = (False, True, True, True, False)
    lines = []
    for r in table:
        cells = [c.rjust(w) if ra else c.ljust(w) for c, w, ra in zip(r[:5], widths, right, strict=True)]
        lines.append("  ".join([*cells, r[5]]))
    return "\n".join(lines)


def cmd_synth(args: argparse.Namespace) -> int:
    from sinerec.data.synthfile import SynthSpec, write_taobao_csv

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"synth: {done:,} / {total:,} rows ({100 * done / total:.0f}%)", file=sys.stderr, flush=True)

    spec = SynthSpec(rows=args.rows, items=args.items, users=args.users, concepts=args.concepts, seed=args.seed)
    print(json.dumps(write_taobao_csv(spec, Path(args.out), progress=progress)))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from sinerec.data.datasets import list_datasets

    rows = list_datasets()
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    print(format_datasets(rows))
    return 0
