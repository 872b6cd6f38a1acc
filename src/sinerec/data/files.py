"""File access shared by the readers: whole-file bytes or a stream of blocks of whole lines (gzip and a UTF-8
BOM handled), finding a dataset's file in a folder, and a file name's dataset stem.

Every function raises :class:`~sinerec.errors.SinerecError` naming the path for a missing or unreadable file.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Generator, Iterator
from contextlib import closing
from pathlib import Path
from typing import BinaryIO

from sinerec.errors import SinerecError

__all__ = ["PathLike", "dataset_stem", "find_file", "head_block", "iter_line_blocks", "load_bytes", "open_data"]

PathLike = str | Path

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
#: Suffixes a data file's name sheds to become a dataset name (``ratings.csv.gz`` -> ``ratings``).
_DATA_SUFFIXES = (".gz", ".parquet", ".pq", ".csv", ".tsv", ".tab", ".txt", ".inter")


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn the OSError of opening or reading ``path`` into one SinerecError naming the file and the reason."""
    try:
        yield
    except FileNotFoundError:
        raise SinerecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SinerecError(f"{path}: is a folder, expected a file") from None
    except OSError as exc:
        raise SinerecError(f"{path}: cannot read: {exc}") from exc


def load_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip data, without a UTF-8 byte order mark.

    gzip is detected from the magic bytes, so the suffix does not matter.
    """
    with _readable(path):
        raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise SinerecError(f"{path}: corrupt or truncated gzip data: {exc}") from exc
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
    return raw


def open_data(path: Path) -> BinaryIO:
    """The file opened for reading, through a gunzipping stream when it holds gzip data (magic bytes)."""
    with _readable(path):
        raw: BinaryIO = open(path, "rb")  # noqa: SIM115 (returned to the caller, who closes it)
    if raw.read(2) == _GZIP_MAGIC:
        raw.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    raw.seek(0)
    return raw


def head_block(path: Path, size: int, quoting: bool = False) -> bytes:
    """The first block of whole lines of about ``size`` bytes (see :func:`iter_line_blocks`); b"" when empty."""
    with closing(iter_line_blocks(path, size, quoting=quoting)) as blocks:
        return next(blocks, b"")


def iter_line_blocks(
    path: Path, block_size: int, skip_lines: int = 0, quoting: bool = False, data: bytes | None = None
) -> Generator[bytes, None, None]:
    """The file's content (or ``data``'s), UTF-8 BOM removed, as blocks of about ``block_size`` bytes that
    end at a line end (the last one may not), after the first ``skip_lines`` lines.

    With ``quoting``, a block never ends inside a double-quoted field (the count of ``"`` before the cut is
    even), so a quoted field holding a line break stays whole. Only one block and the unfinished line after
    it are held at a time. Raises SinerecError naming the path for an unreadable file or corrupt gzip data.
    """
    stream: BinaryIO
    if data is not None:
        import io

        stream = io.BytesIO(data)
    else:
        stream = open_data(path)
    with stream:
        rest, first = b"", True
        while True:
            try:
                chunk = stream.read(block_size)
            except (OSError, EOFError, zlib.error) as exc:
                raise SinerecError(f"{path}: corrupt or truncated gzip data: {exc}") from exc
            if first:
                first, chunk = False, chunk[len(_UTF8_BOM) :] if chunk.startswith(_UTF8_BOM) else chunk
            buf = rest + chunk
            while skip_lines and buf:
                end = buf.find(b"\n")
                if end < 0:
                    break
                buf, skip_lines = buf[end + 1 :], skip_lines - 1
            if not chunk:
                if buf and not skip_lines:
                    yield buf
                return
            cut = _block_end(buf, quoting) if not skip_lines else 0
            if cut:
                yield buf[:cut]
            rest = buf[cut:]


def _block_end(buf: bytes, quoting: bool) -> int:
    """Where a block of whole lines of ``buf`` ends (0: not one whole line yet)."""
    cut = buf.rfind(b"\n") + 1
    if quoting and b'"' in buf:
        while cut and buf.count(b'"', 0, cut) % 2:
            cut = buf.rfind(b"\n", 0, cut - 1) + 1
    return cut


def find_file(folder: Path, name: str) -> Path:
    """``folder/name``, else ``folder/name.gz``; a SinerecError naming both when neither exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    if not folder.is_dir():
        raise SinerecError(f"{folder}: no such folder")
    raise SinerecError(f"{folder}: missing file {name!r} (or {name + '.gz'!r})")


def dataset_stem(path: Path) -> str:
    """The file's name without its data suffixes (``.gz``, ``.csv``, ``.inter``...): a dataset's default name."""
    name = path.name
    for suffix in _DATA_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or path.name
