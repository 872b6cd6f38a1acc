"""Named datasets: registry, resolution order, built-in copy, atomic checked downloads (file:// URLs)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

from sinerec.data import datasets
from sinerec.data.datasets import (
    DATASETS,
    DOWNLOAD_URLS,
    DatasetInfo,
    Download,
    list_datasets,
    load_dataset,
    locate_dataset,
)
from sinerec.data.formats.ml1m import read_ml1m
from sinerec.data.frame import Interactions
from sinerec.errors import DataFormatError, SinerecError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

RATINGS = b"1::10::5::978300760\n2::20::3::978300761\n1::20::4::978300762\n"
MOVIES = "10::Misérables, Les (1995)::Drama|Musical\n20::Toy Story (1995)::Animation\n".encode("latin-1")
USERS = b"1::F::1::10::48067\n2::M::56::16::70072\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the user's environment or writes to ~/.cache."""
    monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv(datasets.ENV_CACHE_DIR, str(cache))
    return cache


def _read_tiny(folder: Path, **options: Any) -> Interactions:
    return read_ml1m(folder, name="tiny", **options)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> DatasetInfo:
    """A registered dataset shaped like ml-1m, downloadable from a file:// zip built here."""
    archive = tmp_path / "serve" / "tiny.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tiny/ratings.dat", RATINGS)
        zf.writestr("tiny/movies.dat", MOVIES)
        zf.writestr("tiny/users.dat", USERS)
        zf.writestr("tiny/README", "licence text")
    info = DatasetInfo(
        name="tiny",
        description="test",
        licence="test",
        url="file:///",
        files={"ratings.dat": sha(RATINGS), "movies.dat": sha(MOVIES), "users.dat": sha(USERS)},
        required=("ratings.dat", "movies.dat"),
        n_users=2,
        n_items=2,
        n_interactions=3,
        reader=_read_tiny,
        downloads=(Download("tiny.zip", members=("ratings.dat", "movies.dat", "users.dat", "README")),),
        extra_files=("README",),
    )
    monkeypatch.setitem(DATASETS, "tiny", info)
    monkeypatch.setitem(DOWNLOAD_URLS, "tiny.zip", archive.as_uri())
    return info


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_registry_entries_are_consistent() -> None:
    assert {"ml-latest-small", "ml-1m", "amazon-beauty", "taobao-sample"} <= set(DATASETS)
    for name, info in DATASETS.items():
        assert info.name == name and info.licence and info.description and info.url
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in info.files.values())
        assert set(info.required) <= set(info.files)
        assert all(d.key in DOWNLOAD_URLS for d in info.downloads)
        assert min(info.n_users, info.n_items, info.n_interactions) > 0
    assert DATASETS["ml-1m"].downloads and DATASETS["amazon-beauty"].downloads
    assert not DATASETS["taobao-sample"].downloads
    assert (DATASETS["ml-1m"].n_users, DATASETS["ml-1m"].n_items, DATASETS["ml-1m"].n_interactions) == (
        6040,
        3706,
        1000209,
    )
    assert "2a81540ae18615d88ef88227b0c066e5b74781e5" in DOWNLOAD_URLS["amazon-beauty/Beauty.txt"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS["ml-1m"].name = "x"  # type: ignore[misc]


def test_builtin_ml_latest_small(isolated: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verify=True must find the published checksums
        got = load_dataset("ml-latest-small", verify=True)
    assert got.describe() == {"n_users": 610, "n_items": 9724, "n_interactions": 100836}
    assert got.name == "ml-latest-small" and got.meta["origin"] == "built-in"
    folder = Path(str(got.meta["folder"]))
    assert (folder / "README.txt").is_file() and "Usage License" in (folder / "README.txt").read_text()
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "movies.csv.gz", "ratings.csv.gz"]
    assert not isolated.exists()  # nothing written to the cache


def test_builtin_copied_out_of_a_zipped_install(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A zipped install has no folder to read: the shipped files are copied into the cache, once.
    shipped = Path(datasets.__file__).resolve().parents[1] / "resources" / "ml-latest-small"
    archive = tmp_path / "sinerec.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for entry in shipped.iterdir():
            zf.writestr(f"sinerec/resources/ml-latest-small/{entry.name}", entry.read_bytes())
    monkeypatch.setattr(datasets.resources, "files", lambda package: zipfile.Path(archive, "sinerec/"))
    folder, origin = locate_dataset("ml-latest-small")
    assert (folder, origin) == (isolated / "builtin-ml-latest-small", "built-in")
    assert leftovers(isolated) == ["builtin-ml-latest-small"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "movies.csv.gz", "ratings.csv.gz"]
    assert datasets.verify_dataset("ml-latest-small", folder) == []
    assert load_dataset("ml-latest-small").describe()["n_interactions"] == 100836


def test_unknown_dataset_and_option() -> None:
    with pytest.raises(SinerecError, match="unknown dataset 'nope'.*ml-1m"):
        load_dataset("nope")
    with pytest.raises(SinerecError, match="unknown option.*colour.*accepts: skip_bad_lines"):
        load_dataset("ml-latest-small", colour="red")


def test_data_dir_then_env_then_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "ratings.csv.gz").write_bytes(gzip.compress(b"userId,movieId,rating,timestamp\n1,2,3.0,4\n"))
    (mine / "movies.csv").write_bytes(b"movieId,title,genres\n2,A,Drama\n")
    root = tmp_path / "root"
    (root / "ml-latest-small").mkdir(parents=True)
    (root / "ml-latest-small" / "ratings.csv").write_bytes(
        b"userId,movieId,rating,timestamp\n1,2,3.0,4\n5,6,1.0,7\n"
    )
    (root / "ml-latest-small" / "movies.csv").write_bytes(b"movieId,title,genres\n2,A,Drama\n")
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(root))

    got = load_dataset("ml-latest-small", data_dir=mine)
    assert got.meta["origin"] == "data_dir" and got.describe()["n_interactions"] == 1
    got = load_dataset("ml-latest-small")
    assert got.meta["origin"] == "env" and got.describe()["n_interactions"] == 2
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_dataset("ml-latest-small", verify=True)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2 and "movies.csv: sha256" in messages[0] and "ratings.csv: sha256" in messages[1]
    assert all("differs from the published" in m for m in messages)
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(tmp_path / "elsewhere"))  # no sub-folder for it there
    assert load_dataset("ml-latest-small").meta["origin"] == "built-in"


