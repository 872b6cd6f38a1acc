"""Format ``taobao``: Tianchi's Taobao UserBehavior.csv, ``user_id,item_id,category_id,behavior_type,timestamp``
lines (no header)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sinerec.data.assemble import align_items, events_frame, first_category_items, skipped_meta
from sinerec.data.delimited import DelimitedFile, Field, parse_delimited
from sinerec.data.files import PathLike
from sinerec.data.formats import ReadOptions
from sinerec.data.frame import BEHAVIOR, CATEGORY, ITEM, TIMESTAMP, USER, Interactions
from sinerec.errors import SinerecError

__all__ = ["TAOBAO_BEHAVIORS", "read", "read_taobao"]

#: Behaviour types of the Taobao UserBehavior file (page view, purchase, add to cart, favourite).
TAOBAO_BEHAVIORS: tuple[str, ...] = ("pv", "buy", "cart", "fav")


def read(options: ReadOptions) -> Interactions:
    """The ``taobao`` format: every behaviour type is kept (``data.behaviors`` filters later)."""
    name = {} if options.name is None else {"name": options.name}
    return read_taobao(options.path, behaviors=None, skip_bad_lines=options.skip_bad_lines,
                       compact=options.compact, **name)


def read_taobao(
    path: PathLike,
    behaviors: Sequence[str] | str | None = ("pv",),
    skip_bad_lines: bool = False,
    *,
    name: str = "taobao",
    compact: bool = False,
) -> Interactions:
    """Tianchi's Taobao UserBehavior.csv: no header, ``user_id,item_id,category_id,behavior_type,timestamp``.

    Args:
        behaviors: behaviour types to keep (of pv, buy, cart, fav); None keeps all. The ``behavior`` column
            is kept unless exactly one type is kept.
        skip_bad_lines: skip malformed lines with a warning instead of raising DataFormatError. A file cut in
            the middle of its last line (as heads of the 3.5 GB original often are) is reported as truncated.

        compact: the log is only preprocessed (``sinerec.pipeline``): the timestamps are int32 when they fit,
            the behaviour a Categorical, and the per-event category is not kept (the items table has it):
            about 21 bytes per line instead of 40 (8 for a str object's pointer).

    Returns events user, item, timestamp (int64), category [, behavior] in file order (compact: user, item,
    timestamp [, behavior]); ``items.categories`` = (the item's first seen category,) as str.
    """
    path = Path(path)
    if isinstance(behaviors, str):
        behaviors = (behaviors,)
    if behaviors is not None:
        unknown = sorted(set(behaviors) - set(TAOBAO_BEHAVIORS))
        if unknown or not behaviors:
            raise SinerecError(
                f"read_taobao: unknown behaviour type(s) {unknown or list(behaviors)}; "
                f"expected some of {', '.join(TAOBAO_BEHAVIORS)} (or None for all)"
            )
    spec = DelimitedFile(
        path,
        sep=",",
        n_fields=5,
        fields=(
            Field(0, "id", "user id"),
            Field(1, "id", "item id"),
            Field(2, "id", "category id", compact=compact),
            Field(3, "choice", "behaviour type", choices=frozenset(TAOBAO_BEHAVIORS), compact=compact),
            Field(4, "time", "timestamp", compact=compact),
        ),
    )
    cols, skipped = parse_delimited(spec, skip_bad_lines)
    events = events_frame({USER: cols.pop(0), ITEM: cols.pop(1), TIMESTAMP: cols.pop(4), CATEGORY: cols.pop(2),
                           BEHAVIOR: cols.pop(3)})
    if behaviors is not None:
        events = events[events[BEHAVIOR].isin(set(behaviors))].reset_index(drop=True)
        if len(set(behaviors)) == 1:
            events = events.drop(columns=BEHAVIOR)
    items = first_category_items(events[ITEM], events[CATEGORY])
    if compact:
        events = events.drop(columns=CATEGORY)
    return Interactions(events, align_items(events, items), name=name, source=str(path), meta=skipped_meta(skipped))
