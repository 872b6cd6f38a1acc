"""The ``factory`` backend beyond the shared suite (which runs it with exact strings: "Flat", "IVF4,Flat" with
every cell visited, "HNSW8" with a long candidate list): quantised strings by recall against exact search,
search-time settings through an OPQ pre-transform, memory-mapped loading, the payload fingerprint check, and
the factory string's errors, flag and environment variable."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sinerec.cli import build_parser
from sinerec.cli.common import index_settings
from sinerec.errors import ConfigError, SinerecError
from sinerec.retrieval import IndexSettings, build_index, faiss_available, load_index, recall_at_k, vectors_fingerprint

pytestmark = pytest.mark.skipif(not faiss_available(), reason="the factory backend needs faiss-cpu")


def clustered(seed: int = 0, m: int = 4000, d: int = 16, clusters: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(M + 1, D) items in Gaussian clusters (row 0 padding) and 200 queries near random items."""
    g = np.random.default_rng(seed)
    centers = g.standard_normal((clusters, d))
    items = centers[g.integers(0, clusters, m)] + 0.3 * g.standard_normal((m, d))
    items = np.concatenate([np.zeros((1, d)), items]).astype(np.float32)
    queries = (items[g.integers(1, m + 1, 200)] + 0.3 * g.standard_normal((200, d))).astype(np.float32)
    return items, queries


def factory(string: str, **overrides: int) -> IndexSettings:
    return IndexSettings("factory", factory=string, **overrides)


def mapped_files() -> set[str]:
    lines = Path("/proc/self/maps").read_text().splitlines()
    return {line.split(None, 5)[5] for line in lines if len(line.split(None, 5)) == 6}


def test_product_quantisation_is_approximate_with_a_recall_floor():
    # 8 bytes per 16-dim vector (2 dims per sub-quantizer, 256 centroids each), every cell visited: the loss
    # is the quantisation's alone. Measured recall@10 on seeds 0-3: 0.76-0.79 (random lists: 10/4000 =
    # 0.0025); half the bytes (PQ4) measured 0.47-0.53. The floor 0.7 leaves room for Faiss's k-means
    # rounding under other thread counts, and the order PQ8 > PQ4 checks that the string is really used.
    items, queries = clustered()
    exact = build_index(items, IndexSettings("flat")).search(queries, 10)[0]
    pq8 = recall_at_k(build_index(items, factory("IVF16,PQ8", nprobe=16)).search(queries, 10)[0], exact, 10)
    pq4 = recall_at_k(build_index(items, factory("IVF16,PQ4", nprobe=16)).search(queries, 10)[0], exact, 10)
    assert 0.7 <= pq8 < 1.0 and pq4 < pq8, (pq8, pq4)


def test_nprobe_reaches_an_ivf_behind_an_opq_rotation():
    # OPQ is a rotation: with flat codes and every cell visited the ranking is the exact one.
    items, queries = clustered(1)
    exact = build_index(items, IndexSettings("flat")).search(queries, 10)[0]
    index = build_index(items, factory("OPQ4,IVF16,Flat", nprobe=1))
    recalls = [recall_at_k(index.with_search_settings(nprobe=p).search(queries, 10)[0], exact, 10)
               for p in (1, 4, 16)]
    assert recalls[0] < recalls[1] <= recalls[2] == 1.0, recalls


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the memory maps of Linux /proc")
@pytest.mark.parametrize("string", ["IVF16,PQ8", "OPQ4,IVF16,PQ4", "Flat", "PQ8"])
def test_a_saved_factory_index_is_memory_mapped_and_searches_as_built(string, tmp_path):
    items, queries = clustered(2, m=2000)
    built = build_index(items, factory(string, nprobe=8))
    folder = built.save(tmp_path / "index")
    payload = str((folder / "index.faiss").resolve())
    assert payload not in mapped_files()
    loaded = load_index(folder, expected_fingerprint=vectors_fingerprint(items))
    assert payload in mapped_files()  # IVF lists (IO_FLAG_MMAP) or flat codes (IO_FLAG_MMAP_IFC) are the file's
    assert loaded.settings == built.settings and loaded.fingerprint == vectors_fingerprint(items)
    for a, b in zip(loaded.search(queries, 20, [[5]] * 200), built.search(queries, 20, [[5]] * 200), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.with_search_settings(nprobe=2).settings.nprobe == 2


def test_a_mixed_or_edited_payload_is_refused(tmp_path):
    items, _ = clustered(3, m=1000)
    build_index(items, factory("IVF8,PQ4")).save(tmp_path / "a")
    build_index(items * 2, factory("IVF8,PQ4")).save(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "index.faiss", tmp_path / "a" / "index.faiss")  # another model's codes
    with pytest.raises(SinerecError, match=r"/a: index.faiss does not match payload.json .*edited or mixed"):
        load_index(tmp_path / "a")
    record = json.loads((tmp_path / "b" / "payload.json").read_text())
    (tmp_path / "b" / "payload.json").write_text(json.dumps({**record, "fingerprint": vectors_fingerprint(items)}))
    with pytest.raises(SinerecError, match=r"/b: index.faiss does not match payload.json"):
        load_index(tmp_path / "b")
    (tmp_path / "b" / "payload.json").unlink()
    with pytest.raises(SinerecError, match=r"/b: the stored index cannot be read \(FileNotFoundError"):
        load_index(tmp_path / "b")


def test_a_string_faiss_cannot_build_is_a_config_error_naming_it():
    items, _ = clustered(4, m=500, d=12)
    with pytest.raises(ConfigError, match=r"index.factory: Faiss cannot build 'IVF16,PQ5' for D = 12"):
        build_index(items, factory("IVF16,PQ5"))  # 5 sub-quantizers do not divide 12 dims
    with pytest.raises(ConfigError, match=r"index.factory: Faiss cannot build 'NoSuchIndex'"):
        build_index(items, factory("NoSuchIndex"))
    with pytest.raises(ConfigError, match=r"index.factory: must be a Faiss index-factory string, got ' '"):
        factory(" ")


def test_the_factory_flag_and_variable_carry_the_string():
    from sinerec.deploy import ServiceSettings, settings_from_env, settings_to_env

    args = build_parser().parse_args(["index", "build", "--run", "RUN", "--backend", "factory",
                                      "--factory", "OPQ16,IVF4096,PQ16", "--nprobe", "64"])
    settings = index_settings(args)
    assert settings == IndexSettings("factory", factory="OPQ16,IVF4096,PQ16", nprobe=64)
    assert settings.describe() == {"backend": "factory", "factory": "OPQ16,IVF4096,PQ16", "nprobe": 64,
                                   "ef_search": 128, "train_size": 262_144, "seed": 0}
    service = ServiceSettings(Path("run"), None, IndexSettings("factory", factory="IVF4096,PQ32"))
    assert settings_from_env(settings_to_env(service)).index_settings == service.index_settings
