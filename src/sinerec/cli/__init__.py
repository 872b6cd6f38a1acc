"""The ``sinerec`` command line: thin wiring over library functions.

One module per command group; each has ``register(subparsers)``, which adds its parsers and sets
``handler`` (and ``group`` for a group whose subcommand is missing) as parser defaults. :data:`COMMANDS`
lists them in the order ``sinerec --help`` shows them.
"""

from __future__ import annotations

import argparse
import os
import sys

from sinerec.cli import benchmark, data, explain, serving, train, tune
from sinerec.cli.serving import format_recommendation
from sinerec.cli.train import format_metrics_table
from sinerec.errors import SinerecError

__all__ = ["COMMANDS", "build_parser", "format_metrics_table", "format_recommendation", "main"]

#: the command modules, in help order
COMMANDS = (train, tune, data, explain, serving, benchmark)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sinerec", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from sinerec import __version__

        print(__version__)
        return 0
    handler = getattr(args, "handler", None)
    if handler is None:  # no command, or a group without its subcommand: that level's help
        getattr(args, "group", parser).print_help()
        return 1
    try:
        return int(handler(args))
    except SinerecError as exc:
        print(f"sinerec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sinerec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sinerec ... | head`: the reader has gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
