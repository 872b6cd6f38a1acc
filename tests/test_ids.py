"""sinerec.ids: original ids <-> indices, ids spelled as text."""

import numpy as np
import pandas as pd

from sinerec.ids import IdMap, id_column, ids_from_text, integer_id, plain_id, show_id, split_ids


def test_plain_id_turns_numpy_scalars_into_python_values():
    assert type(plain_id(np.int64(7))) is int and plain_id(np.int64(7)) == 7
    assert type(plain_id(np.str_("a"))) is str
    assert plain_id("b") == "b" and plain_id(None) is None


def test_ids_from_text_are_integers_only_when_all_are():
    integers = ids_from_text(pd.Series(["12", "-3", "7"]))
    assert integers.dtype == np.int64 and integers.tolist() == [12, -3, 7]
    mixed = ids_from_text(pd.Series(["12", "B00X", "7"]))
    assert mixed.dtype == object and mixed.tolist() == ["12", "B00X", "7"]


def test_id_column_never_gives_an_object_array():
    assert id_column([np.int64(4), 5]).dtype == np.int64
    text = id_column(["a", 5])
    assert text.dtype.kind == "U" and text.tolist() == ["a", "5"]
    assert id_column([True, 1]).tolist() == ["True", "1"]  # a bool is not an integer id


def test_split_ids_drops_blanks_and_spaces():
    assert split_ids(" 12, 7,,x , ") == ["12", "7", "x"]
    assert split_ids("") == []


def test_integer_table_finds_ids_given_as_text():
    items = IdMap(np.array([None, 40, 12, -3], dtype=object), first=1)  # index 0: padding
    assert [items.index(v) for v in (40, np.int64(12), "12", " -3 ", "-3")] == [1, 2, 2, 3, 3]
    assert [items.index(v) for v in (None, 99, "x", True, 12.0, "1 2")] == [None] * 6
    assert len(items) == 3 and items.integer


def test_text_table_finds_ids_given_as_integers():
    users = IdMap(np.array(["a", "7", "b"], dtype=object))
    assert [users.index(v) for v in ("a", "7", 7, np.int64(7), "b")] == [0, 1, 1, 1, 2]
    assert [users.index(v) for v in ("A", " a", 7.0, None)] == [None] * 4
    assert not users.integer


def test_integer_id_accepts_ascii_int64_text_only():
    assert [integer_id(v) for v in (42, np.int64(-3), " 17 ", "-0", "9223372036854775807")] == [42, -3, 17, 0,
                                                                                                  2**63 - 1]
    rejected = ("9223372036854775808", 2**63, -(2**63) - 1, "1" * 5000, 10**5000, "١٢", "１２", "12.0", "+1",
                True, None, 12.0, "1_000", "")
    assert [integer_id(v) for v in rejected] == [None] * len(rejected)


def test_huge_numerals_and_foreign_digits_are_unknown_ids_not_errors():
    items = IdMap(np.array([None, 12, 5], dtype=object), first=1)
    # int("1" * 5000) raises ValueError (Python's 4,300-digit limit); int("١٢") == 12 would alias item 12
    assert [items.index(v) for v in ("1" * 5000, "١٢", "１２", "٥", 10**5000)] == [None] * 5
    texts = IdMap(np.array(["12", "x"], dtype=object))
    assert [texts.index(v) for v in (10**5000, "١٢", 12)] == [None, None, 0]


def test_show_id_keeps_messages_short():
    assert show_id(7) == "7" and show_id("ab") == "'ab'"
    assert show_id("9" * 5000) == "'" + "9" * 39 + "... (5,000 characters)"
    assert show_id(10**5000) == f"<an integer of {(10**5000).bit_length()} bits>"
