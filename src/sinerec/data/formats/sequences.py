"""Format ``sequences``: one ``user item1 item2 ...`` line per user (SASRec / S3-Rec), optionally S3-Rec's
``item2attributes.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sinerec.data.assemble import align_items, events_frame, ids_from_strings, items_frame, skipped_meta
from sinerec.data.delimited import BadLine, Field, check_value, report_bad_lines
from sinerec.data.files import PathLike, dataset_stem, load_bytes
from sinerec.data.formats import ReadOptions
from sinerec.data.frame import ITEM, USER, Interactions
from sinerec.errors import DataFormatError, SinerecError

__all__ = ["read", "read_sequences"]

_ID_FIELDS = (Field(0, "id", "user id"), Field(1, "id", "item id"))


def read(options: ReadOptions) -> Interactions:
    """The ``sequences`` format: ``options.item_path`` is the optional item2attributes.json."""
    return read_sequences(options.path, options.item_path, name=options.name,
                          skip_bad_lines=options.skip_bad_lines)


def read_sequences(
    path: PathLike,
    attributes_path: PathLike | None = None,
    *,
    name: str | None = None,
    skip_bad_lines: bool = False,
) -> Interactions:
    """One sequence per line, ``user item1 item2 ...`` separated by white space (SASRec / S3-Rec format).

    There are no timestamps: the events have columns user, item only, in file order, which is each user's
    chronological order. A line needs a user and at least one item (a lone token usually means the file
    uses another separator, so it is reported). ``attributes_path``: a JSON object item id -> list of
    attribute ids (S3-Rec's ``item2attributes.json``) -> ``items.categories`` as tuples of str.
    ``name`` defaults to the file's stem.
    """
    path = Path(path)
    data = load_bytes(path)
    users: list[str] = []
    items_: list[str] = []
    bad: list[BadLine] = []
    lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    if ends_with_newline:
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append((number, number, raw.decode("utf-8", "replace"), "not valid utf-8"))
            continue
        tokens = text.split()
        if not tokens:
            continue
        if len(tokens) < 2:
            reason = "expected a user id followed by at least one item id"
            if number == len(lines) and not ends_with_newline:
                reason += (
                    "; this is the last line and the file does not end with a newline: it looks truncated"
                )
            bad.append((number, number, text.rstrip("\r"), reason))
            continue
        problem = next(filter(None, (check_value(_ID_FIELDS[min(j, 1)], token) for j, token in enumerate(tokens))),
                       None)  # the readers' id limits: no NUL, at most MAX_ID_LENGTH characters
        if problem is not None:
            bad.append((number, number, text.rstrip("\r"), problem))
            continue
        users.extend([tokens[0]] * (len(tokens) - 1))
        items_.extend(tokens[1:])
    if bad:
        report_bad_lines(path, bad if skip_bad_lines else bad[:1], skip_bad_lines)
    events = events_frame({USER: ids_from_strings(users), ITEM: ids_from_strings(items_)})
    items = None
    sources = [str(path)]
    if attributes_path is not None:
        attributes_path = Path(attributes_path)
        sources.append(str(attributes_path))
        items = _read_attributes(attributes_path)
    return Interactions(
        events,
        align_items(events, items),
        name=name or dataset_stem(path),
        source=", ".join(sources),
        meta=skipped_meta([b[0] for b in bad]),
    )


def _read_attributes(path: Path) -> pd.DataFrame:
    """S3-Rec's item2attributes.json: {"item id": [attribute ids]} -> items with ``categories``."""
    data = load_bytes(path)
    try:
        mapping = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SinerecError(f"{path}: not valid utf-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        line = data.decode("utf-8").split("\n")[exc.lineno - 1]
        col = exc.colno - 1
        raise DataFormatError(
            str(path),
            exc.lineno,
            line[max(0, col - 60) : col + 60],
            f"invalid JSON at column {exc.colno}: {exc.msg}",
        ) from None
    if not isinstance(mapping, dict):
        raise SinerecError(
            f"{path}: expected a JSON object item id -> list of attribute ids, got {type(mapping).__name__}"
        )
    ids, cats = [], []
    for key, values in mapping.items():
        if not isinstance(values, list) or not all(isinstance(v, (int, str)) for v in values):
            raise SinerecError(f"{path}: item {key!r}: expected a list of attribute ids, got {values!r:.80}")
        ids.append(key)
        cats.append(tuple(str(v) for v in values))
    return items_frame(ids_from_strings(ids), categories=cats)
