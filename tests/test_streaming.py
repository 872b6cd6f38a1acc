"""The streamed delimited parser: block boundaries (tiny blocks), the error contract across blocks, gzip, the
``::`` separator, quoted fields spanning blocks, types learnt block by block; and ``sinerec data synth``."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest

from sinerec.cli import main
from sinerec.data import synthfile
from sinerec.data.delimited import DelimitedFile, Field, parse_delimited
from sinerec.data.files import iter_line_blocks
from sinerec.data.formats.taobao import TAOBAO_BEHAVIORS, read_taobao
from sinerec.data.synthfile import SynthSpec, items_path, write_taobao_csv
from sinerec.errors import DataFormatError, SinerecError

TAOBAO_FIELDS = (
    Field(0, "id", "user id"),
    Field(1, "id", "item id"),
    Field(2, "id", "category id"),
    Field(3, "choice", "behaviour type", choices=frozenset(TAOBAO_BEHAVIORS)),
    Field(4, "time", "timestamp"),
)


def taobao_lines(n: int) -> list[str]:
    """``n`` well-formed lines."""
    return [f"{u % 10},{100 + u % 7},{u % 3},{'pv' if u % 2 else 'buy'},{u % 10}" for u in range(n)]


def spec(path: Path, block_size: int, **kw: object) -> DelimitedFile:
    return DelimitedFile(path, sep=",", n_fields=5, fields=TAOBAO_FIELDS, block_size=block_size, **kw)  # type: ignore[arg-type]


def test_blocks_end_at_line_ends_and_keep_quoted_fields_whole(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(b'a,"x\ny",1\nb,2,3\nc,"p\nq\nr",4\n')
    blocks = list(iter_line_blocks(path, 3, quoting=True))
    assert b"".join(blocks) == path.read_bytes()
    assert all(b.endswith(b"\n") and b.count(b'"') % 2 == 0 for b in blocks)
    assert blocks[0] == b'a,"x\ny",1\n'
    plain = list(iter_line_blocks(path, 4, skip_lines=1))  # without quoting, a line break is a line end
    assert b"".join(plain) == b'y",1\nb,2,3\nc,"p\nq\nr",4\n' and all(b.endswith(b"\n") for b in plain)
    assert len(plain) > 2


@pytest.mark.parametrize("block_size", [1, 13, 26, 40, 1 << 20])
def test_tiny_blocks_give_the_same_columns(tmp_path: Path, block_size: int) -> None:
    lines = taobao_lines(50)
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    cols, skipped = parse_delimited(spec(path, block_size), skip_bad_lines=False)
    assert skipped == []
    assert cols[0].dtype == np.int64 and cols[4].dtype == np.int64 and cols[3].dtype == object
    assert cols[0].tolist() == [u % 10 for u in range(50)]
    assert cols[1].tolist() == [100 + u % 7 for u in range(50)]
    assert cols[3].tolist() == ["pv" if u % 2 else "buy" for u in range(50)]


@pytest.mark.parametrize("bad_at", [1, 5, 6, 10])
def test_bad_line_at_a_block_boundary(tmp_path: Path, bad_at: int) -> None:
    """Blocks of exactly 5 lines: the bad line is the first or last of a block, or the file's first."""
    lines = [f"{u},{u + 1},{u % 3},pv,{u}" for u in range(10, 20)]  # 14 bytes each with the newline
    lines[bad_at - 1] = "77,88,x,bad,9"
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    assert [b.count(b"\n") for b in iter_line_blocks(path, 5 * 14)] == [5, 5]
    with pytest.raises(DataFormatError) as exc:
        parse_delimited(spec(path, 5 * 14), skip_bad_lines=False)
    message = str(exc.value)
    assert f"line {bad_at}" in message and lines[bad_at - 1] in message and "behaviour type" in message
    with pytest.warns(UserWarning, match=rf"skipped 1 malformed line\(s\): line {bad_at}:"):
        cols, skipped = parse_delimited(spec(path, 5 * 14), skip_bad_lines=True)
    assert skipped == [bad_at]
    expected = [u for k, u in enumerate(range(10, 20)) if k != bad_at - 1]
    assert cols[0].tolist() == expected and cols[4].tolist() == expected


