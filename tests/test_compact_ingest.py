"""Compact ingestion (issue 11: a 100M-row log prepared in under 8 GB): compact columns of the streamed parser,
the column chunks, the compact Taobao log, and the column-wise preprocessing, each checked exactly against
the plain path (same values, same fingerprint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sinerec.config import DataConfig
from sinerec.data import codes, delimited
from sinerec.data.delimited import DelimitedFile, Field, parse_delimited
from sinerec.data.files import iter_line_blocks
from sinerec.data.formats.taobao import TAOBAO_BEHAVIORS, read_taobao
from sinerec.data.frame import Interactions
from sinerec.data.preprocess import PreprocessConfig, preprocess
from sinerec.data.synthfile import SynthSpec, write_taobao_csv
from sinerec.errors import DataError, DataFormatError
from sinerec.pipeline import load_interactions, preprocess_source

COMPACT_FIELDS = (
    Field(0, "id", "user id"),
    Field(2, "id", "category id", compact=True),
    Field(3, "choice", "behaviour type", choices=frozenset(TAOBAO_BEHAVIORS), compact=True),
    Field(4, "time", "timestamp", compact=True),
)


def compact_spec(path: Path, block_size: int) -> DelimitedFile:
    return DelimitedFile(path, sep=",", n_fields=5, fields=COMPACT_FIELDS, block_size=block_size)


# ----------------------------------------------------------------------------------------------------------
# The parser's compact columns and chunks


def test_compact_columns_int32_and_categorical(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("".join(f"{u},9,{u % 3},{TAOBAO_BEHAVIORS[u % 4]},{1_500_000_000 + u}\n" for u in range(40)))
    cols, _ = parse_delimited(compact_spec(path, 60), skip_bad_lines=False)
    assert cols[0].dtype == np.int64 and cols[2].dtype == np.int32 and cols[4].dtype == np.int32
    assert isinstance(cols[3].dtype, pd.CategoricalDtype)
    assert cols[3].cat.categories.tolist() == sorted(TAOBAO_BEHAVIORS) and cols[3].cat.codes.dtype == np.int8
    assert cols[3].tolist() == [TAOBAO_BEHAVIORS[u % 4] for u in range(40)]
    assert cols[4].tolist() == [1_500_000_000 + u for u in range(40)]
    assert cols[2].tolist() == [u % 3 for u in range(40)]


def test_compact_column_widens_when_a_later_block_does_not_fit(tmp_path: Path) -> None:
    """Blocks of 2 lines: the first blocks fit int32, the last does not: the whole column is int64, exact."""
    times = [1, 2, 3, 4, 2**31, -(2**31) - 1]
    path = tmp_path / "log.csv"
    path.write_text("".join(f"1,2,3,pv,{t}\n" for t in times))
    cols, _ = parse_delimited(compact_spec(path, 20), skip_bad_lines=False)
    assert cols[4].dtype == np.int64 and cols[4].tolist() == times


def test_empty_file_compact_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("")
    cols, _ = parse_delimited(compact_spec(path, 20), skip_bad_lines=False)
    assert len(cols[3]) == 0 and isinstance(cols[3].dtype, pd.CategoricalDtype)
    assert cols[4].dtype == np.int64 and len(cols[4]) == 0


@pytest.mark.parametrize("chunk_bytes", [8, 24, 1 << 26])
def test_columns_gathered_over_several_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              chunk_bytes: int) -> None:
    """Chunks smaller than a block, a block per chunk, one chunk for all: the same columns; a time column
    that turns fractional in a later block is float64 over every chunk."""
    monkeypatch.setattr(delimited, "_CHUNK_BYTES", chunk_bytes)
    lines = [f"{u},{u * 7},1,{TAOBAO_BEHAVIORS[u % 4]},{u}" for u in range(30)] + ["5,5,1,pv,7.5"]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    plain = tuple(Field(f.index, f.kind, f.label, f.choices) for f in COMPACT_FIELDS)
    cols, _ = parse_delimited(DelimitedFile(path, sep=",", n_fields=5, fields=plain, block_size=45), False)
    assert cols[0].tolist() == [*range(30), 5] and cols[0].dtype == np.int64
    assert cols[4].dtype == np.float64 and cols[4].tolist() == [*range(30), 7.5]
    assert cols[3].dtype == object and cols[3].tolist() == [TAOBAO_BEHAVIORS[u % 4] for u in range(30)] + ["pv"]


# ----------------------------------------------------------------------------------------------------------
# The compact Taobao log


def taobao_file(tmp_path: Path, rows: int = 3000) -> Path:
    path = tmp_path / "log.csv"
    write_taobao_csv(SynthSpec(rows=rows, items=200, users=60, concepts=5, seed=1), path, batch_rows=700)
    return path


def test_compact_taobao_log_holds_the_same_values(tmp_path: Path) -> None:
    path = taobao_file(tmp_path)
    plain = read_taobao(path, behaviors=None)
    compact = read_taobao(path, behaviors=None, compact=True)
    assert compact.events.columns.tolist() == ["user", "item", "timestamp", "behavior"]
    assert compact.events.dtypes.astype(str).tolist() == ["int64", "int64", "int32", "category"]
    for name in ("user", "item", "timestamp", "behavior"):
        assert compact.events[name].tolist() == plain.events[name].tolist()
    pd.testing.assert_frame_equal(compact.items, plain.items)
    assert compact.describe() == plain.describe()


@pytest.mark.parametrize("bad_at", [1, 2, 3, 4])
def test_compact_bad_line_at_a_block_boundary_is_named(tmp_path: Path, bad_at: int) -> None:
    """Blocks of exactly 2 lines: the bad line first or last of a block; the error and the warning name it,
    and the columns read skipping it are those of the file without the line."""
    lines = [f"{u},{u + 10},{u % 3},pv,15{u:06d}" for u in range(1, 5)]
    good = list(lines)
    lines[bad_at - 1] = f"{bad_at},{bad_at + 10},1,pv,15oops{bad_at:02d}"  # as long as the others
    size = 2 * (len(lines[0]) + 1)
    path, without = tmp_path / "bad.csv", tmp_path / "without.csv"
    path.write_text("\n".join(lines) + "\n")
    without.write_text("".join(f"{line}\n" for k, line in enumerate(good) if k != bad_at - 1))
    assert [b.count(b"\n") for b in iter_line_blocks(path, size)] == [2, 2]
    with pytest.raises(DataFormatError) as exc:
        parse_delimited(compact_spec(path, size), skip_bad_lines=False)
    assert (exc.value.line, exc.value.content) == (bad_at, lines[bad_at - 1])
    assert "unparseable timestamp" in str(exc.value)
    with pytest.warns(UserWarning, match=rf"skipped 1 malformed line\(s\): line {bad_at}: unparseable timestamp"):
        cols, skipped = parse_delimited(compact_spec(path, size), skip_bad_lines=True)
    clean, _ = parse_delimited(compact_spec(without, size), skip_bad_lines=False)
    assert skipped == [bad_at]
    for index in clean:
        pd.testing.assert_series_equal(cols[index], clean[index])


def test_compact_taobao_skipping_a_line_equals_the_file_without_it(tmp_path: Path) -> None:
    path = taobao_file(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    path.with_name("bad.csv").write_text("".join(lines[:1234] + ["7,8,9,pv\n"] + lines[1234:]))
    with pytest.warns(UserWarning, match=r"bad.csv: skipped 1 malformed line\(s\): line 1235: expected 5 fields"):
        skipped = read_taobao(path.with_name("bad.csv"), behaviors=None, skip_bad_lines=True, compact=True)
    clean = read_taobao(path, behaviors=None, compact=True)
    pd.testing.assert_frame_equal(skipped.events, clean.events)
    pd.testing.assert_frame_equal(skipped.items, clean.items)
    assert skipped.meta == {"skipped_lines": [1235]}


def test_pipeline_reads_compact_and_prepares_the_same_data(tmp_path: Path) -> None:
    path = taobao_file(tmp_path, rows=6000)
    cfg = DataConfig(path=str(path), format="taobao", behaviors=("pv",), min_user_count=5, min_item_count=5)
    assert load_interactions(cfg, compact=True).events.dtypes["timestamp"] == np.int32
    assert load_interactions(cfg).events.dtypes["timestamp"] == np.int64
    data = preprocess_source(cfg)
    plain = preprocess(load_interactions(cfg), cfg.preprocess_config())
    assert data.fingerprint() == plain.fingerprint() and data.steps == plain.steps
    assert data.timestamps is not None and plain.timestamps is not None
    assert data.timestamps.dtype == np.int64 and np.array_equal(data.timestamps, plain.timestamps)
    assert data.item_categories == plain.item_categories and data.items.dtype == np.int64


# ----------------------------------------------------------------------------------------------------------
# Column-wise preprocessing against the straightforward algorithm (the one before the column-wise rewrite)


def reference(data: Interactions, config: PreprocessConfig) -> dict[str, Any]:
    ev = data.events
    mask = np.ones(len(ev), dtype=bool)
    if config.behaviors is not None and "behavior" in ev:
        mask &= ev["behavior"].isin(list(config.behaviors)).to_numpy()
    uc, uu = pd.factorize(ev["user"], sort=True)
    ic, iu = pd.factorize(ev["item"], sort=True)
    ts = ev["timestamp"].to_numpy() if "timestamp" in ev else None
    if config.duplicates != "keep":
        sub = np.flatnonzero(mask)
        order = np.lexsort((sub, ts[sub])) if ts is not None else np.arange(len(sub))
        dup = pd.DataFrame({"u": uc[sub][order], "i": ic[sub][order]}).duplicated(keep=config.duplicates)
        mask[sub[order][dup.to_numpy()]] = False
    while config.min_user_count or config.min_item_count:
        before = mask.copy()
        for c, n, m in ((ic, len(iu), config.min_item_count), (uc, len(uu), config.min_user_count)):
            mask &= ~(np.bincount(c[mask], minlength=n)[c] < m)
        if not config.kcore_iterative or (mask == before).all():
            break
    sub = np.flatnonzero(mask)
    order = np.lexsort((ts[sub], uc[sub])) if ts is not None else np.argsort(uc[sub], kind="stable")
    users, items = uc[sub][order], ic[sub][order]
    used_items = np.unique(items)
    return {"items": np.searchsorted(used_items, items) + 1, "user_ids": np.asarray(uu)[np.unique(users)],
            "offsets": np.r_[0, np.cumsum(np.unique(users, return_counts=True)[1])],
            "item_ids": [None, *np.asarray(iu)[used_items].tolist()],
            "timestamps": ts[sub][order] if ts is not None else None}


def random_log(seed: int, n: int, text_ids: bool, time_dtype: str | None) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, 40, n), rng.zipf(1.6, n) % 90
    columns: dict[str, Any] = {"user": [f"u{u}" for u in users] if text_ids else users * 1000 - 7,
                               "item": [f"i{i:03d}" for i in items] if text_ids else items}
    if time_dtype is not None:
        columns["timestamp"] = rng.integers(0, 30, n).astype(time_dtype)  # many ties
    columns["behavior"] = pd.Categorical(rng.choice(["pv", "buy", "cart"], n, p=[0.8, 0.1, 0.1]))
    events = pd.DataFrame(columns)
    if text_ids:
        events = events.astype({"user": object, "item": object})
    return Interactions(events, name="random")


CONFIGS = [PreprocessConfig(), PreprocessConfig(behaviors=("pv",), min_user_count=5, min_item_count=5),
           PreprocessConfig(duplicates="first", min_item_count=3),
           PreprocessConfig(behaviors=("pv", "cart"), duplicates="last", min_user_count=4, min_item_count=2,
                            kcore_iterative=False)]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize(("text_ids", "time_dtype"), [(False, "int64"), (False, "int32"), (True, "float64"),
                                                      (True, None)])
def test_columnwise_preprocess_equals_the_reference(monkeypatch: pytest.MonkeyPatch, config: PreprocessConfig,
                                                    text_ids: bool, time_dtype: str | None) -> None:
    monkeypatch.setattr(codes, "CHUNK_ROWS", 7)  # many slices
    data = random_log(3, 2000, text_ids, time_dtype)
    got, want = preprocess(data, config), reference(data, config)
    assert got.items.dtype == np.int64 and got.items.tolist() == want["items"].tolist()
    assert got.offsets.tolist() == want["offsets"].tolist()
    assert got.user_ids.tolist() == want["user_ids"].tolist() and got.user_ids.dtype == want["user_ids"].dtype
    assert got.item_ids.tolist() == want["item_ids"]
    if time_dtype is None:
        assert got.timestamps is None
    else:
        assert got.timestamps is not None and got.timestamps.dtype == (np.float64 if time_dtype == "float64"
                                                                       else np.int64)
        assert got.timestamps.tolist() == want["timestamps"].tolist()


def test_sorted_codes_equal_pandas_sorted_factorize(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codes, "CHUNK_ROWS", 3)
    for ids in (pd.Series([5, -2, 5, 9, -2, 0]), pd.Series([5, 3, 5, 4, 3, 7, 6, 3]), pd.Series([-1, -3, -3, -1]),
                pd.Series([2**62, 2**62 - 1]), pd.Series(["b", "a", "c", "a"], dtype=object),
                pd.Series([3, "a", 1, "a"], dtype=object), pd.Series([], dtype=np.int64)):
        got, uniques = codes.sorted_codes(ids)
        want, want_uniques = pd.factorize(ids, sort=True)
        assert got.dtype == np.int32 and got.tolist() == want.tolist()
        assert list(uniques) == list(want_uniques) and np.asarray(uniques).dtype == np.asarray(want_uniques).dtype


def test_take_and_count_by_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codes, "CHUNK_ROWS", 4)
    table = np.array([10, 20, 30], dtype=np.int32)
    index = np.array([2, 0, 1, 1, 2, 2, 0, 1, 2], dtype=np.int32)
    order = np.array([8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert codes.take_chunked(table, index).tolist() == table[index].tolist()
    got = codes.take_chunked(table, index, order, dtype=np.int64)
    assert got.dtype == np.int64 and got.tolist() == table[index[order]].tolist()
    keep = np.array([True, False] * 4 + [True])
    assert codes.count_codes(index, 4).tolist() == [2, 3, 4, 0]
    assert codes.count_codes(index, 3, keep).tolist() == np.bincount(index[keep], minlength=3).tolist()


@pytest.mark.parametrize("config", CONFIGS)
def test_release_gives_the_same_data_and_empties_the_events(config: PreprocessConfig) -> None:
    kept = preprocess(random_log(5, 500, False, "int32"), config)
    data = random_log(5, 500, False, "int32")
    data.items = pd.DataFrame({"title": ["t"]}, index=pd.Index([3], name="item"))
    released = preprocess(data, config, release=True)
    assert released.fingerprint() == kept.fingerprint() and released.steps == kept.steps
    assert released.timestamps is not None and kept.timestamps is not None
    assert np.array_equal(released.timestamps, kept.timestamps)
    assert data.events.columns.tolist() == [] and data.items is not None and len(data.items) == 1


def test_nothing_left_names_the_rows_read(tmp_path: Path) -> None:
    """The events are released while preparing: the message still counts the rows read."""
    path = tmp_path / "log.csv"
    path.write_text("1,2,3,pv,10\n1,3,3,buy,11\n2,2,3,pv,12\n")
    cfg = DataConfig(path=str(path), format="taobao", min_user_count=100)
    with pytest.raises(DataError, match=r"no interactions to train on \(3 read from .*log.csv; 0 left"):
        preprocess_source(cfg)


def test_member_rows_of_a_categorical_and_of_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codes, "CHUNK_ROWS", 2)
    values = ["pv", "buy", None, "cart", "pv"]
    categorical = pd.Series(pd.Categorical(values, categories=["buy", "cart", "fav", "pv"]))
    assert codes.member_rows(categorical, ["pv", "fav"]).tolist() == [True, False, False, False, True]
    assert codes.member_rows(pd.Series(values, dtype=object), ["pv", "fav"]).tolist() == \
        [True, False, False, False, True]
