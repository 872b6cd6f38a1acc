"""The ``sinerec`` command line: thin wiring over library functions.

One module per command group; each has ``register(subparsers)``, which adds its parsers and sets
``handler`` (and ``group`` for a group whose subcommand is missing) as parser defaults. :data:`COMMANDS`
lists them in the order ``sinerec --help`` shows them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from sinerec.cli import benchmark, config, data, evaluate, explain, predict, serving, train, tune
from sinerec.cli.common import HelpFormatter, walk_parsers
from sinerec.cli.serving import format_recommendation
from sinerec.cli.train import format_metrics_table
from sinerec.errors import SinerecError

__all__ = ["COMMANDS", "ConsoleHandler", "build_parser", "configure_logging", "format_metrics_table",
           "format_recommendation", "main"]

EPILOG = """examples:
  sinerec datasets
  sinerec train --model sasrec --dataset ml-1m
  sinerec evaluate --run RUN --set protocol.exclude_history=false
  sinerec predict --run RUN --users all --k 10 --out top10.parquet
  sinerec config show --model sine

`sinerec COMMAND --help` shows a command's flags and their defaults."""

#: the command modules, in help order
COMMANDS = (train, tune, evaluate, predict, config, data, explain, serving, benchmark)


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The command line's handler of the ``sinerec`` logger: the bare message on the *current* stdout (INFO)
    or stderr (WARNING and above), so that the library's progress reads as the command's own output."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stdout if self.level_of_record < logging.WARNING else sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler sets it; the current sys stream is used instead
        pass

    level_of_record = logging.INFO

    def emit(self, record: logging.LogRecord) -> None:
        self.level_of_record = record.levelno
        super().emit(record)


def configure_logging() -> None:
    """Route the ``sinerec`` logger to the console at INFO, once per process."""
    logger = logging.getLogger("sinerec")
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        logger.addHandler(ConsoleHandler())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sinerec", description=__doc__.splitlines()[0], epilog=EPILOG)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    for module in COMMANDS:
        module.register(sub)
    for p in walk_parsers(parser):
        p.formatter_class = HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from sinerec import __version__

        print(__version__)
        return 0
    handler = getattr(args, "handler", None)
    if handler is None:  # no command, or a group without its subcommand: that level's help, a usage error
        getattr(args, "group", parser).print_help(sys.stderr)
        return 2
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
