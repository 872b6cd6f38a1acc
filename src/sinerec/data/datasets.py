"""Named datasets: the registry (what each is, its files and checksums, how to read it) and where its files are.

``load_dataset(name)`` looks for the dataset's files in this order and reads the first complete copy:

1. ``data_dir`` (argument): a folder holding the dataset's files directly (``ratings.dat``...);
2. ``$SINEREC_DATA_DIR/<name>/``: a root folder with one sub-folder per dataset;
3. the copy built into the package (``ml-latest-small`` only);
4. ``<cache>/<name>/`` where ``<cache>`` is ``cache_dir`` (argument), else ``$SINEREC_CACHE_DIR``, else
   ``$XDG_CACHE_HOME/sinerec``, else ``~/.cache/sinerec``;
5. a download into the cache (when ``download=True`` and the dataset can be downloaded), every file checked
   against its sha256. Download and extraction happen in a temporary folder inside the cache, renamed into
   place only once every file checks out, so a failed or tampered download leaves nothing behind.

Copies the user provides (1, 2) are read as they are; ``verify=True`` checks their sha256 and warns on a
mismatch. Any file may be gzipped (``ratings.dat.gz``): checksums are of the uncompressed content.
Fetching, checking and swapping files into the cache is ``sinerec.data.download``'s.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sinerec.data.download import (
    ENV_CACHE_DIR,
    Download,
    checksum_mismatches,
    default_cache_dir,
    download_files,
    missing_files,
    present_file,
    write_folder,
)
from sinerec.data.files import find_file
from sinerec.data.formats.ml1m import read_ml1m
from sinerec.data.formats.movielens import read_movielens_csv
from sinerec.data.formats.sequences import read_sequences
from sinerec.data.formats.taobao import read_taobao
from sinerec.data.frame import Interactions
from sinerec.errors import SinerecError

__all__ = [
    "DATASETS",
    "DOWNLOAD_URLS",
    "ENV_CACHE_DIR",
    "ENV_DATA_DIR",
    "DatasetInfo",
    "Download",
    "default_cache_dir",
    "list_datasets",
    "load_dataset",
    "locate_dataset",
    "verify_dataset",
]

#: Root folder with one sub-folder per dataset name (like the project's ``../shared/data``).
ENV_DATA_DIR = "SINEREC_DATA_DIR"
#: Where each download comes from, by ``Download.key``. Change an entry to use a mirror (or, in tests, a
#: ``file://`` URL); the sha256 checks stay the same.
DOWNLOAD_URLS: dict[str, str] = {
    "ml-1m.zip": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    "amazon-beauty/Beauty.txt": (
        "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/"
        "2a81540ae18615d88ef88227b0c066e5b74781e5/data/Beauty.txt"
    ),
    "amazon-beauty/Beauty_item2attributes.json": (
        "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/"
        "2a81540ae18615d88ef88227b0c066e5b74781e5/data/Beauty_item2attributes.json"
    ),
}


@dataclass(frozen=True)
class DatasetInfo:
    """A named dataset.

    Attributes:
        name: registry key, also ``Interactions.name``.
        description: one line.
        licence: one line: the terms of use.
        url: where the data comes from (home page or repository).
        files: file name -> sha256 of its (uncompressed) content; every file a download must deliver.
        required: the files the reader needs; a local folder must hold these (or their ``.gz``).
        n_users, n_items, n_interactions: published counts, with no filter: ``load_dataset(name)`` with
            default options gives these via ``Interactions.describe()``.
        reader: ``reader(folder, **options) -> Interactions``.
        options: the reader options ``load_dataset`` accepts.
        downloads: how to fetch it; empty when it cannot be downloaded.
        builtin: sub-folder of ``sinerec/resources`` shipping the files, when the package ships it.
        extra_files: files taken along when present (licence texts), not checksummed.
        how_to_get: what to do when it is missing and cannot be downloaded.
    """

    name: str
    description: str
    licence: str
    url: str
    files: Mapping[str, str]
    required: tuple[str, ...]
    n_users: int
    n_items: int
    n_interactions: int
    reader: Callable[..., Interactions]
    options: tuple[str, ...] = ("skip_bad_lines",)
    downloads: tuple[Download, ...] = ()
    builtin: str | None = None
    extra_files: tuple[str, ...] = ()
    how_to_get: str = field(default="")


# ----------------------------------------------------------------------------------------------------------
# Readers by folder
# ----------------------------------------------------------------------------------------------------------


def _read_ml_latest_small(folder: Path, **options: Any) -> Interactions:
    return read_movielens_csv(folder, name="ml-latest-small", **options)


def _read_ml1m(folder: Path, **options: Any) -> Interactions:
    return read_ml1m(folder, name="ml-1m", **options)


def _read_amazon_beauty(folder: Path, **options: Any) -> Interactions:
    return read_sequences(
        find_file(folder, "Beauty.txt"),
        find_file(folder, "Beauty_item2attributes.json"),
        name="amazon-beauty",
        **options,
    )


def _read_taobao_sample(folder: Path, **options: Any) -> Interactions:
    # All behaviour types by default, so that the published counts are those of the file; SINE/ComiRec's
    # "Taobao" keeps page views only: pass behaviors=("pv",).
    options.setdefault("behaviors", None)
    return read_taobao(find_file(folder, "UserBehavior_head.csv"), name="taobao-sample", **options)


_MOVIELENS_CITATION = "cite Harper & Konstan 2015 (ACM TiiS 5(4):19)"

DATASETS: dict[str, DatasetInfo] = {
    "ml-latest-small": DatasetInfo(
        name="ml-latest-small",
        description="MovieLens latest-small (2018-09 snapshot): 5-star ratings with timestamps and genres; "
        "built into the package",
        licence=f"GroupLens usage licence: research, non-commercial use, {_MOVIELENS_CITATION}; "
        "redistribution allowed under the same conditions (README.txt ships beside the files)",
        url="https://grouplens.org/datasets/movielens/latest/",
        files={
            "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
            "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
        },
        required=("ratings.csv", "movies.csv"),
        n_users=610,
        n_items=9724,
        n_interactions=100836,
        reader=_read_ml_latest_small,
        builtin="ml-latest-small",
        extra_files=("README.txt",),
    ),
    "ml-1m": DatasetInfo(
        name="ml-1m",
        description="MovieLens 1M: 1,000,209 ratings of 3,706 movies by 6,040 users (2000-2003), 18 genres",
        licence=f"GroupLens usage licence: research use, {_MOVIELENS_CITATION}; no redistribution "
        "(downloaded from GroupLens on first use)",
        url="https://grouplens.org/datasets/movielens/1m/",
        files={
            "ratings.dat": "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f",
            "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
            "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
        },
        required=("ratings.dat", "movies.dat"),
        n_users=6040,
        n_items=3706,
        n_interactions=1000209,
        reader=_read_ml1m,
        downloads=(Download("ml-1m.zip", members=("ratings.dat", "movies.dat", "users.dat", "README")),),
        extra_files=("README",),
    ),
    "amazon-beauty": DatasetInfo(
        name="amazon-beauty",
        description="Amazon Beauty 5-core as preprocessed by S3-Rec: item sequences (no timestamps) and "
        "item attributes",
        licence="Amazon review data (McAuley et al.): research use with citation; preprocessing by the "
        "S3-Rec authors (RUCAIBox/CIKM2020-S3Rec)",
        url="https://github.com/RUCAIBox/CIKM2020-S3Rec/tree/2a81540ae18615d88ef88227b0c066e5b74781e5/data",
        files={
            "Beauty.txt": "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
            "Beauty_item2attributes.json": "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
        },
        required=("Beauty.txt", "Beauty_item2attributes.json"),
        n_users=22363,
        n_items=12101,
        n_interactions=198502,
        reader=_read_amazon_beauty,
        downloads=(
            Download("amazon-beauty/Beauty.txt", filename="Beauty.txt"),
            Download("amazon-beauty/Beauty_item2attributes.json", filename="Beauty_item2attributes.json"),
        ),
    ),
    "taobao-sample": DatasetInfo(
        name="taobao-sample",
        description="Head (3 MiB) of Tianchi's Taobao UserBehavior.csv: pv/cart/fav/buy events of 815 users; "
        "its last line is cut in half (load with skip_bad_lines=True)",
        licence="Alibaba Tianchi terms: research use; the data needs a Tianchi account, so it is never "
        "downloaded or shipped",
        url="https://tianchi.aliyun.com/dataset/649",
        files={"UserBehavior_head.csv": "9cbce278d485d50954029082dd1b22f0dc78dc38776f58d953f0cbe18d6608b4"},
        required=("UserBehavior_head.csv",),
        # With all behaviour types and the cut last line skipped.
        n_users=815,
        n_items=55368,
        n_interactions=84475,
        reader=_read_taobao_sample,
        options=("skip_bad_lines", "behaviors"),
        how_to_get="Tianchi needs a login, so sinerec cannot download it: get UserBehavior.csv from "
        "https://tianchi.aliyun.com/dataset/649 (or a copy of its head), save it (or its head) as "
        "UserBehavior_head.csv in a folder, and pass that folder as data_dir= (or put it in "
        f"${ENV_DATA_DIR}/taobao-sample/)",
    ),
}


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise SinerecError(
            f"unknown dataset {name!r}; the known datasets are: {', '.join(DATASETS)}"
        ) from None


# ----------------------------------------------------------------------------------------------------------
# Locations
# ----------------------------------------------------------------------------------------------------------


def _builtin_folder(info: DatasetInfo, cache_dir: Path | None) -> Path | None:
    """The folder of the copy shipped in the package (copied out to the cache if the package is zipped)."""
    if info.builtin is None:
        return None
    root = resources.files("sinerec") / "resources" / info.builtin
    if isinstance(root, Path):
        return root if root.is_dir() else None
    # Not on the file system (a zipped install): copy the few files out, once, into the cache.
    if not root.is_dir():
        return None
    target = (cache_dir or default_cache_dir()) / f"builtin-{info.builtin}"
    if not missing_files(target, list(info.required)):
        return target

    def copy_out(tmp: Path) -> None:
        for entry in root.iterdir():
            if entry.is_file():
                (tmp / entry.name).write_bytes(entry.read_bytes())

    return write_folder(target, copy_out)


def _env_folder(name: str) -> Path | None:
    root = os.environ.get(ENV_DATA_DIR)
    return Path(root).expanduser() / name if root else None


def locate_dataset(
    name: str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
) -> tuple[Path, str]:
    """The folder holding the dataset's files and where it was found: "data_dir", "env", "built-in",
    "cache" or "download" (just downloaded into the cache). See the module docstring for the order.

    Raises SinerecError when ``data_dir`` or ``$SINEREC_DATA_DIR/<name>`` lacks a required file (naming the
    folder and the file), when the dataset is nowhere and cannot (or may not) be downloaded, or when a
    download fails or does not match its checksums.
    """
    info = _info(name)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise SinerecError(f"data_dir {folder}: no such folder")
        _require(info, folder, "data_dir")
        return folder, "data_dir"
    env = _env_folder(name)
    if env is not None and env.is_dir():
        _require(info, env, f"${ENV_DATA_DIR}/{name}")
        return env, "env"
    builtin = _builtin_folder(info, cache)
    if builtin is not None:
        return builtin, "built-in"
    cached = cache / name
    if cached.is_dir() and not missing_files(cached, list(info.files)):
        return cached, "cache"
    looked = [str(p) for p in (env, cached) if p is not None]
    if not info.downloads:
        raise SinerecError(
            f"dataset {name!r} was not found (looked in {', '.join(looked)}) and cannot be downloaded. "
            f"{info.how_to_get}"
        )
    if not download:
        raise SinerecError(
            f"dataset {name!r} was not found (looked in {', '.join(looked)}) and download=False: allow the "
            f"download, or pass data_dir= a folder holding {', '.join(info.required)}"
        )
    target = cache / name
    return download_files(target, info.downloads, DOWNLOAD_URLS, info.files, optional=info.extra_files), "download"


def _require(info: DatasetInfo, folder: Path, what: str) -> None:
    missing = missing_files(folder, list(info.required))
    if missing:
        raise SinerecError(
            f"{what} {folder} lacks the file(s) {', '.join(missing)} of dataset {info.name!r} "
            f"(it needs {', '.join(info.required)}, each possibly gzipped as .gz)"
        )


def verify_dataset(name: str, folder: str | Path) -> list[tuple[str, str, str]]:
    """Check the files of ``folder`` against the dataset's sha256: (file, expected, actual) per mismatch."""
    info = _info(name)
    return checksum_mismatches(Path(folder), info.files)


