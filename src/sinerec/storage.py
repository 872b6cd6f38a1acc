"""Atomic storage: every file and folder sinerec writes goes through here.

A reader (another process, a resumed run, a serving worker) sees the old content or the new one, never a
partial file: content is written to a temporary name in the same folder, flushed to disk, then renamed over
the target (``os.replace`` is atomic within one file system). Temporary names start with ``.`` and end in
``.tmp`` (:data:`TEMPORARY_GLOB`) so that an interrupted write is recognisable and never mistaken for the
real file; :func:`remove_temporaries` clears those a killed process left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

__all__ = ["atomic_write_bytes", "atomic_write_stream", "atomic_write_text", "write_json", "save_torch", "load_torch",
           "atomic_write_dir", "fsync_tree", "remove_temporaries", "TEMPORARY_GLOB"]


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: readers see the old
    file or the new one, never a partial one."""
    atomic_write_stream(path, lambda fh: fh.write(payload))


def atomic_write_stream(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """:func:`atomic_write_bytes` for content written piece by piece: ``write(fh)`` writes into the temporary
    file (a file that does not fit in memory twice never has to)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # e.g. ENOSPC from write: name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


#: The names of the temporary files and folders of interrupted atomic writes.
TEMPORARY_GLOB = ".*.tmp"


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Remove what interrupted atomic writes left directly in ``folder`` (:data:`TEMPORARY_GLOB`) and return
    it. Only safe while no other process writes into ``folder`` (the caller holds its lock)."""
    removed = []
    for tmp in sorted(Path(folder).glob(TEMPORARY_GLOB)):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` into the file as it is written (atomically): a checkpoint of a 4M-item table and its
    two Adam moments (3 GB) is never held in memory a second and third time as bytes."""
    atomic_write_stream(path, lambda fh: torch.save(obj, fh))


def load_torch(path: str | Path) -> Any:
    """A tensor file written by :func:`save_torch`; only tensors and plain containers are accepted
    (``weights_only``), so a crafted pickle cannot run code. A file that cannot be read as one (truncated,
    damaged, not a torch file, or holding code) raises :class:`~sinerec.errors.SinerecError` naming it."""
    from sinerec.errors import SinerecError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        if exc.filename is not None:  # the file itself cannot be opened: not a question of its content
            raise
        raise SinerecError(f"{path}: damaged or not a sinerec tensor file ({exc.strerror or exc})") from exc
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SinerecError(f"{path}: damaged or not a sinerec tensor file ({first[:200]})") from exc


def fsync_tree(folder: Path) -> None:
    """Flush every file directly in ``folder`` and the folder itself."""
    for name in os.listdir(folder):
        fd = os.open(folder / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_dir(path: str | Path, write: Callable[[Path], None],
                     replaceable: Callable[[Path], bool] | None = None, kind: str = "a folder sinerec writes") -> Path:
    """Let ``write`` fill a fresh temporary folder beside ``path``, then swap it into place.

    A folder cannot be renamed over a non-empty one, so an existing ``path`` is first renamed aside and
    removed only after the new one is in place; if the swap fails the old one is renamed back. Any failure
    in ``write`` leaves ``path`` untouched and removes the temporary folder. ``replaceable(path)`` guards an
    existing ``path``: when it returns False the write is refused (so that a user's unrelated folder is
    never replaced).
    """
    from sinerec.errors import SinerecError

    path = Path(path)
    if path.exists() and replaceable is not None and not replaceable(path):
        raise SinerecError(f"{path}: exists and is not {kind}; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        write(tmp)
        fsync_tree(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if path.exists():
            old = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.old"
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