def test_incomplete_local_folders_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ml1m"
    folder.mkdir()
    (folder / "ratings.dat").write_bytes(RATINGS)
    with pytest.raises(
        SinerecError, match=rf"data_dir {re.escape(str(folder))} lacks the file\(s\) movies.dat"
    ):
        load_dataset("ml-1m", data_dir=folder)
    with pytest.raises(SinerecError, match="no such folder"):
        load_dataset("ml-1m", data_dir=tmp_path / "absent")
    (tmp_path / "root" / "ml-1m").mkdir(parents=True)
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(tmp_path / "root"))
    with pytest.raises(
        SinerecError, match=r"SINEREC_DATA_DIR/ml-1m .* lacks the file\(s\) ratings.dat, movies.dat"
    ):
        load_dataset("ml-1m")


def test_download_then_cache(tiny: DatasetInfo, isolated: Path) -> None:
    got = load_dataset("tiny")
    assert got.meta["origin"] == "download" and got.describe() == {
        "n_users": 2,
        "n_items": 2,
        "n_interactions": 3,
    }
    assert got.items is not None and got.items.loc[10, "title"] == "Misérables, Les (1995)"
    assert leftovers(isolated) == ["tiny"]  # no temporary folder or archive left
    assert sorted(p.name for p in (isolated / "tiny").iterdir()) == [
        "README",
        "movies.dat",
        "ratings.dat",
        "users.dat",
    ]
    again = load_dataset("tiny", download=False)
    assert again.meta["origin"] == "cache"
    other = isolated.parent / "other-cache"
    assert locate_dataset("tiny", cache_dir=other) == (other / "tiny", "download")