# ----------------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    *,
    verify: bool = False,
    **options: Any,
) -> Interactions:
    """Read a named dataset (see ``DATASETS``) into an :class:`Interactions`, fetching it if needed.

    Args:
        name: a key of ``DATASETS``: "ml-latest-small" (built in), "ml-1m", "amazon-beauty", "taobao-sample".
        data_dir: a folder holding the dataset's files directly; used as it is.
        cache_dir: where downloads go (default ``$SINEREC_CACHE_DIR`` or ``~/.cache/sinerec``).
        download: whether a missing dataset may be downloaded.
        verify: check the sha256 of the files read (warns on a mismatch; downloads are always checked).
        options: reader options: ``skip_bad_lines`` (all datasets), ``behaviors`` (taobao-sample: default
            None = all behaviour types; ``("pv",)`` for SINE/ComiRec's setting).

    Note: "taobao-sample"'s file ends in a line cut in half, so loading it raises DataFormatError naming that
    line unless ``skip_bad_lines=True``.

    Returns the Interactions with ``name`` = the dataset name and ``meta["dataset"]``, ``meta["origin"]``
    (data_dir, env, built-in, cache or download) and ``meta["folder"]``.
    """
    info = _info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise SinerecError(
            f"dataset {name!r}: unknown option(s) {', '.join(unknown)}; it accepts: {', '.join(info.options)}"
        )
    folder, origin = locate_dataset(name, data_dir=data_dir, cache_dir=cache_dir, download=download)
    if verify:
        for path, expected, actual in checksum_mismatches(folder, info.files):
            warnings.warn(
                f"{path}: sha256 {actual} differs from the published {expected} of dataset {name!r}: "
                "the counts and results may differ from the published ones",
                stacklevel=2,
            )
    interactions = info.reader(folder, **options)
    interactions.meta.update(dataset=name, origin=origin, folder=str(folder))
    return interactions