def test_choice_values_and_bad_lines_in_several_blocks(tmp_path: Path) -> None:
    lines = [f"{u},{u},1,{TAOBAO_BEHAVIORS[u % 4]},{u}" for u in range(30)]
    lines[3], lines[17], lines[29] = "3,3,1,pv", "17,,1,pv,17", "29,29,1,pv,2x"
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines))  # no final newline: the last (bad) line looks truncated
    with pytest.warns(UserWarning) as record:
        cols, skipped = parse_delimited(spec(path, 20), skip_bad_lines=True)
    assert skipped == [4, 18, 30]
    message = str(record[0].message)
    assert "line 4: expected 5 fields, found 4" in message and "line 18: missing item id" in message
    assert "line 30: unparseable timestamp '2x'" in message and "truncated" in message
    keep = [u for u in range(30) if u not in (3, 17, 29)]
    assert cols[3].tolist() == [TAOBAO_BEHAVIORS[u % 4] for u in keep]
    assert cols[4].tolist() == keep


def test_last_line_without_newline_is_read(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("1,2,3,pv,4\n5,6,7,buy,8")
    cols, _ = parse_delimited(spec(path, 11), skip_bad_lines=False)
    assert cols[0].tolist() == [1, 5] and cols[4].tolist() == [4, 8]
    path.write_text("1,2,3,pv,4\n5,6,7,bu")
    with pytest.raises(DataFormatError, match="line 2.*looks truncated"):
        parse_delimited(spec(path, 11), skip_bad_lines=False)


def test_gzip_streamed_in_blocks(tmp_path: Path) -> None:
    lines = taobao_lines(40)
    lines[25] = "1,2,3,pv"
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(DataFormatError, match="line 26.*expected 5 fields, found 4"):
        parse_delimited(spec(path, 30), skip_bad_lines=False)
    path.write_bytes(gzip.compress(b"1,2,3,pv,4\n")[:-6])
    with pytest.raises(SinerecError, match="corrupt or truncated gzip data"):
        parse_delimited(spec(path, 30), skip_bad_lines=False)


def test_double_colon_separator_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    rows = [f"{u}::{u * 2}::{u % 5 + 0.5}::{1000 + u}" for u in range(20)]
    rows[12] = "12::24::x::1012"
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    fields = (Field(0, "id", "user id"), Field(1, "id", "movie id"), Field(2, "num", "rating"),
              Field(3, "time", "timestamp"))
    dat = DelimitedFile(path, sep="::", n_fields=4, fields=fields, encoding="latin-1", block_size=40)
    with pytest.raises(DataFormatError, match="line 13.*unparseable rating 'x'"):
        parse_delimited(dat, skip_bad_lines=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols, skipped = parse_delimited(dat, skip_bad_lines=True)
    assert skipped == [13] and cols[1].tolist() == [u * 2 for u in range(20) if u != 12]
    assert cols[2].dtype == np.float64 and cols[3].dtype == np.int64


def test_quoted_field_with_a_line_break_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('u,i,t,x\n1,2,3,"a\nb, c"\n4,5,6,d\n7,8,9,"e"\n')
    fields = (Field(0, "id", "user id"), Field(3, "text", "x"), Field(2, "time", "timestamp"))
    table = DelimitedFile(path, sep=",", n_fields=4, fields=fields, first_line=2, quoting=True, block_size=4)
    cols, _ = parse_delimited(table, skip_bad_lines=False)
    assert cols[0].tolist() == [1, 4, 7] and cols[3].tolist() == ["a\nb, c", "d", "e"]
    path.write_text('u,i,t,x\n1,2,3,"a\n4,5,6,d\n')
    with pytest.raises(DataFormatError, match="line 2.*quoted field is never closed"):
        parse_delimited(table, skip_bad_lines=False)


def test_types_learnt_in_a_later_block(tmp_path: Path) -> None:
    """Integer ids in the first blocks, text later: the whole column is text as written ("007" stays);
    integral times first, fractional later: float64."""
    path = tmp_path / "log.csv"
    path.write_text("007,1,1,pv,10\n8,2,1,pv,20\n9,3,1,pv,30\nu9,4,1,pv,40.5\n")
    cols, _ = parse_delimited(spec(path, 15), skip_bad_lines=False)
    assert cols[0].dtype == object and cols[0].tolist() == ["007", "8", "9", "u9"]
    assert cols[1].dtype == np.int64 and cols[4].dtype == np.float64 and cols[4].tolist() == [10, 20, 30, 40.5]


def test_synth_parses_back_with_the_taobao_reader(tmp_path: Path) -> None:
    out = tmp_path / "log.csv.gz"
    summary = write_taobao_csv(SynthSpec(rows=5000, items=300, users=40, concepts=7, seed=3), out, batch_rows=700)
    assert summary["rows"] == 5000 and items_path(out) == tmp_path / "log.items.csv"
    log = read_taobao(out, behaviors=None)
    ev = log.events
    assert len(ev) == 5000 and set(ev["behavior"]) <= set(TAOBAO_BEHAVIORS) and (ev["behavior"] == "pv").mean() > 0.8
    assert ev["user"].between(0, 39).all() and ev["item"].between(1, 300).all()
    assert (ev["category"] == (ev["item"] - 1) % 7).all()
    side = np.loadtxt(items_path(out), delimiter=",", skiprows=1, dtype=np.int64)
    assert side.shape == (300, 3)
    assert (side[:, 0] == np.arange(1, 301)).all() and (side[:, 1] == (side[:, 0] - 1) % 7).all()
    again = tmp_path / "again.csv"
    write_taobao_csv(SynthSpec(rows=5000, items=300, users=40, concepts=7, seed=3), again, batch_rows=700)
    assert gzip.decompress(out.read_bytes()) == again.read_bytes()  # same seed, same file


def test_synth_failure_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(table: object, sink: object, options: object = None) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        real(table, sink, options)

    real = synthfile.pacsv.write_csv
    monkeypatch.setattr(synthfile.pacsv, "write_csv", failing)
    with pytest.raises(OSError, match="disk full"):
        write_taobao_csv(SynthSpec(rows=3000, items=100, users=30, concepts=5), tmp_path / "x.csv", batch_rows=500)
    assert list(tmp_path.iterdir()) == []


def test_synth_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.csv"
    assert main(["data", "synth", "--rows", "800", "--items", "60", "--users", "10", "--concepts", "4",
                 "--out", str(out), "--quiet"]) == 0
    assert out.read_text().count("\n") == 800 and items_path(out).read_text().count("\n") == 61
    assert main(["data", "synth", "--rows", "8", "--items", "3", "--users", "1", "--concepts", "4",
                 "--out", str(tmp_path / "bad.csv")]) == 2
    assert "--concepts (4) must be <= --items (3)" in capsys.readouterr().err


def test_a_suspicious_block_is_checked_in_small_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The line-by-line check runs on the failing piece only, and still names the file's line."""
    from sinerec.data import blockparse, linescan

    monkeypatch.setattr(blockparse, "_SCAN_SIZE", 40)
    scanned: list[int] = []
    real_scan = linescan.scan

    def counting_scan(block: linescan.Block, *args: object, **kw: object) -> list[linescan.BadLine]:
        scanned.append(len(block.data))
        return real_scan(block, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(blockparse, "scan", counting_scan)
    lines = [f"{u},{u},1,pv,{u}" for u in range(100)]
    lines[61] = "61,61,1,pv,soon"
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="line 62: unparseable timestamp 'soon'"):
        cols, skipped = parse_delimited(spec(path, 1 << 20), skip_bad_lines=True)
    assert skipped == [62] and cols[0].tolist() == [u for u in range(100) if u != 61]
    assert scanned and max(scanned) <= 60
