"""The ``sinerec`` command line: thin wiring over library functions.

One module per command group; each has ``register(subparsers)``, which adds its parsers and sets
``handler`` (and ``group`` for a group whose subcommand is missing) as parser defaults. :data:`COMMANDS`
lists them in the order ``sinerec --help`` shows them.
"""

from __future__ import annotations

from sinerec import runtime

runtime.prefer_passive_wait()  # before anything imports torch: OpenMP reads it once (sinerec.runtime)

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

from sinerec.cli import benchmark, config, data, evaluate, explain, predict, rundata, serving, train, tune  # noqa: E402
from sinerec.cli.common import HelpFormatter, walk_parsers  # noqa: E402
from sinerec.cli.serving import format_recommendation  # noqa: E402
from sinerec.cli.train import format_metrics_table  # noqa: E402
from sinerec.errors import SinerecError  # noqa: E402

__all__ = ["COMMANDS", "DEBUG_ENV", "ConsoleHandler", "build_parser", "configure_logging", "describe_os_error",
           "format_metrics_table", "format_recommendation", "main"]

#: set to 1 (or pass ``--debug``) to get the traceback behind an error message
DEBUG_ENV = "SINEREC_DEBUG"

EPILOG = """examples:
  sinerec datasets
  sinerec train --model sasrec --dataset ml-1m
  sinerec evaluate --run RUN --set protocol.exclude_history=false
  sinerec predict --run RUN --users all --k 10 --out top10.parquet
  sinerec config show --model sine

`sinerec COMMAND --help` shows a command's flags and their defaults."""

#: the command modules, in help order
COMMANDS = (train, tune, evaluate, predict, config, data, explain, serving, benchmark, rundata)


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
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an error (also {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command")
    for module in COMMANDS:
        module.register(sub)
    for p in walk_parsers(parser):
        p.formatter_class = HelpFormatter
    return parser


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    return f"sinerec: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` (default ``sys.argv[1:]``) and return its exit code.

    Errors are one line on stderr: a user's mistake or a damaged file (``SinerecError``) and a failing file
    operation (``OSError``: a full disk, a missing folder, an ``--out`` that is a file) exit 2, naming the
    file and the reason; anything else exits 1 as an internal error. ``--debug`` or ``SINEREC_DEBUG=1``
    re-raises instead, with the traceback.
    """
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
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    previous_format = warnings.formatwarning
    if not debug:  # a warning reads like the errors: no library file, line number or source line
        warnings.formatwarning = _format_warning
    try:
        return int(handler(args))
    except SinerecError as exc:
        if debug:
            raise
        print(f"sinerec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sinerec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sinerec ... | head`: the reader has gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
    except OSError as exc:  # after BrokenPipeError, one of them
        if debug:
            raise
        print(f"sinerec: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback on request
        if debug:
            raise
        print(f"sinerec: internal error: {type(exc).__name__}: {exc} (rerun with --debug or {DEBUG_ENV}=1 "
              "for the traceback, and please report it)", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = previous_format


def describe_os_error(exc: OSError) -> str:
    """``FILE: reason`` for a failed file operation (``[Errno 28] No space left on device`` -> the reason)."""
    reason = exc.strerror or str(exc)
    names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason
