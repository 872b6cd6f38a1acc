"""What several commands share: the data flags, the index flags and the index they build."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from sinerec.errors import SinerecError
from sinerec.ids import integer_id, show_id

if TYPE_CHECKING:
    from sinerec.retrieval import IndexSettings, ItemIndex
    from sinerec.runs import LoadedRun

RUN_HELP = "run directory written by `sinerec train`"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every parser's formatter: epilogs (examples) kept as written, and each flag's default appended to its
    help unless the help already names it or there is none (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.option_strings and default not in (None, False, [], argparse.SUPPRESS)
                and "%(default)" not in text and "default" not in text):
            text += " (default: %(default)s)"
        return text


def walk_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every parser below it (subcommands), depth first."""
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                out.extend(walk_parsers(child))
    return out


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in low..high (no upper bound when high is None)."""
    def parse(text: str) -> int:
        value = integer_id(text)  # ASCII digits only, never int() on thousands of digits
        if value is None or value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"should be an integer {bound}, got {show_id(text)}")
        return value

    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"should be a number > 0, got {show_id(text)}")
    return value


#: argparse types for counts and sizes (>= 1), optional amounts (>= 0) and TCP ports (1 .. 65535)
positive_int = bounded_int(1)
non_negative_int = bounded_int(0)
port_number = bounded_int(1, 65535)


def add_data_args(p: argparse.ArgumentParser) -> None:
    from sinerec.data.formats import FORMATS

    g = p.add_argument_group("data")
    g.add_argument("--dataset", help="built-in dataset name (see `sinerec datasets`) or a name for --path")
    g.add_argument("--data-dir", help="folder holding the dataset's files (instead of cache/download)")
    g.add_argument("--path", help="your own interaction file")
    g.add_argument("--format", choices=list(FORMATS), metavar="FORMAT",
                   help="format of --path (default table): "
                        + "; ".join(f"{spec.name}: {spec.description}" for spec in FORMATS.values()))
    g.add_argument("--skip-bad-lines", action="store_true", help="skip malformed rows with a warning")


def data_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for opt, key in (("dataset", "data.dataset"), ("data_dir", "data.data_dir"), ("path", "data.path"),
                     ("format", "data.format")):
        value = getattr(args, opt, None)
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")
    if getattr(args, "skip_bad_lines", False):
        out.append("data.skip_bad_lines=true")
    return out


def add_index_args(p: argparse.ArgumentParser, saved: bool = True) -> None:
    """The index flags, from the backend table (``sinerec.retrieval.BACKENDS``) and IndexSettings' fields."""
    from sinerec.retrieval import ALIASES, BACKENDS, backend_names, index_options

    g = p.add_argument_group("index")
    if saved:
        g.add_argument("--index", help="a saved index folder (`sinerec index build`) instead of building one")
    kinds = [f"{alias} (= {target})" for alias, target in ALIASES.items()]
    kinds += [f"{name}: {spec.summary}" for name, spec in BACKENDS.items()]
    g.add_argument("--backend", choices=backend_names(), default="exact",
                   help=f"{'; '.join(kinds)} (default exact)")
    for option in index_options():
        # search-time settings stay unset so that a loaded --index keeps its saved values unless given
        g.add_argument(f"--{option.name.replace('_', '-')}", type=type(option.default),
                       default=None if option.search_time else option.default, help=option.help)


def index_settings(args: argparse.Namespace) -> IndexSettings:
    from sinerec.retrieval import IndexSettings, index_options

    given = {o.name: getattr(args, o.name) for o in index_options()}
    return IndexSettings(backend=args.backend, **{name: v for name, v in given.items() if v is not None})


def run_index(args: argparse.Namespace, run: LoadedRun) -> ItemIndex:
    """The index of a recommend/serve command: the saved --index, or one built from the flags."""
    from sinerec.retrieval import build_index, load_index, vectors_fingerprint

    vectors = run.model.item_embeddings().detach()
    if getattr(args, "index", None):
        try:
            return load_index(args.index, expected_fingerprint=vectors_fingerprint(vectors), nprobe=args.nprobe,
                              ef_search=args.ef_search)
        except (ValueError, KeyError, TypeError, EOFError, RuntimeError) as exc:  # a damaged file of the folder
            raise SinerecError(f"{args.index}: damaged index folder ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    return build_index(vectors, index_settings(args))