def _folder_size(info: DatasetInfo, folder: Path) -> int:
    total = 0
    for filename in dict.fromkeys((*info.files, *info.required, *info.extra_files)):
        path = present_file(folder, filename)
        if path is not None:
            total += path.stat().st_size
    return total


def list_datasets(cache_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One dict per registered dataset, for ``sinerec datasets``.

    Keys: name, description, licence, url, n_users, n_items, n_interactions (published), downloadable,
    available (bool), location ("env", "built-in", "cached" or None: where ``load_dataset`` without
    ``data_dir`` would read it), path (str or None) and size_bytes (of its files there, or None).
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    rows = []
    for name, info in DATASETS.items():
        location: str | None = None
        folder: Path | None = None
        env = _env_folder(name)
        if env is not None and env.is_dir() and not missing_files(env, list(info.required)):
            location, folder = "env", env
        elif info.builtin is not None and (builtin := _builtin_folder(info, cache)) is not None:
            location, folder = "built-in", builtin
        elif (cache / name).is_dir() and not missing_files(cache / name, list(info.files)):
            location, folder = "cached", cache / name
        rows.append(
            {
                "name": name,
                "description": info.description,
                "licence": info.licence,
                "url": info.url,
                "n_users": info.n_users,
                "n_items": info.n_items,
                "n_interactions": info.n_interactions,
                "downloadable": bool(info.downloads),
                "available": folder is not None,
                "location": location,
                "path": str(folder) if folder is not None else None,
                "size_bytes": _folder_size(info, folder) if folder is not None else None,
            }
        )
    return rows
