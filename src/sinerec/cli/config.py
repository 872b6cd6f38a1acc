"""``sinerec config show``: the settings a run would use, each with the layer that set it."""

from __future__ import annotations

import argparse
import json
from typing import Any

EPILOG = """examples:
  sinerec config show --model sasrec
  sinerec config show --model sine --config my.toml --set train.lr=0.0005"""


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="show resolved settings")
    p.set_defaults(handler=None, group=p)
    csub = p.add_subparsers(dest="config_command")
    s = csub.add_parser("show", help="the settings `sinerec train` would use, with the source of each",
                        description="Resolved settings: default < configs/MODEL.toml < --config < --set.",
                        epilog=EPILOG)
    s.add_argument("--model", help="a registered model (default: the user file's model, else sine)")
    s.add_argument("--config", help="your TOML, JSON or YAML settings file, over the shipped one")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting over both files, e.g. --set train.lr=0.0005 (repeatable)")
    s.add_argument("--json", action="store_true", help="print {key: {value, source}} as one JSON object")
    s.set_defaults(handler=cmd_show)


def format_sources(values: dict[str, Any], sources: dict[str, str]) -> str:
    """One line per leaf key: key, value (JSON) and source, in columns."""
    rows = [(key, json.dumps(value), sources[key]) for key, value in values.items()]
    kw = max(len(r[0]) for r in rows)
    vw = min(40, max(len(r[1]) for r in rows))
    lines = [f"{'key':<{kw}}  {'value':<{vw}}  source"]
    lines += [f"{key:<{kw}}  {value:<{vw}}  {source}" for key, value, source in rows]
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    from sinerec.settings import leaves, resolve

    resolved = resolve(args.model, file=args.config, overrides=args.overrides)
    values = leaves(resolved.config.to_dict())
    if args.json:
        print(json.dumps({k: {"value": v, "source": resolved.sources[k]} for k, v in values.items()}))
    else:
        print(format_sources(values, resolved.sources))
        print(format_here(resolved.config))
    return 0


def format_here(config: Any) -> str:
    """What the settings that depend on the machine resolve to on this one (device, precision)."""
    from sinerec import runtime
    from sinerec.models import model_class
    from sinerec.train import resolve_device

    train = config.train
    device = resolve_device(train.device)
    cpu_bf16 = model_class(config.model).cpu_bf16
    precision = runtime.resolve_precision(train.amp, device.type, cpu_bf16)
    why = {"cuda": " (CUDA)", "cpu": f" (this CPU computes bf16 in hardware, and it pays for {config.model})"}.get(
        device.type, "") if train.amp == "auto" and precision == "bf16" else ""
    how = f"bf16 autocast{why}" if precision == "bf16" else "float32"
    return "\n".join([f"here: train.device {json.dumps(train.device)} -> {device}",
                      f"here: train.amp {json.dumps(train.amp)} -> {how}"])
