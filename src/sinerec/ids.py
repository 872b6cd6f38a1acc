"""Original ids (as the dataset spells them) and the dense indices the model uses.

A run keeps two id tables (``SequenceData.user_ids``, index u -> the user's id, and ``item_ids``, index
i -> the item's id, entry 0 being padding). Ids are int64 when every id of the dataset is an integer, else
text. This module owns the conversions between the two worlds:

- :func:`plain_id`: a table entry as a JSON-ready Python value;
- :func:`ids_from_text` and :func:`id_column`: a table read back from text (CSV), and written as a
  typed column (npz, Parquet);
- :func:`split_ids`: a comma-separated list typed by a person;
- :func:`integer_id`: the one parser of an integer id given as text or as a number;
- :class:`IdMap`: original id -> index, accepting ids spelled as text ("42" finds 42 in an integer table,
  as command lines, URLs and JSON clients send them; 42 finds "42" in a text table);
- :func:`show_id`: an id as error messages print it (a hostile id of megabytes stays one short line).

Limits of a looked-up id: integer ids are int64, so integer text is ASCII digits (an optional "-", at
most 19 digits, surrounding spaces ignored); other digits (Arabic-Indic "١٢", fullwidth "１２") are text
that no integer id equals, and a longer numeral is simply unknown, never parsed (Python refuses to
convert numerals over 4,300 digits). An integer given for a text table is looked up as its decimal text
when it has at most ``MAX_ID_CHARS`` digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MAX_ID_CHARS", "IdMap", "id_column", "ids_from_text", "integer_id", "plain_id", "show_id", "split_ids"]

INTEGER_TEXT = re.compile(r"-?[0-9]+")
"""How an integer id is spelled as text: ASCII digits only (``\\d`` would accept any script's digits)."""

INT64_TEXT = re.compile(r"-?[0-9]{1,19}")
"""Integer text that can name an int64 id (longer numerals are never converted)."""

MAX_ID_CHARS = 1024
"""The most characters of an id looked up as text from an integer (longer ones are unknown ids)."""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def integer_id(value: Any) -> int | None:
    """``value`` as an int64 id: a Python or numpy integer (not a bool) or ASCII integer text such as
    ``" -42 "``; None for anything else, including non-ASCII digits and numbers outside int64."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, str) and len(value) <= 64 and INT64_TEXT.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        return None
    return number if INT64_MIN <= number <= INT64_MAX else None


def show_id(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to about ``limit`` characters with the full length named, for messages."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<an integer of {value.bit_length()} bits>"  # repr() itself fails past 4,300 digits
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as text"
    return f"{text[:limit]}... ({size})"


def plain_id(value: Any) -> Any:
    """A numpy scalar as the Python int / str it holds (for JSON); any other value unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def ids_from_text(values: pd.Series) -> np.ndarray:
    """Ids read back from CSV as text: int64 when every one is an integer (as the readers do), else str
    (an object array)."""
    text = values.astype(str)
    if text.str.fullmatch(INTEGER_TEXT.pattern).all():
        return text.astype(np.int64).to_numpy()
    return text.to_numpy(dtype=object)


def id_column(ids: Iterable[Any]) -> np.ndarray:
    """Original ids as int64 when they are all integers, else as text (never object arrays)."""
    values = list(ids)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    return np.asarray([str(v) for v in values], dtype=str)


def split_ids(text: str) -> list[str]:
    """``"12, 7,,x "`` -> ``["12", "7", "x"]``: a comma-separated list of ids, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


class IdMap:
    """Original id -> index for one id table, built once.

    Args:
        ids: the table, index -> original id (``SequenceData.user_ids`` or ``item_ids``).
        first: the first index that holds an id (1 for items: index 0 is padding, never looked up).
    """

    def __init__(self, ids: Sequence[Any] | np.ndarray, first: int = 0) -> None:
        self.integer = all(isinstance(i, (int, np.integer)) for i in ids[first:])
        self._index: dict[Any, int] = {self.key(i): idx for idx, i in enumerate(ids) if idx >= first}

    def key(self, value: Any) -> Any:
        """The dictionary key of an original id, or None for a value no id can equal: an integer table
        takes what :func:`integer_id` accepts ("42", " -3 "), a text table takes text and ints (42 -> "42")."""
        if self.integer:
            return integer_id(value)
        if isinstance(value, str):
            return value
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            number = int(value)
            return str(number) if abs(number) < 10**MAX_ID_CHARS else None
        return None

    def index(self, value: Any) -> int | None:
        """The index of original id ``value`` (spelled as :meth:`key` allows), None when unknown."""
        return self._index.get(self.key(value))

    def __len__(self) -> int:
        return len(self._index)
