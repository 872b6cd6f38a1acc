"""``sinerec data prepare --engine spark``: Spark in local mode gives the single-machine artifact, array for
array and fingerprint for fingerprint; its errors are the single-machine ones; a failure leaves no artifact.

Skipped without pyspark (or Java) on a developer's machine; under CI (``CI`` set) they FAIL instead, since the
dev extra installs pyspark and CI is meant to run them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sinerec.cli import main
from sinerec.config import load_config
from sinerec.data.prepared import read_summary, write_prepared
from sinerec.data.synthfile import SynthSpec, write_taobao_csv
from sinerec.errors import ConfigError, DataFormatError, SinerecError
from sinerec.pipeline import data_settings, preprocess_source

# Small split size: the test files are read in several partitions, so file order crosses partitions.
# Adaptive execution off: a job per query instead of one per shuffle, which halves the time on tiny data (the CLI
# test turns it on, as it is by default).
CONF = {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2", "spark.ui.enabled": "false",
        "spark.sql.files.maxPartitionBytes": "16384", "spark.sql.adaptive.enabled": "false"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI is set and {reason} (the dev extra installs pyspark; .ci/run installs Java)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def spark():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        _unavailable("pyspark is not installed (pip install 'sinerec[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _unavailable("no Java runtime for pyspark")
    from sinerec.data.engine_spark import spark_session

    with spark_session("local[2]", CONF) as session:
        session.sparkContext.setLogLevel("ERROR")
        yield session


def _config(path: Path, fmt: str, *more: str):
    return load_config(overrides=[f"data.path={json.dumps(str(path))}", f"data.format={json.dumps(fmt)}", *more])


def same_artifact(spark, folder: Path, path: Path, fmt: str, *more: str) -> dict:
    """Prepare ``path`` on one machine and with Spark; assert the two artifacts are identical; the summary."""
    from sinerec.data.engine_spark import prepare_with_spark

    config = _config(path, fmt, *more)
    settings = data_settings(config.data)
    local = write_prepared(folder / "local", preprocess_source(config.data), settings)
    engine = write_prepared(folder / "spark", prepare_with_spark(config.data, spark), settings)
    assert engine == local  # fingerprint, counts, steps
    for name in ("items.npy", "offsets.npy", "timestamps.npy"):
        assert (folder / "local" / name).exists() == (folder / "spark" / name).exists()
        if (folder / "local" / name).exists():
            a, b = np.load(folder / "local" / name), np.load(folder / "spark" / name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
    for name in ("users.parquet", "items.parquet"):
        assert pq.read_table(folder / "spark" / name).equals(pq.read_table(folder / "local" / name)), name
    return local


@pytest.fixture(scope="module")
def taobao_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("taobao") / "log.csv"
    write_taobao_csv(SynthSpec(rows=4000, items=300, users=120, concepts=8, seed=5), path)
    return path


def test_taobao_synth_file_gives_the_single_machine_artifact(spark, taobao_file, tmp_path):
    summary = same_artifact(spark, tmp_path, taobao_file, "taobao", 'data.behaviors=["pv"]',
                            "data.min_user_count=5", "data.min_item_count=5")
    assert set(summary["steps"]) == {"raw", "behaviors", "kcore"}
    assert 0 < summary["n_interactions"] < summary["steps"]["raw"]["n_interactions"] == 4000


# Ties in time (user 7 at t=100 three times, in file order 30, 10, 20), duplicate rows, ids written " 7" and
# "007" (one id), a fractional timestamp written 5.0, item 10 first in category c1 and last in c8, CRLF line
# ends, a blank line and a BOM.
TIES = ("\ufeffuser_id,item_id,timestamp,category\r\n"
        "7,30,100,c3\r\n 7,10,100,c1\r\n2,10,50,c9\r\n007,20,100,c2\r\n\r\n2,10,50,c1\r\n2,30,40,c3\r\n"
        "7,10,100,c1\r\n9,20,5.0,c2\r\n9,30,6,c3\r\n2,20,50,c2\r\n9,10,5,c8\r\n7,30,90,c3\r\n")


@pytest.mark.parametrize("duplicates", ["keep", "first", "last"])
def test_table_with_ties_and_duplicate_rows(spark, tmp_path, duplicates):
    path = tmp_path / "ties.csv"
    path.write_bytes(TIES.encode())
    spark.conf.set("spark.sql.files.maxPartitionBytes", "40")  # two or three lines a partition
    try:
        summary = same_artifact(spark, tmp_path, path, "table", "data.category_col=category",
                                f"data.duplicates={duplicates}")
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", CONF["spark.sql.files.maxPartitionBytes"])
    assert summary["n_interactions"] == (12 if duplicates == "keep" else 9)


def test_text_ids_fractional_times_and_no_timestamps(spark, tmp_path):
    rows = [f"u{u % 13},i{(u * 7 + k) % 17},{1000 + k * 0.5 + u % 3},{'pv' if k % 4 else 'buy'}"
            for u in range(60) for k in range(6)]
    path = tmp_path / "text.csv"
    path.write_text("user_id,item_id,timestamp,behavior\n" + "\n".join(rows) + "\n")
    fractional = same_artifact(spark, tmp_path / "a", path, "table", "data.behavior_col=behavior",
                               'data.behaviors=["pv"]', "data.min_item_count=3")
    assert np.load(tmp_path / "a" / "spark" / "timestamps.npy").dtype == np.float64
    untimed = same_artifact(spark, tmp_path / "b", path, "table", "data.timestamp_col=null")
    assert untimed["has_timestamps"] is False and fractional["steps"]["behaviors"] == ["pv"]


def test_kcore_that_needs_several_rounds(spark, tmp_path):
    # a chain user0:(1,2) user1:(2,3) ... falls apart one link per round; users 100-102 on items 50, 51 stay
    rows = [(u, i) for u in range(6) for i in (u + 1, u + 2)] + [(u, i) for u in (100, 101, 102) for i in (50, 51)]
    path = tmp_path / "chain.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{n}\n" for n, (u, i) in enumerate(rows)))
    core = same_artifact(spark, tmp_path / "iterative", path, "table", "data.min_user_count=2",
                         "data.min_item_count=2")
    once = same_artifact(spark, tmp_path / "once", path, "table", "data.min_user_count=2", "data.min_item_count=2",
                         "data.kcore_iterative=false")
    assert (core["n_users"], core["n_interactions"]) == (3, 6)
    assert once["n_users"] == 7  # one round keeps the chain's middle: the iteration mattered


def test_comirec_gzip_with_text_ids(spark, tmp_path):
    import gzip

    # "+5" is not an integer to the single-machine reader (pyarrow's rule): the item ids stay text
    lines = [f"{u},{'+' if (u + k) % 5 == 0 else ''}{(u * 3 + k) % 11},{100 + k}" for u in range(30) for k in range(5)]
    path = tmp_path / "book_train.txt.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    # the item file: item 3 twice (the first line wins), "+5" apart from 5, items 9 and 10 without a line
    side = tmp_path / "book_item_cate.txt"
    side.write_text("0,c0\n1,c1\n2,c2\n3,c3\n3,c33\n4,c4\n5,c5\n+5,cplus\n6,c6\n7,c7\n8,c8\n")
    summary = same_artifact(spark, tmp_path, path, "comirec", f"data.item_path={json.dumps(str(side))}")
    assert summary["name"] == "book_train" and summary["n_interactions"] == 150
    items = pq.read_table(tmp_path / "spark" / "items.parquet").to_pydict()
    categories = dict(zip(items["item_id"], items["categories"], strict=True))
    assert categories["+5"] == ["cplus"] and categories["3"] == ["c3"] and categories["10"] == []


def test_movielens_folder_with_titles_and_genres(spark, tmp_path):
    folder = tmp_path / "ml-tiny"
    folder.mkdir()
    ratings = [f"{u},{(u * 5 + k) % 9 + 1},{1 + k % 5}.0,{900 + k // 2}" for u in range(1, 25) for k in range(6)]
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "\n".join(ratings) + "\n")
    (folder / "movies.csv").write_text('movieId,title,genres\n1,"Heat, Part 1 (1995)",Action|Crime\n'
                                       "2,Up (2009),(no genres listed)\n3,Alien (1979),Horror|Sci-Fi\n"
                                       "4,Her (2013),Drama\n5,Fargo (1996),Crime\n20,Unrated (2000),Drama\n")
    summary = same_artifact(spark, tmp_path, folder, "movielens", "data.min_user_count=6")
    items = pq.read_table(tmp_path / "spark" / "items.parquet").to_pydict()
    assert summary["name"] == "ml-tiny" and items["title"][0] == "Heat, Part 1 (1995)"
    assert items["categories"][:2] == [["Action", "Crime"], []] and items["title"][-1] == ""


def test_ml1m_folder_and_a_non_ascii_latin1_log_is_refused(spark, tmp_path):
    from sinerec.data.engine_spark import prepare_with_spark

    folder = tmp_path / "ml"
    folder.mkdir()
    ratings = [f"{u}::{(u * 2 + k) % 7 + 1}::{1 + k % 5}::{978300000 + k % 3}" for u in range(1, 20) for k in range(5)]
    (folder / "ratings.dat").write_text("\n".join(ratings) + "\n")
    (folder / "movies.dat").write_bytes("1::Am\u00e9lie (2001)::Comedy|Romance\n2::Heat (1995)::Action\n"
                                        "7::Up (2009)::Animation\n".encode("latin-1"))
    summary = same_artifact(spark, tmp_path, folder, "ml-1m")
    items = pq.read_table(tmp_path / "spark" / "items.parquet").to_pydict()
    assert summary["name"] == "ml-1m" and items["title"][0] == "Am\u00e9lie (2001)"
    (folder / "ratings.dat").write_bytes(b"1::2::3::4\n\xe9::2::3::4\n")
    with pytest.raises(ConfigError, match="non-ASCII"):
        prepare_with_spark(_config(folder, "ml-1m").data, spark)


def _bad_taobao(taobao_file: Path, folder: Path, bad: dict[int, bytes], newline: bool = True) -> Path:
    lines = taobao_file.read_bytes().splitlines()
    for number, line in bad.items():
        lines[number - 1] = line
    path = folder / "bad.csv"
    path.write_bytes(b"\n".join(lines) + (b"\n" if newline else b""))
    return path


def test_a_malformed_line_is_the_single_machine_error(spark, taobao_file, tmp_path):
    from sinerec.data.engine_spark import prepare_with_spark

    for bad, newline in (({3100: b"1,2,3,click,5"}, True), ({4000: b"1,2,3,pv"}, False)):
        path = _bad_taobao(taobao_file, tmp_path, bad, newline)
        config = _config(path, "taobao")
        with pytest.raises(DataFormatError) as local:
            preprocess_source(config.data)
        with pytest.raises(DataFormatError) as engine:
            prepare_with_spark(config.data, spark)
        assert str(engine.value) == str(local.value) and engine.value.line == next(iter(bad))
    assert "truncated" in str(engine.value)


def test_skip_bad_lines_skips_the_same_lines_with_the_same_warning(spark, taobao_file, tmp_path):
    bad = {5: b"1,2,3,pv", 900: b"1,,3,pv,5", 1800: b"1,2,3,pv,1e400", 2500: b"1,2\x00,3,pv,5",
           3000: b"1,2,3,pv,\xff\xfe", 3333: b"1,2,3,click,5", 3999: b"a,b,c,pv,x"}
    path = _bad_taobao(taobao_file, tmp_path, bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        same_artifact(spark, tmp_path, path, "taobao", "data.skip_bad_lines=true")
    local, engine = [str(w.message) for w in caught if "malformed" in str(w.message)]
    assert engine == local
    assert "skipped 7 malformed line(s)" in local and "line 5: expected 5 fields, found 4" in local
    assert "line 3000: not valid utf-8" in local and local.endswith("; and 2 more")


def test_what_the_engine_does_not_reproduce_is_refused(spark, tmp_path):
    from sinerec.data.engine_spark import prepare_with_spark

    quoted = tmp_path / "quoted.csv"
    quoted.write_text('user_id,item_id,timestamp\n1,"a,b",5\n')
    iso = tmp_path / "iso.csv"
    iso.write_text("user_id,item_id,timestamp\n1,2,2024-01-02T03:04:05\n")
    for path, fmt, message in ((quoted, "table", "double quote"), (iso, "table", "ISO 8601"),
                               (iso, "recbole", "--engine spark reads taobao")):
        with pytest.raises(ConfigError, match=message):
            prepare_with_spark(_config(path, fmt).data, spark)
    with pytest.raises(SinerecError, match="no column 'user'"):
        prepare_with_spark(_config(iso, "table", "data.user_col=user").data, spark)


def test_cli_engine_spark_prints_the_local_fingerprint(spark, taobao_file, tmp_path, capsys):
    flags = ["data", "prepare", "--path", str(taobao_file), "--format", "taobao", "--protocol", "loo"]
    assert main([*flags, "--out", str(tmp_path / "local")]) == 0
    local = json.loads(capsys.readouterr().out)
    try:
        assert main([*flags, "--engine", "spark", "--spark-conf", "spark.sql.adaptive.enabled=true",
                     "--out", str(tmp_path / "spark")]) == 0
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", "false")
    engine = json.loads(capsys.readouterr().out)
    assert engine == {**local, "out": str(tmp_path / "spark")}


def test_a_failing_engine_or_write_leaves_no_partial_artifact(spark, taobao_file, tmp_path, capsys):
    from sinerec.data.engine_spark import prepare_with_spark

    out = tmp_path / "prep"
    assert main(["data", "prepare", "--path", str(taobao_file), "--format", "taobao", "--out", str(out)]) == 0
    before = read_summary(out)
    capsys.readouterr()
    path = _bad_taobao(taobao_file, tmp_path, {3500: b"1,2,3,pv,later"})
    assert main(["data", "prepare", "--path", str(path), "--format", "taobao", "--engine", "spark",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 3500: unparseable timestamp 'later'" in err
    assert read_summary(out) == before
    config = _config(taobao_file, "taobao")
    data = prepare_with_spark(config.data, spark)

    def hook(name: str) -> None:
        if name == "items.parquet":
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_prepared(tmp_path / "fresh", data, data_settings(config.data), hook=hook)
    with pytest.raises(OSError, match="disk full"):
        write_prepared(out, data, data_settings(config.data), hook=hook)
    assert not (tmp_path / "fresh").exists() and read_summary(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "prep"]  # no temporary folder left


def test_without_pyspark_engine_spark_exits_2_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    path = tmp_path / "log.csv"
    path.write_text("1,2,3,pv,5\n")
    assert main(["data", "prepare", "--path", str(path), "--format", "taobao", "--engine", "spark",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'sinerec[spark]'" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main(["data", "prepare", "--path", str(path), "--engine", "bogus", "--out", str(tmp_path / "o")])
    assert main(["data", "prepare", "--path", str(path), "--spark-master", "local[2]", "--out",
                 str(tmp_path / "o")]) == 2
    assert "--spark-master needs --engine spark" in capsys.readouterr().err
