"""``sinerec benchmark``: models x seeds on one dataset and split, tabulated."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from sinerec.cli.common import add_data_args, data_overrides
from sinerec.cli.data import add_prepared_arg, prepared_overrides_for
from sinerec.errors import SinerecError


def register(sub: Any) -> None:
    p = sub.add_parser("benchmark", help="train several models x seeds on one dataset and split; compare them",
                       epilog="examples:\n  sinerec benchmark --quick\n"
                              "  sinerec benchmark --dataset ml-1m --models sine,sasrec --seeds 1,2,3 --out bench")
    p.add_argument("--models", help="comma-separated models (default: all registered)")
    add_data_args(p)
    add_prepared_arg(p)
    p.add_argument("--protocol", choices=["loo", "comirec"], default="loo", help="evaluation protocol (default loo)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run per model each (default 0,1,2)")
    p.add_argument("--out", help="output folder; rerunning the same command resumes it "
                                 "(default runs/benchmark-DATASET-PROTOCOL[-quick])")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="[MODEL:]KEY=VALUE",
                   help="a setting for every model, or for one with a MODEL: prefix, "
                        "e.g. --set data.min_user_count=5 --set sasrec:model_params.dropout=0.5")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process (default 1)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: cores / jobs when jobs > 1)")
    p.add_argument("--sort-by", default="NDCG@10", help="test metric that orders the table (default NDCG@10)")
    p.add_argument("--order", choices=["seed", "model"], default="seed",
                   help="which runs first: every model per seed (default), or every seed per model (complete "
                        "rows first, for benchmarks that take several sittings)")
    p.add_argument("--reuse", action="append", default=[], metavar="OUT",
                   help="another benchmark's output folder: a run it finished with the very same settings and "
                        "data is copied in instead of trained again (repeatable)")
    p.add_argument("--quick", action="store_true", help="one short epoch per run: a smoke test, not a measurement")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write the tables of --out from the runs already finished there, the others "
                        "listed as not run yet (e.g. while other invocations train other models into it)")
    p.set_defaults(handler=cmd_benchmark)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from sinerec.benchmark import run_benchmark
    from sinerec.models import MODELS

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(MODELS)
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise SinerecError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    data = prepared_overrides_for(args)
    name = args.dataset or (Path(args.path).stem if args.path else
                            Path(args.prepared).name if args.prepared else "ml-latest-small")
    default_out = Path("runs") / f"benchmark-{name}-{args.protocol}{'-quick' if args.quick else ''}"
    out = Path(args.out) if args.out else default_out
    # the exact command, every choice spelled out, so that the results say how to reproduce them (--report-only
    # left out: the runs a report tabulates were trained by this command without it)
    command = ["sinerec", "benchmark", "--models", ",".join(models)]
    for opt in ("dataset", "data_dir", "path", "format", "prepared"):
        if getattr(args, opt) is not None:
            command += [f"--{opt.replace('_', '-')}", getattr(args, opt)]
    command += ["--protocol", args.protocol, "--seeds", ",".join(map(str, seeds)), "--out", str(out)]
    command += (["--skip-bad-lines"] if args.skip_bad_lines else []) + (["--quick"] if args.quick else [])
    command += [x for o in args.overrides for x in ("--set", o)]
    if args.jobs != 1:
        command += ["--jobs", str(args.jobs)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    if args.sort_by != "NDCG@10":
        command += ["--sort-by", args.sort_by]
    if args.order != "seed":
        command += ["--order", args.order]
    command += [x for r in args.reuse for x in ("--reuse", r)]
    result = run_benchmark(models, out_dir=out, seeds=seeds, protocol=args.protocol,
                           overrides=data_overrides(args) + data + args.overrides, jobs=args.jobs, threads=args.threads,
                           quick=args.quick, sort_by=args.sort_by, order=args.order, reuse=args.reuse,
                           report_only=args.report_only, command=shlex.join(command))
    print()
    print(result.table)
    print(f"\nresults in {out}:")
    for path in result.files:
        print(f"  {path}")
    return 1 if result.failed else 0