def test_download_checksum_mismatch_leaves_nothing(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real ml-1m entry, served a zip whose members are not GroupLens' files.
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for member, data in (("ratings.dat", RATINGS), ("movies.dat", MOVIES), ("users.dat", USERS)):
            zf.writestr(f"ml-1m/{member}", data)
    monkeypatch.setitem(DOWNLOAD_URLS, "ml-1m.zip", archive.as_uri())
    with pytest.raises(SinerecError) as exc:
        load_dataset("ml-1m")
    message = str(exc.value)
    assert (
        "ratings.dat: expected sha256 506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f"
        in message
    )
    assert f"got {sha(RATINGS)}" in message and "nothing was kept" in message
    assert leftovers(isolated) == []


def test_download_failures_leave_nothing(
    tiny: DatasetInfo, tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(DOWNLOAD_URLS, "tiny.zip", (tmp_path / "absent.zip").as_uri())
    with pytest.raises(SinerecError, match="could not download"):
        load_dataset("tiny")
    assert leftovers(isolated) == []
    partial = tmp_path / "partial.zip"
    with zipfile.ZipFile(partial, "w") as zf:
        zf.writestr("ratings.dat", RATINGS)
    monkeypatch.setitem(DOWNLOAD_URLS, "tiny.zip", partial.as_uri())
    with pytest.raises(SinerecError, match="archive has no file 'movies.dat'"):
        load_dataset("tiny")
    assert leftovers(isolated) == []
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"<html>moved</html>")
    monkeypatch.setitem(DOWNLOAD_URLS, "tiny.zip", not_zip.as_uri())
    with pytest.raises(SinerecError, match="not a valid zip"):
        load_dataset("tiny")
    assert leftovers(isolated) == []


def test_plain_file_downloads(tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seq, attrs = b"1 4 5\n2 5 4 6\n", b'{"4": [1], "5": [2]}'
    for name, data in (("Beauty.txt", seq), ("Beauty_item2attributes.json", attrs)):
        (tmp_path / name).write_bytes(data)
        monkeypatch.setitem(DOWNLOAD_URLS, f"amazon-beauty/{name}", (tmp_path / name).as_uri())
    with pytest.raises(SinerecError, match="Beauty.txt: expected sha256 226cce9c"):
        load_dataset("amazon-beauty")
    assert leftovers(isolated) == []
    fake = dataclasses.replace(
        DATASETS["amazon-beauty"], files={"Beauty.txt": sha(seq), "Beauty_item2attributes.json": sha(attrs)}
    )
    monkeypatch.setitem(DATASETS, "amazon-beauty", fake)
    got = load_dataset("amazon-beauty")
    assert got.describe() == {"n_users": 2, "n_items": 3, "n_interactions": 5} and not got.has_timestamps
    assert leftovers(isolated) == ["amazon-beauty"]


def test_not_downloadable_or_not_allowed(tiny: DatasetInfo) -> None:
    with pytest.raises(SinerecError, match=r"cannot be downloaded.*tianchi.*data_dir="):
        load_dataset("taobao-sample")
    with pytest.raises(SinerecError, match="download=False"):
        load_dataset("tiny", download=False)


def test_list_datasets(
    tiny: DatasetInfo, tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    (root / "taobao-sample").mkdir(parents=True)
    (root / "taobao-sample" / "UserBehavior_head.csv").write_bytes(b"1,2,3,pv,4\n")
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(root))
    load_dataset("tiny")
    rows = {row["name"]: row for row in list_datasets()}
    assert set(rows) == set(DATASETS)
    assert (
        rows["ml-latest-small"]["location"] == "built-in" and rows["ml-latest-small"]["size_bytes"] > 500_000
    )
    assert rows["taobao-sample"]["location"] == "env" and rows["taobao-sample"]["size_bytes"] == 11
    assert rows["tiny"]["location"] == "cached" and rows["tiny"]["path"] == str(isolated / "tiny")
    assert rows["ml-1m"]["available"] is False and rows["ml-1m"]["size_bytes"] is None
    assert rows["ml-1m"]["downloadable"] and not rows["taobao-sample"]["downloadable"]
    assert {"description", "licence", "n_users", "n_items", "n_interactions", "url"} <= set(rows["ml-1m"])


# ----------------------------------------------------------------------------------------------------------
# Real files (../shared/data beside the repository): read through the registry, checksums verified


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ml-latest-small", "ml-1m", "amazon-beauty", "taobao-sample"])
def test_real_published_counts(name: str) -> None:
    from conftest import shared_dataset

    folder = shared_dataset(name)
    info = DATASETS[name]
    options: dict[str, Any] = {"skip_bad_lines": True} if name == "taobao-sample" else {}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = load_dataset(name, data_dir=folder, verify=True, **options)
    assert not [w for w in record if "sha256" in str(w.message)]
    assert got.describe() == {
        "n_users": info.n_users,
        "n_items": info.n_items,
        "n_interactions": info.n_interactions,
    }
    assert got.name == name and got.meta["origin"] == "data_dir"


@pytest.mark.realdata
def test_real_taobao_sample_needs_skip_bad_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import shared_dataset

    shared_dataset("taobao-sample")
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(SHARED))
    with pytest.raises(DataFormatError, match=r"line 84476: .*truncated"):
        load_dataset("taobao-sample")
    with pytest.warns(UserWarning, match="line 84476"):
        pv = load_dataset("taobao-sample", skip_bad_lines=True, behaviors=("pv",))
    assert pv.meta["origin"] == "env" and pv.describe()["n_interactions"] == 75872
