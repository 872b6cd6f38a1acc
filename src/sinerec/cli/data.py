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
    d = dsub.add_parser("prepare", help="read, filter and order a dataset once into a memory-mappable folder "
                        "that train and benchmark map with --prepared DIR",
                        epilog="example:\n  sinerec data prepare --path log.csv --format taobao --set "
                               "data.min_user_count=5 --protocol loo --out prepared/taobao\n"
                               "  sinerec train --prepared prepared/taobao\n"
                               "  sinerec data prepare --engine spark --spark-master spark://head:7077 --path "
                               "hdfs:///logs/log.csv --format taobao --out prepared/taobao")
    add_data_args(d)
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a data.* setting, e.g. --set data.min_user_count=5 (repeatable)")
    d.add_argument("--protocol", choices=["loo", "comirec"],
                   help="also store this protocol's split (protocol.* settings via --set); runs with the same "
                        "protocol map it instead of splitting")
    d.add_argument("--out", required=True, help="the folder to write (atomically; an earlier prepared "
                                                "dataset there is replaced, any other folder is refused)")
    d.add_argument("--engine", choices=["local", "spark"], default="local",
                   help="local: this process (default); spark: Apache Spark reads, filters, orders and numbers "
                        "the log (formats taobao, comirec, movielens, ml-1m, table; pip install "
                        "'sinerec[spark]'), same artifact")
    d.add_argument("--spark-master", metavar="URL", help="with --engine spark: local[N], spark://HOST:7077, yarn... "
                   "(default: spark-submit's or PYSPARK_SUBMIT_ARGS' --master, else local[*])")
    d.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                   help="with --engine spark: a Spark setting, e.g. spark.driver.memory=8g (repeatable)")
    d.set_defaults(handler=cmd_prepare)
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
    interactions = load_interactions(config.data, compact=True)
    summary, has_timestamps = interactions.describe(), interactions.has_timestamps
    data = preprocess(interactions, config.data.preprocess_config(), release=True)
    desc = data.describe()
    out = {"dataset": desc["name"], **{k: desc[k] for k in ("n_users", "n_items", "n_interactions")},
           "sequence_length": {k: desc[k] for k in ("min_length", "median_length", "max_length")},
           "fingerprint": desc["fingerprint"], "raw": summary,
           "has_timestamps": has_timestamps,
           "has_categories": data.item_categories is not None,
           "source": interactions.source}
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from sinerec.config import load_config
    from sinerec.data.prepared import write_prepared
    from sinerec.data.splits import make_split
    from sinerec.errors import ConfigError
    from sinerec.pipeline import check_usable, data_settings, preprocess_source

    if args.engine != "spark" and (args.spark_master or args.spark_conf):
        raise ConfigError(f"{'--spark-master' if args.spark_master else '--spark-conf'} needs --engine spark")
    bad = [o for o in args.overrides if not o.startswith(("data.", "protocol."))]
    if bad or any(o.startswith("data.prepared=") for o in args.overrides):
        raise ConfigError(f"data prepare: --set takes data.* and protocol.* settings (not data.prepared), got "
                          f"{(bad or args.overrides)[0]!r}")
    protocol = [f"protocol.name={json.dumps(args.protocol)}"] if args.protocol else []
    config = load_config(overrides=data_overrides(args) + protocol + args.overrides)
    data = spark_sequences(config.data, args) if args.engine == "spark" else preprocess_source(config.data)
    split = None
    if args.protocol:
        split = make_split(data, config.protocol)
        check_usable(data, split)
    summary = write_prepared(args.out, data, data_settings(config.data), split)
    print(json.dumps({"out": args.out, **{k: summary[k] for k in ("name", "fingerprint", "n_users", "n_items",
                                                                   "n_interactions")},
                      "split": summary["split"]["fingerprint"] if summary["split"] else None}))
    return 0


def spark_sequences(cfg: Any, args: argparse.Namespace) -> Any:
    """``data prepare --engine spark``: the sequences of ``cfg`` computed by a Spark session (started on
    ``--spark-master`` with the ``--spark-conf`` settings)."""
    from sinerec.data.engine_spark import prepare_with_spark, spark_session
    from sinerec.errors import ConfigError

    conf = {}
    for setting in args.spark_conf:
        key, eq, value = setting.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--spark-conf: expected KEY=VALUE, got {setting!r}")
        conf[key.strip()] = value
    with spark_session(args.spark_master, conf) as spark:
        return prepare_with_spark(cfg, spark)


def add_prepared_arg(p: argparse.ArgumentParser) -> None:
    """The ``--prepared DIR`` flag of train and benchmark."""
    p.add_argument("--prepared", metavar="DIR", help="a prepared dataset (`sinerec data prepare`): its files are "
                   "memory-mapped (shared by torchrun ranks) and its data settings used; no other data flag")


def prepared_overrides_for(args: argparse.Namespace) -> list[str]:
    """For ``--prepared DIR`` (train, benchmark): the data overrides of the prepared dataset; data flags or
    ``--set data.*`` (but data.max_len) beside it conflict with it and raise ConfigError."""
    from sinerec.errors import ConfigError
    from sinerec.pipeline import NOT_PREPARED, prepared_overrides

    if args.prepared is None:
        return []
    flags = [f"--{opt.replace('_', '-')}" for opt in ("dataset", "data_dir", "path", "format")
             if getattr(args, opt, None) is not None] + (["--skip-bad-lines"] if args.skip_bad_lines else [])
    sets = [o for o in args.overrides if o.split(":", 1)[-1].startswith("data.")
            and o.split(":", 1)[-1].split("=", 1)[0][5:] not in NOT_PREPARED]
    if flags or sets:
        raise ConfigError(f"--prepared {args.prepared}: the data settings are the prepared dataset's; "
                          f"{(flags or sets)[0]} conflicts with it (prepare again with it instead)")
    return prepared_overrides(args.prepared)


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
