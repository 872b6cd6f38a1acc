"""The format table: every registered format passes one shared suite, and a new entry is picked up by the
pipeline, configuration validation and the command line.

Each format has a sample writer in ``SAMPLES`` that writes the same small log (``EVENTS``) in that format;
``test_every_format_has_a_sample`` fails when a format is registered without one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sinerec.cli import build_parser
from sinerec.config import DataConfig, load_config
from sinerec.data.formats import FORMATS, FormatSpec, ReadOptions, register_format
from sinerec.data.frame import Interactions
from sinerec.errors import ConfigError, DataFormatError
from sinerec.pipeline import load_interactions

#: (user, item, timestamp) in file order; grouped by user so that one-line-per-user formats keep the order.
EVENTS: list[tuple[int, int, int]] = [(1, 10, 100), (1, 30, 300), (2, 20, 200)]
ITEMS = (10, 20, 30)

#: A record to write, or None: a malformed record of the format at that place.
Record = tuple[int, int, int] | None


@dataclass(frozen=True)
class Sample:
    """How to write ``records`` in one format.

    write: (folder, records) -> (the reader's options, the file holding the records); bad_content: what
    DataFormatError reports as the content of the malformed record; first_line: the file line (Parquet: row)
    of the first record; columns: the columns of ``EVENTS`` the format carries; skips_bad_lines: whether the
    format can skip a malformed record (Parquet has no lines to skip: it always raises).
    """

    write: Callable[[Path, Sequence[Record]], tuple[ReadOptions, Path]]
    bad_content: str
    first_line: int
    columns: tuple[str, ...] = ("user", "item", "timestamp")
    skips_bad_lines: bool = True


def lines_file(path: Path, header: str | None, line: Callable[[tuple[int, int, int]], str], bad: str,
               records: Sequence[Record]) -> Path:
    """Write one line per record (``bad`` for None) after an optional header."""
    body = [bad if r is None else line(r) for r in records]
    path.write_text("".join(f"{x}\n" for x in ([header] if header else []) + body), encoding="utf-8")
    return path


def write_table(folder: Path, records: Sequence[Record]) -> tuple[ReadOptions, Path]:
    path = lines_file(folder / "log.csv", "user_id,item_id,timestamp", lambda r: ",".join(map(str, r)), "1,,150",
                      records)
    return ReadOptions(str(path)), path


def write_parquet(folder: Path, records: Sequence[Record]) -> tuple[ReadOptions, Path]:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [(1, None, 150) if r is None else r for r in records]
    table = pa.table({"user_id": pa.array([r[0] for r in rows], pa.int64()),
                      "item_id": pa.array([r[1] for r in rows], pa.int64()),
                      "timestamp": pa.array([r[2] for r in rows], pa.int64())})
    path = folder / "log.parquet"
    pq.write_table(table, path)
    return ReadOptions(str(path)), path


def write_recbole(folder: Path, records: Sequence[Record]) -> tuple[ReadOptions, Path]:
    path = lines_file(folder / "log.inter", "user_id:token\titem_id:token\ttimestamp:float",
                      lambda r: "\t".join(map(str, r)), "1\t15", records)
    return ReadOptions(str(path)), path


def write_comirec(folder: Path, records: Sequence[Record]) -> tuple[ReadOptions, Path]:
    path = lines_file(folder / "log.txt", None, lambda r: ",".join(map(str, r)), "1,15", records)
    return ReadOptions(str(path)), path


def write_sequences(folder: Path, records: Sequence[Record]) -> tuple[ReadOptions, Path]:
    lines: list[str] = []
    previous: Record = None
    for r in records:
        if r is None:
            lines.append("lonely")
        elif previous is not None and previous[0] == r[0] and lines[-1] != "lonely":
            lines[-1] += f" {r[1]}"
        else:
            lines.append(f"{r[0]} {r[1]}")
        previous = r
    path = folder / "log.txt"
    path.write_text("".join(f"{x}\n" for x in lines))
    return ReadOptions(str(path)), path


def write_taobao(folder: Path, records: Sequence[Record]) -> tuple[ReadOptions, Path]:
    path = lines_file(folder / "UserBehavior.csv", None, lambda r: f"{r[0]},{r[1]},7,pv,{r[2]}",
                      "1,15,7,click,150", records)
    return ReadOptions(str(path)), path


def write_ml1m(folder: Path, records: Sequence[Record]) -> tuple[ReadOptions, Path]:
    (folder / "movies.dat").write_text("".join(f"{i}::Movie {i} (1995)::Drama\n" for i in ITEMS))
    path = lines_file(folder / "ratings.dat", None, lambda r: f"{r[0]}::{r[1]}::4::{r[2]}", "1::15::4",
                      records)
    return ReadOptions(str(folder)), path


def write_movielens(folder: Path, records: Sequence[Record]) -> tuple[ReadOptions, Path]:
    (folder / "movies.csv").write_text("movieId,title,genres\n"
                                       + "".join(f'{i},"Movie {i}, The (1995)",Drama\n' for i in ITEMS))
    path = lines_file(folder / "ratings.csv", "userId,movieId,rating,timestamp",
                      lambda r: f"{r[0]},{r[1]},4.0,{r[2]}", "1,15,4.0,soon", records)
    return ReadOptions(str(folder)), path


SAMPLES: dict[str, Sample] = {
    "table": Sample(write_table, "1,,150", first_line=2),
    "parquet": Sample(write_parquet, "user_id=np.int64(1), item_id=np.float64(nan), timestamp=np.int64(150)",
                      first_line=1, skips_bad_lines=False),
    "recbole": Sample(write_recbole, "1\t15", first_line=2),
    "comirec": Sample(write_comirec, "1,15", first_line=1),
    "sequences": Sample(write_sequences, "lonely", first_line=1, columns=("user", "item")),
    "taobao": Sample(write_taobao, "1,15,7,click,150", first_line=1),
    "ml-1m": Sample(write_ml1m, "1::15::4", first_line=1),
    "movielens": Sample(write_movielens, "1,15,4.0,soon", first_line=2),
}

#: The malformed record goes second, so its line is the sample's first line + 1.
WITH_BAD: list[Record] = [EVENTS[0], None, *EVENTS[1:]]


def expected_events(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({c: np.array([e[("user", "item", "timestamp").index(c)] for e in EVENTS], np.int64)
                         for c in columns})


def assert_reads_events(got: Interactions, sample: Sample) -> None:
    pd.testing.assert_frame_equal(got.events[list(sample.columns)], expected_events(sample.columns))


def test_every_format_has_a_sample() -> None:
    assert sorted(SAMPLES) == sorted(FORMATS)


def test_every_format_has_a_one_line_description() -> None:
    for name, spec in FORMATS.items():
        assert spec.name == name and spec.description and "\n" not in spec.description


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_reads_the_sample(tmp_path: Path, name: str) -> None:
    sample = SAMPLES[name]
    options, _ = sample.write(tmp_path, EVENTS)
    got = FORMATS[name].read(options)
    assert_reads_events(got, sample)
    assert got.meta == {}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_load_interactions_reads_through_the_table(tmp_path: Path, name: str) -> None:
    sample = SAMPLES[name]
    options, _ = sample.write(tmp_path, EVENTS)
    got = load_interactions(DataConfig(dataset="mine", path=options.path, item_path=options.item_path,
                                       format=name))
    assert_reads_events(got, sample)
    assert got.name == "mine"


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_malformed_record_names_file_line_and_content(tmp_path: Path, name: str) -> None:
    sample = SAMPLES[name]
    options, path = sample.write(tmp_path, WITH_BAD)
    with pytest.raises(DataFormatError) as exc:
        FORMATS[name].read(options)
    assert (exc.value.path, exc.value.line, exc.value.content) == (str(path), sample.first_line + 1,
                                                                  sample.bad_content)
    assert f"{path}, line {sample.first_line + 1}: " in str(exc.value)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_skip_bad_lines_skips_the_record_with_a_warning(tmp_path: Path, name: str) -> None:
    sample = SAMPLES[name]
    options, path = sample.write(tmp_path, WITH_BAD)
    skipping = ReadOptions(options.path, options.item_path, skip_bad_lines=True)
    if not sample.skips_bad_lines:
        with pytest.raises(DataFormatError):
            FORMATS[name].read(skipping)
        return
    with pytest.warns(UserWarning) as caught:
        got = FORMATS[name].read(skipping)
    assert len(caught) == 1
    assert str(caught[0].message).startswith(
        f"{path}: skipped 1 malformed line(s): line {sample.first_line + 1}: ")
    assert caught[0].filename == __file__  # the warning points at the caller, not at sinerec.data
    assert_reads_events(got, sample)
    assert got.meta["skipped_lines"] == [sample.first_line + 1]


# ----------------------------------------------------------------------------------------------------------
# The extension point: one new entry and every consumer knows the format


def read_toy(options: ReadOptions) -> Interactions:
    """A toy format: ``user>item`` lines."""
    pairs = [line.split(">") for line in Path(options.path).read_text().split()]
    events = pd.DataFrame({"user": [int(u) for u, _ in pairs], "item": [int(i) for _, i in pairs]})
    return Interactions(events, name=options.name or "toy", source=options.path)


TOY = FormatSpec("toy", "user>item lines, a format the tests register", read_toy)


def test_unknown_format_is_a_config_error_listing_the_formats() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=['data.format="toy"'])
    assert str(exc.value) == f"data.format: unknown format 'toy'; choose from {', '.join(FORMATS)}"


def test_a_registered_format_is_read_validated_and_offered_by_the_cli(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FORMATS, "toy", TOY)
    path = tmp_path / "log.toy"
    path.write_text("1>10\n2>20\n1>30\n")
    config = load_config(overrides=[f"data.path={path}", 'data.format="toy"', 'data.dataset="mine"'])
    got = load_interactions(config.data)
    pd.testing.assert_frame_equal(got.events, pd.DataFrame({"user": [1, 2, 1], "item": [10, 20, 30]}))
    assert got.name == "mine"
    parser = build_parser()
    assert parser.parse_args(["train", "--path", str(path), "--format", "toy"]).format == "toy"
    train = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    help_text = " ".join(train.format_help().split())
    assert "toy: user>item lines, a format the tests register" in help_text


def test_the_cli_refuses_an_unregistered_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--path", "x", "--format", "toy"])
    assert "invalid choice: 'toy'" in capsys.readouterr().err


def test_register_format_adds_once() -> None:
    register_format(TOY)
    try:
        assert FORMATS["toy"] is TOY
        with pytest.raises(ValueError, match="'toy' is already registered"):
            register_format(TOY)
    finally:
        del FORMATS["toy"]


@pytest.mark.slow
def test_the_table_is_read_without_importing_readers() -> None:
    # the CLI builds its parser from the table: listing formats must not load pandas or a reader
    import subprocess
    import sys

    code = ("import sys; from sinerec.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m == 'pandas' or m.startswith('sinerec.data.formats.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

