"""What several commands share: the data flags, the index flags and the index they build."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from sinerec.errors import SinerecError

if TYPE_CHECKING:
    from sinerec.retrieval import IndexSettings, ItemIndex
    from sinerec.runs import LoadedRun

RUN_HELP = "run directory written by `sinerec train`"


def _int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``low .. high``; anything else is argparse's one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"in {low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its fallback message
    return parse


#: argparse types for counts and sizes (>= 1), optional amounts (>= 0) and TCP ports (0 .. 65535)
positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)
port_number = _int_at_least(0, 65535)


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
        g.add_argument(f"--{option.name.replace('_', '-')}", type=int,
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
