"""File access shared by the readers: whole-file bytes (gzip and a UTF-8 BOM handled), finding a dataset's
file in a folder, and a file name's dataset stem.

Every function raises :class:`~sinerec.errors.SinerecError` naming the path for a missing or unreadable file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from sinerec.errors import SinerecError

__all__ = ["PathLike", "dataset_stem", "find_file", "load_bytes"]

PathLike = str | Path

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
#: Suffixes a data file's name sheds to become a dataset name (``ratings.csv.gz`` -> ``ratings``).
_DATA_SUFFIXES = (".gz", ".parquet", ".pq", ".csv", ".tsv", ".tab", ".txt", ".inter")


def load_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip data, without a UTF-8 byte order mark.

    gzip is detected from the magic bytes, so the suffix does not matter.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SinerecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SinerecError(f"{path}: is a folder, expected a file") from None
    except OSError as exc:
        raise SinerecError(f"{path}: cannot read: {exc}") from exc
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise SinerecError(f"{path}: corrupt or truncated gzip data: {exc}") from exc
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
    return raw


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
