"""Readers: exact contents of tiny files written here, malformed rows, gzip, and the real files if present."""

from __future__ import annotations

import gzip
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sinerec.data.formats.comirec import read_comirec
from sinerec.data.formats.ml1m import read_ml1m
from sinerec.data.formats.movielens import read_movielens_csv
from sinerec.data.formats.recbole import read_recbole
from sinerec.data.formats.sequences import read_sequences
from sinerec.data.formats.table import read_table
from sinerec.data.formats.taobao import read_taobao
from sinerec.errors import DataFormatError, SinerecError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


def write(folder: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``content`` to ``folder/name``, gzipped when the name ends in .gz."""
    data = content.encode(encoding) if isinstance(content, str) else content
    path = folder / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def events(**columns: list) -> pd.DataFrame:
    """An expected events frame: int lists become int64, float lists float64, str lists object."""
    out = {}
    for key, values in columns.items():
        if all(isinstance(v, str) for v in values):
            out[key] = pd.Series(values, dtype=object)
        elif all(isinstance(v, int) for v in values):
            out[key] = pd.Series(values, dtype=np.int64)
        else:
            out[key] = pd.Series(values, dtype=np.float64)
    return pd.DataFrame(out)


def items(ids: list, **columns: list) -> pd.DataFrame:
    dtype = np.int64 if all(isinstance(i, int) for i in ids) else object
    data = {k: pd.Series(v, dtype=object).to_numpy() for k, v in columns.items()}
    return pd.DataFrame(data, index=pd.Index(ids, dtype=dtype, name="item"))


def assert_bad(
    exc: pytest.ExceptionInfo[DataFormatError], path: Path, line: int, content: str, reason: str
) -> None:
    message = str(exc.value)
    assert path.name in message and f"line {line}" in message and content in message and reason in message
    assert exc.value.line == line and exc.value.content == content and exc.value.path == str(path)


# ----------------------------------------------------------------------------------------------------------
# ML-1M


ML1M_RATINGS = "1::10::5::978300760\n2::20::3::978300761\n1::20::4::978300762\n"
ML1M_MOVIES = "10::Misérables, Les (1995)::Drama|Musical\n20::Toy Story (1995)::Animation\n30::Nothing::\n"


def expected_ml1m_items() -> pd.DataFrame:
    return items(
        [10, 20, 30],
        title=["Misérables, Les (1995)", "Toy Story (1995)", "Nothing"],
        categories=[("Drama", "Musical"), ("Animation",), ()],
    )


@pytest.mark.parametrize("gz", [False, True])
def test_ml1m_exact(tmp_path: Path, gz: bool) -> None:
    suffix = ".gz" if gz else ""
    write(tmp_path, "ratings.dat" + suffix, ML1M_RATINGS)
    write(tmp_path, "movies.dat" + suffix, ML1M_MOVIES, encoding="latin-1")
    got = read_ml1m(tmp_path)
    expected = events(
        user=[1, 2, 1], item=[10, 20, 20], timestamp=[978300760, 978300761, 978300762], rating=[5.0, 3.0, 4.0]
    )
    pd.testing.assert_frame_equal(got.events, expected)
    pd.testing.assert_frame_equal(got.items, expected_ml1m_items())
    assert got.name == "ml-1m" and "ratings.dat" in got.source and "movies.dat" in got.source
    assert read_ml1m(tmp_path, name="mine").name == "mine"


@pytest.mark.parametrize(
    "line, reason",
    [
        ("2::20::x::978300761", "unparseable rating 'x'"),
        ("2::20::3", "expected 4 fields, found 3"),
        ("2::20::3::978300761::9", "expected 4 fields, found 5"),
        ("2::20::3::soon", "unparseable timestamp 'soon'"),
        ("::20::3::978300761", "missing user id"),
    ],
)
def test_ml1m_malformed(tmp_path: Path, line: str, reason: str) -> None:
    path = write(tmp_path, "ratings.dat", f"1::10::5::978300760\n{line}\n1::20::4::978300762\n")
    write(tmp_path, "movies.dat", ML1M_MOVIES, encoding="latin-1")
    with pytest.raises(DataFormatError) as exc:
        read_ml1m(tmp_path)
    assert_bad(exc, path, 2, line, reason)


def test_ml1m_separator_stand_in_bytes_in_data(tmp_path: Path) -> None:
    # "::" is replaced by a byte absent from the file; when every candidate occurs, the exact slow road.
    write(tmp_path, "ratings.dat", ML1M_RATINGS)
    write(tmp_path, "movies.dat", "10::odd \x1f\x1e\x1d\x01 title::Drama\n20::B::\n", encoding="latin-1")
    got = read_ml1m(tmp_path)
    assert got.items is not None
    assert got.items["title"].tolist() == ["odd \x1f\x1e\x1d\x01 title", "B"]


def test_ml1m_missing_file(tmp_path: Path) -> None:
    write(tmp_path, "ratings.dat", ML1M_RATINGS)
    with pytest.raises(SinerecError, match="movies.dat"):
        read_ml1m(tmp_path)


# ----------------------------------------------------------------------------------------------------------
# MovieLens CSV


def test_movielens_csv_exact(tmp_path: Path) -> None:
    folder = tmp_path / "ml-tiny"
    folder.mkdir()
    write(
        folder,
        "ratings.csv",
        "userId,movieId,rating,timestamp\r\n1,11,4.0,964982703\r\n2,40,2.5,964981247\r\n",
    )
    write(
        folder,
        "movies.csv.gz",
        'movieId,title,genres\n11,"American President, The (1995)",Comedy|Drama\n'
        '40,"Cry, the Beloved Country (1995)",Drama\n99,Unknown (2015),(no genres listed)\n',
    )
    got = read_movielens_csv(folder)
    pd.testing.assert_frame_equal(
        got.events, events(user=[1, 2], item=[11, 40], timestamp=[964982703, 964981247], rating=[4.0, 2.5])
    )
    expected = items(
        [11, 40, 99],
        title=["American President, The (1995)", "Cry, the Beloved Country (1995)", "Unknown (2015)"],
        categories=[("Comedy", "Drama"), ("Drama",), ()],
    )
    pd.testing.assert_frame_equal(got.items, expected)
    assert got.name == "ml-tiny"


def test_movielens_csv_malformed(tmp_path: Path) -> None:
    path = write(
        tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,11,4.0,964982703\n2,40,good,1\n"
    )
    write(tmp_path, "movies.csv", "movieId,title,genres\n11,A,Drama\n")
    with pytest.raises(DataFormatError) as exc:
        read_movielens_csv(tmp_path)
    assert_bad(exc, path, 3, "2,40,good,1", "unparseable rating")


def test_movielens_csv_bad_header(tmp_path: Path) -> None:
    path = write(tmp_path, "ratings.csv", "user,movie,rating,timestamp\n1,11,4.0,964982703\n")
    write(tmp_path, "movies.csv", "movieId,title,genres\n11,A,Drama\n")
    with pytest.raises(DataFormatError) as exc:
        read_movielens_csv(tmp_path)
    assert exc.value.line == 1 and exc.value.path == str(path) and "userId" in str(exc.value)


# ----------------------------------------------------------------------------------------------------------
# Generic tables


def test_table_header_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "log.csv",
        'who,what,when,cat,act\nu1,7,2020-01-01T00:00:01Z,"a,b",click\nu2,8,2020-01-01 00:00:02,c,buy\n'
        "u1,7,2020-01-01T01:00:00+01:00,z,click\n",
    )
    got = read_table(path, "who", "what", "when", category_col="cat", behavior_col="act")
    expected = events(
        user=["u1", "u2", "u1"],
        item=[7, 8, 7],
        timestamp=[1577836801, 1577836802, 1577836800],
        behavior=["click", "buy", "click"],
        category=["a,b", "c", "z"],
    )
    pd.testing.assert_frame_equal(got.events, expected)
    pd.testing.assert_frame_equal(got.items, items([7, 8], categories=[("a,b",), ("c",)]))
    assert got.name == "log" and got.source == str(path)


@pytest.mark.parametrize("name", ["log.tsv", "log.tsv.gz"])
def test_table_positions_without_header(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, "1\t5\t10.5\t3\n2\t6\t11\t3\n")
    got = read_table(path, 0, 1, timestamp_col=2, category_col=3, header=False)
    pd.testing.assert_frame_equal(
        got.events, events(user=[1, 2], item=[5, 6], timestamp=[10.5, 11.0], category=[3, 3])
    )
    pd.testing.assert_frame_equal(got.items, items([5, 6], categories=[("3",), ("3",)]))


def test_table_custom_sep_and_ids_kept_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, "log.txt", "u;i\n1;1.5\n2;007\n3;99999999999999999999\n")
    got = read_table(path, "u", "i", sep=";")
    pd.testing.assert_frame_equal(
        got.events, events(user=[1, 2, 3], item=["1.5", "007", "99999999999999999999"])
    )
    assert not got.has_timestamps and got.items is None


def test_table_missing_column_names_existing(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user,item\n1,2\n")
    with pytest.raises(SinerecError, match=r"no column 'ts'; the columns are: 'user', 'item'"):
        read_table(path, "user", "item", "ts")
    with pytest.raises(SinerecError, match="header=False"):
        read_table(path, "user", "item", header=False)
    with pytest.raises(SinerecError, match="out of range"):
        read_table(path, 0, 5, header=False)


@pytest.mark.parametrize(
    "content, line, bad, reason",
    [
        ("u,i,t,x\n1,2,3,a\n1,3,4\n", 3, "1,3,4", "expected 4 fields, found 3"),  # short row, unused column
        ("u,i,t,x\n1,2,3,a\n1,3,4,b,c\n", 3, "1,3,4,b,c", "expected 4 fields, found 5"),
        ("u,i,t,x\n1,2,3,a\n1,,4,b\n", 3, "1,,4,b", "missing item id"),
        ("u,i,t,x\n1,2,3,a\n1,3,yesterday,b\n", 3, "1,3,yesterday,b", "unparseable timestamp 'yesterday'"),
        ('u,i,t,x\n1,2,3,"a\n1,3,4,b\n', 2, '1,2,3,"a', "quoted field is never closed"),  # unclosed quote
    ],
)
def test_table_malformed(tmp_path: Path, content: str, line: int, bad: str, reason: str) -> None:
    path = write(tmp_path, "log.csv", content)
    with pytest.raises(DataFormatError) as exc:
        read_table(path, "u", "i", "t")
    message = str(exc.value)
    assert path.name in message and f"line {line}" in message and reason in message
    assert exc.value.content.startswith(bad)


def test_table_first_line_with_extra_field(tmp_path: Path) -> None:
    # pandas would take the first line's extra field for an index, or drop it with a mere warning.
    path = write(tmp_path, "log.csv", "1,2,3,4\n4,5,6\n")
    with pytest.raises(DataFormatError) as exc:
        read_comirec(path)
    assert_bad(exc, path, 1, "1,2,3,4", "expected 3 fields, found 4")


def test_table_without_header_reports_an_odd_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "1,2,3,4\n4,5,6\n7,8,9\n")
    with pytest.raises(DataFormatError) as exc:
        read_table(path, 0, 1, 2, header=False)
    assert_bad(exc, path, 1, "1,2,3,4", "expected 3 fields, found 4")


def test_table_empty_value_in_unused_column_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "u,i,note\n1,2,\n3,4,x\n")
    pd.testing.assert_frame_equal(read_table(path, "u", "i").events, events(user=[1, 3], item=[2, 4]))


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed")
def test_table_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "u": ["a", "b"],
            "i": np.array([5, 6], dtype=np.int32),
            "t": pd.to_datetime(["2020-01-01 00:00:01", "2020-01-01 00:00:02"]),
            "c": ["x", "y"],
        }
    )
    frame.to_parquet(tmp_path / "log.parquet")
    got = read_table(tmp_path / "log.parquet", "u", "i", "t", category_col="c")
    pd.testing.assert_frame_equal(
        got.events,
        events(user=["a", "b"], item=[5, 6], timestamp=[1577836801, 1577836802], category=["x", "y"]),
    )
    by_position = read_table(tmp_path / "log.parquet", 0, 1, header=False)
    pd.testing.assert_frame_equal(by_position.events, events(user=["a", "b"], item=[5, 6]))
    with pytest.raises(SinerecError, match=r"no column 'q'"):
        read_table(tmp_path / "log.parquet", "u", "q")
    frame.loc[1, "i"] = None
    frame.to_parquet(tmp_path / "holes.pq")
    with pytest.raises(DataFormatError, match="missing item id"):
        read_table(tmp_path / "holes.pq", "u", "i", fmt="parquet")


def test_table_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SinerecError, match=r'pip install "sinerec\[parquet\]"'):
        read_table(tmp_path / "log.parquet", "u", "i")


# ----------------------------------------------------------------------------------------------------------
# RecBole, ComiRec, sequences


def test_recbole(tmp_path: Path) -> None:
    inter = write(
        tmp_path,
        "tiny.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t978300760.0\n1\t3\t4.5\t978300761\n",
    )
    item = write(
        tmp_path,
        "tiny.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq\n"
        "2\tToy Story\t1995\tAnimation Comedy\n3\tHeat\t1995\tAction\n4\tx\t\t\n",
    )
    got = read_recbole(inter, item)
    pd.testing.assert_frame_equal(
        got.events, events(user=[1, 1], item=[2, 3], timestamp=[978300760, 978300761], rating=[3.0, 4.5])
    )
    expected = items(
        [2, 3, 4], title=["Toy Story", "Heat", "x"], categories=[("Animation", "Comedy"), ("Action",), ()]
    )
    pd.testing.assert_frame_equal(got.items, expected)
    assert got.name == "tiny"


def test_recbole_item_file_next_to_the_inter_file_is_read_without_item_path(tmp_path: Path) -> None:
    """Without data.item_path, NAME.item next to NAME.inter gives the titles; another name is not picked up."""
    from sinerec.data.formats import ReadOptions
    from sinerec.data.formats.recbole import read

    inter_text = "user_id:token\titem_id:token\n1\t2\n1\t3\n"
    inter = write(tmp_path, "tiny.inter", inter_text)
    assert read(ReadOptions(str(inter))).items is None  # no .item file yet
    write(tmp_path, "other.item", "item_id:token\ttitle:token_seq\n2\tWrong\n")
    assert read(ReadOptions(str(inter))).items is None
    write(tmp_path, "tiny.item",
          "item_id:token\ttitle:token_seq\tgenre:token_seq\n2\tToy Story\tAnimation\n3\tHeat\tAction\n")
    got = read(ReadOptions(str(inter)))
    pd.testing.assert_frame_equal(got.items, items([2, 3], title=["Toy Story", "Heat"],
                                                   categories=[("Animation",), ("Action",)]))
    assert got.source == f"{inter}, {tmp_path / 'tiny.item'}"
    named = write(tmp_path, "named.item", "item_id:token\ttitle:token_seq\n2\tNamed\n3\tOther\n")
    assert read(ReadOptions(str(inter), item_path=str(named))).items["title"].tolist() == ["Named", "Other"]


def test_recbole_errors(tmp_path: Path) -> None:
    bad_header = write(tmp_path, "a.inter", "user_id\titem_id\n1\t2\n")
    with pytest.raises(DataFormatError, match="name:type"):
        read_recbole(bad_header)
    no_item = write(tmp_path, "b.inter", "user_id:token\tproduct:token\n1\t2\n")
    with pytest.raises(SinerecError, match="no field 'item_id'"):
        read_recbole(no_item)
    assert read_recbole(no_item, item_field="product").events[["user", "item"]].values.tolist() == [[1, 2]]


def test_comirec(tmp_path: Path) -> None:
    path = write(tmp_path, "book_train.txt", "0,5,1500000000\n1,6,1500000001\n0,6,1500000002\n")
    cats = write(tmp_path, "book_item_cate.txt", "5,2\n6,3\n7,3\n")
    got = read_comirec(path, cats)
    pd.testing.assert_frame_equal(
        got.events, events(user=[0, 1, 0], item=[5, 6, 6], timestamp=[1500000000, 1500000001, 1500000002])
    )
    pd.testing.assert_frame_equal(got.items, items([5, 6, 7], categories=[("2",), ("3",), ("3",)]))
    assert got.name == "book_train"


def test_sequences(tmp_path: Path) -> None:
    path = write(tmp_path, "Tiny.txt", "1 4 5 6\n2 5 4\n\n")
    attrs = write(tmp_path, "Tiny_item2attributes.json", '{"4": [1, 2], "5": [3], "6": []}')
    got = read_sequences(path, attrs)
    pd.testing.assert_frame_equal(got.events, events(user=[1, 1, 1, 2, 2], item=[4, 5, 6, 5, 4]))
    assert not got.has_timestamps
    pd.testing.assert_frame_equal(got.items, items([4, 5, 6], categories=[("1", "2"), ("3",), ()]))


def test_sequences_str_ids_and_errors(tmp_path: Path) -> None:
    got = read_sequences(write(tmp_path, "s.txt.gz", "alice a b\nbob c\n"))
    pd.testing.assert_frame_equal(got.events, events(user=["alice", "alice", "bob"], item=["a", "b", "c"]))
    path = write(tmp_path, "s.txt", "1 2 3\n4,5,6\n")
    with pytest.raises(DataFormatError) as exc:
        read_sequences(path)
    assert_bad(exc, path, 2, "4,5,6", "at least one item")
    attrs = write(tmp_path, "a.json", '{"2": [1],\n "3": [2}')
    with pytest.raises(DataFormatError) as jexc:
        read_sequences(write(tmp_path, "ok.txt", "1 2 3\n"), attrs)
    assert jexc.value.line == 2 and "invalid JSON" in str(jexc.value)


# ----------------------------------------------------------------------------------------------------------
# Taobao, skipping bad lines

TAOBAO = "1,10,100,pv,1511544070\n1,11,101,cart,1511544071\n2,10,100,buy,1511544072\n2,12,102,pv,15115"
TAOBAO_CUT = "2,12,102,pv,15115\n3,13,103,pv"  # the last line lacks its timestamp and its newline


def test_taobao_truncated_last_line(tmp_path: Path) -> None:
    path = write(tmp_path, "UserBehavior.csv", TAOBAO + TAOBAO_CUT[17:])
    with pytest.raises(DataFormatError) as exc:
        read_taobao(path)
    assert_bad(exc, path, 5, "3,13,103,pv", "truncated")
    assert "skip_bad_lines=True" in str(exc.value)
    with pytest.warns(
        UserWarning, match=r"UserBehavior.csv: skipped 1 malformed line\(s\): line 5"
    ) as record:
        got = read_taobao(path, behaviors=None, skip_bad_lines=True)
    assert record[0].filename == __file__  # the warning points at the caller
    expected = events(
        user=[1, 1, 2, 2],
        item=[10, 11, 10, 12],
        timestamp=[1511544070, 1511544071, 1511544072, 15115],
        category=[100, 101, 100, 102],
        behavior=["pv", "cart", "buy", "pv"],
    )
    pd.testing.assert_frame_equal(got.events, expected)
    pd.testing.assert_frame_equal(got.items, items([10, 11, 12], categories=[("100",), ("101",), ("102",)]))
    assert got.meta["skipped_lines"] == [5] and got.name == "taobao"


def test_taobao_behaviours(tmp_path: Path) -> None:
    path = write(tmp_path, "ub.csv", TAOBAO + "\n")
    pv = read_taobao(path)
    assert pv.events.columns.tolist() == ["user", "item", "timestamp", "category"]
    assert pv.events["item"].tolist() == [10, 12]
    assert pv.items is not None and pv.items.index.tolist() == [10, 12]
    two = read_taobao(path, behaviors=("pv", "buy"))
    assert two.events["behavior"].tolist() == ["pv", "buy", "pv"]
    with pytest.raises(SinerecError, match="unknown behaviour type"):
        read_taobao(path, behaviors=("click",))
    bad = write(tmp_path, "bad.csv", "1,10,100,pv,1511544070\n1,11,101,click,1511544071\n")
    with pytest.raises(DataFormatError) as exc:
        read_taobao(bad)
    assert_bad(exc, bad, 2, "1,11,101,click,1511544071", "unknown behaviour type 'click'")


def test_skip_bad_lines_several(tmp_path: Path) -> None:
    path = write(tmp_path, "c.txt", "1,2,3\nx\n4,5,6\n4,5,6,7\n7,8,\xff\n9,9,9\n".encode("latin-1"))
    with pytest.warns(UserWarning, match=r"skipped 3 malformed line\(s\): line 2.*line 4.*line 5.*utf-8"):
        got = read_comirec(path, skip_bad_lines=True)
    pd.testing.assert_frame_equal(got.events, events(user=[1, 4, 9], item=[2, 5, 9], timestamp=[3, 6, 9]))
    assert got.meta["skipped_lines"] == [2, 4, 5]


def test_blank_lines_crlf_and_empty_file(tmp_path: Path) -> None:
    got = read_comirec(write(tmp_path, "c.txt", "1,2,3\r\n\r\n4,5,6\r\n"))
    pd.testing.assert_frame_equal(got.events, events(user=[1, 4], item=[2, 5], timestamp=[3, 6]))
    empty = read_comirec(write(tmp_path, "e.txt", ""))
    assert len(empty.events) == 0 and empty.events["user"].dtype == np.int64


# ----------------------------------------------------------------------------------------------------------
# Real files (../shared/data beside the repository)


def shared(name: str) -> Path:
    from conftest import shared_dataset

    return shared_dataset(name)


@pytest.mark.realdata
def test_real_ml1m(capsys: pytest.CaptureFixture[str]) -> None:
    folder = shared("ml-1m")
    start = time.perf_counter()
    got = read_ml1m(folder)
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n[timing] read_ml1m({folder}): {elapsed:.2f} s for {len(got.events):,} ratings")
    assert got.describe() == {"n_users": 6040, "n_items": 3706, "n_interactions": 1000209}
    assert got.events.dtypes.astype(str).tolist() == ["int64", "int64", "int64", "float64"]
    assert got.items is not None
    genres = {g for cats in got.items["categories"] for g in cats}
    assert len(genres) == 18 and "Children's" in genres
    assert len(got.items) == 3883
    assert got.items.loc[73, "title"] == "Misérables, Les (1995)"


@pytest.mark.realdata
def test_real_ml_latest_small() -> None:
    got = read_movielens_csv(shared("ml-latest-small"))
    assert got.describe() == {"n_users": 610, "n_items": 9724, "n_interactions": 100836}
    assert got.items is not None
    # 19 genres + "(no genres listed)" = the 20 labels of PROVENANCE.md
    assert len({g for cats in got.items["categories"] for g in cats}) == 19
    assert got.items.loc[29, "title"] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"


@pytest.mark.realdata
def test_real_amazon_beauty() -> None:
    folder = shared("amazon-beauty")
    got = read_sequences(folder / "Beauty.txt", folder / "Beauty_item2attributes.json")
    assert got.describe() == {"n_users": 22363, "n_items": 12101, "n_interactions": 198502}
    assert got.items is not None
    assert len({a for cats in got.items["categories"] for a in cats}) == 637


@pytest.mark.realdata
def test_real_taobao_sample() -> None:
    path = shared("taobao-sample") / "UserBehavior_head.csv"
    with pytest.raises(DataFormatError) as exc:
        read_taobao(path, behaviors=None)
    assert exc.value.line == 84476 and exc.value.content == "100370,1968385,1875258,pv"
    assert "truncated" in str(exc.value) and "UserBehavior_head.csv" in str(exc.value)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = read_taobao(path, behaviors=None, skip_bad_lines=True)
    assert any("line 84476" in str(w.message) for w in record)
    assert got.describe() == {"n_users": 815, "n_items": 55368, "n_interactions": 84475}
    assert got.events["behavior"].value_counts().to_dict() == {
        "pv": 75872,
        "cart": 4497,
        "fav": 2356,
        "buy": 1750,
    }
    assert got.events["category"].nunique() == 2914
