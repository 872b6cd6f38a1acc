"""Fetching dataset files into the cache: the cache folder, sha256 checks, HTTP (or file://) downloads, zip
extraction, and the all-or-nothing swap of a finished folder into place.

A download happens in a temporary folder beside its target and is swapped into place (by
:func:`sinerec.storage.atomic_write_dir`) only once every file is there and matches its sha256, so a failed
or tampered download leaves nothing behind. Checksums are of the uncompressed content of gzipped files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sinerec.data.files import load_bytes
from sinerec.errors import SinerecError

__all__ = [
    "DOWNLOAD_TIMEOUT",
    "ENV_CACHE_DIR",
    "Download",
    "checksum_mismatches",
    "default_cache_dir",
    "download_files",
    "make_folder",
    "missing_files",
    "present_file",
    "sha256_of",
    "write_folder",
]

#: Where downloaded datasets are kept (default ``$XDG_CACHE_HOME/sinerec`` or ``~/.cache/sinerec``).
ENV_CACHE_DIR = "SINEREC_CACHE_DIR"
#: Seconds without an answer from the server before a download gives up.
DOWNLOAD_TIMEOUT = 60.0

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Download:
    """One file to fetch: the URL registered under ``key``.

    Either a zip archive (``members``: files to take out of it, found by base name wherever they lie in the
    archive) or a plain file saved as ``filename``.
    """

    key: str
    members: tuple[str, ...] = ()
    filename: str = ""


def default_cache_dir() -> Path:
    """``$SINEREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/sinerec``, else ``~/.cache/sinerec``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "sinerec"
    return Path.home() / ".cache" / "sinerec"


def make_folder(path: Path) -> Path:
    """``path``, created with its parents when missing; SinerecError naming it when that fails."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinerecError(f"cannot create the folder {path}: {exc}") from exc
    return path


def present_file(folder: Path, filename: str) -> Path | None:
    """``folder/filename`` or its ``.gz``, whichever exists; None when neither does."""
    for candidate in (folder / filename, folder / f"{filename}.gz"):
        if candidate.is_file():
            return candidate
    return None


def missing_files(folder: Path, filenames: Sequence[str]) -> list[str]:
    """The ``filenames`` that are in ``folder`` neither plain nor gzipped."""
    return [f for f in filenames if present_file(folder, f) is None]


def sha256_of(path: Path) -> str:
    """sha256 of the file's content, uncompressed when it is gzip data."""
    with path.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if gz:
        return hashlib.sha256(load_bytes(path)).hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_mismatches(folder: Path, files: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(file, expected, actual) for each present file of ``files`` (name -> sha256) whose sha256 differs."""
    out = []
    for filename, expected in files.items():
        path = present_file(folder, filename)
        if path is not None:
            actual = sha256_of(path)
            if actual != expected:
                out.append((str(path), expected, actual))
    return out


def write_folder(target: Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a temporary folder beside ``target``, then swap it into place (replacing an
    incomplete ``target``); all or nothing. OSError becomes a SinerecError naming ``target``."""
    # storage loads torch; imported here so that listing or reading datasets does not
    from sinerec.storage import atomic_write_dir

    make_folder(target.parent)
    try:
        return atomic_write_dir(target, write)
    except OSError as exc:
        raise SinerecError(f"cannot move the downloaded files into {target}: {exc}") from exc


def download_files(
    target: Path,
    downloads: Sequence[Download],
    urls: Mapping[str, str],
    files: Mapping[str, str],
    optional: tuple[str, ...] = (),
) -> Path:
    """Fetch ``downloads`` (URLs from ``urls`` by key) into the folder ``target``, all or nothing.

    Every file of ``files`` (name -> sha256) must be delivered and match; archive members listed in
    ``optional`` may be absent. Raises SinerecError naming the URL, the archive member or the checksums.
    """
    name = target.name

    def fill(tmp: Path) -> None:
        for number, item in enumerate(downloads):
            url = urls.get(item.key)
            if url is None:
                raise SinerecError(f"no download URL for {item.key!r} (DOWNLOAD_URLS)")
            fetched = tmp / f".download-{number}"
            _fetch(url, fetched, f"{name}: {PurePosixPath(item.key).name}")
            if item.members:
                _extract(fetched, item.members, tmp, optional=optional)
                fetched.unlink()
            else:
                fetched.rename(tmp / item.filename)
        missing = missing_files(tmp, list(files))
        if missing:
            raise SinerecError(f"the download of {name!r} did not deliver {', '.join(missing)}")
        bad = checksum_mismatches(tmp, files)
        if bad:
            detail = "; ".join(
                f"{Path(path).name}: expected sha256 {expected}, got {actual}" for path, expected, actual in bad
            )
            raise SinerecError(
                f"the download of {name!r} does not match its checksums ({detail}); nothing was kept. "
                "The file may have changed upstream or been damaged in transit."
            )

    return write_folder(target, fill)


def _fetch(url: str, dest: Path, label: str) -> None:
    """Stream ``url`` into ``dest``, with a progress bar on a terminal."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but a progress bar is not worth failing for
        tqdm = None
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response, dest.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = (
                tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not sys.stderr.isatty())
                if tqdm is not None
                else None
            )
            try:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:  # URLError, timeouts, bad URLs
        raise SinerecError(f"could not download {url}: {exc}") from exc


def _extract(archive: Path, members: tuple[str, ...], into: Path, optional: tuple[str, ...]) -> None:
    """Copy the archive members with these base names into ``into`` (no path from the archive is used)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            by_name: dict[str, str] = {}
            for entry in zf.namelist():
                base = PurePosixPath(entry).name
                if base and not entry.endswith("/"):
                    by_name.setdefault(base, entry)
            for member in members:
                if member not in by_name:
                    if member in optional:
                        continue
                    raise SinerecError(f"{archive.name}: the archive has no file {member!r}")
                with zf.open(by_name[member]) as src, (into / member).open("wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise SinerecError(f"{archive.name}: not a valid zip archive: {exc}") from exc
