"""The (ids, scores) index contract: one suite, generated from the backend table, that every backend passes,
the approximate ones configured to be exact (their ``exact_settings``: IVF visiting every cell, HNSW with a
candidate list larger than the catalogue). Only backends that need Faiss skip without it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sinerec.cli import build_parser
from sinerec.errors import ConfigError, SinerecError
from sinerec.evaluate import topk_items
from sinerec.retrieval import (
    BACKENDS,
    BackendSpec,
    IndexSettings,
    ItemIndex,
    build_index,
    faiss_available,
    load_index,
    merge_multi,
    recall_at_k,
    register_backend,
    vectors_fingerprint,
)

M, D, B, K = 97, 13, 7, 3  # odd, distinct sizes: a transposed dimension fails loudly

NO_FAISS = "the Faiss backends need faiss-cpu (pip install 'sinerec[faiss]')"
needs_faiss = pytest.mark.skipif(not faiss_available(), reason=NO_FAISS)


def backend_cases() -> list:
    """One case per (backend, exact configuration) of the table; Faiss backends skip without Faiss."""
    cases = []
    for name, spec in BACKENDS.items():
        for i, overrides in enumerate(spec.exact_settings):
            case_id = name if len(spec.exact_settings) == 1 else f"{name}-{i}"
            marks = [needs_faiss] if spec.needs_faiss else []
            cases.append(pytest.param(IndexSettings(name, **overrides), id=case_id, marks=marks))
    return cases


backends = pytest.mark.parametrize("settings", backend_cases())


@pytest.fixture(scope="module")
def vectors():
    # Gaussian vectors: scores have no ties, so every exact ranking is unique.
    g = torch.Generator().manual_seed(0)
    items = torch.randn(M + 1, D, generator=g)
    items[0] = 0.0
    return items, torch.randn(B, D, generator=g), torch.randn(B, K, D, generator=g)


def brute_force(queries: torch.Tensor, items: torch.Tensor, k: int):
    scores = queries @ items[1:].T  # (B, M), rows 1..M
    top = torch.topk(scores, k, dim=1)
    return (top.indices + 1).numpy(), top.values.numpy()


@backends
def test_search_equals_brute_force_topk(settings, vectors):
    items, queries, _ = vectors
    ids, scores = build_index(items, settings).search(queries, 11)
    want_ids, want_scores = brute_force(queries, items, 11)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == scores.shape == (B, 11)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


@backends
def test_exclusion_equals_offline_evaluator(settings, vectors):
    items, queries, _ = vectors
    rng = np.random.default_rng(1)
    exclude = [rng.choice(np.arange(1, M + 1), size=n, replace=False) for n in (0, 1, 5, 9, 30, 2, 17)]
    ids, _ = build_index(items, settings).search(queries, 10, exclude)
    rows = torch.from_numpy(np.repeat(np.arange(B), [len(e) for e in exclude]))
    want, _ = topk_items(queries, items, 10, rows, torch.from_numpy(np.concatenate(exclude)))
    np.testing.assert_array_equal(ids, want.numpy())
    for row, ex in zip(ids, exclude, strict=True):
        assert not np.isin(row, ex).any()


@backends
def test_padding_row_is_never_returned(settings, vectors):
    items, queries, _ = vectors
    items = items.clone()
    items[0] = 100 * queries.mean(0)  # would win every list if it were indexed
    ids, _ = build_index(items, settings).search(queries, M)
    assert (ids >= 1).all()
    assert all(sorted(row) == list(range(1, M + 1)) for row in ids.tolist())


@backends
def test_k_beyond_the_catalogue_is_padded(settings, vectors):
    items, queries, _ = vectors
    ids, scores = build_index(items, settings).search(queries, M + 4, exclude=[[1, 2]] * B)
    assert ids.shape == (B, M + 4)
    assert (ids[:, M - 2:] == -1).all() and np.isneginf(scores[:, M - 2:]).all()
    assert all(sorted(row) == list(range(3, M + 1)) for row in ids[:, :M - 2].tolist())


@backends
def test_multi_vector_search_is_max_over_interests(settings, vectors):
    items, _, interests = vectors
    ids, scores, interest = build_index(items, settings).search_multi(interests, 9)
    want_ids, want_scores = topk_items(interests, items, 9)  # the evaluator's max-over-K ranking
    np.testing.assert_array_equal(ids, want_ids.numpy())
    np.testing.assert_allclose(scores, want_scores.numpy(), rtol=1e-5, atol=1e-5)
    per_interest = torch.einsum("bkd,bnd->bnk", interests, items[torch.from_numpy(ids)])  # (B, 9, K)
    np.testing.assert_array_equal(interest, per_interest.argmax(-1).numpy())
    assert all(len(set(row)) == len(row) for row in ids.tolist())


@backends
def test_save_and_load_roundtrip(settings, vectors, tmp_path):
    items, queries, _ = vectors
    index = build_index(items, settings)
    index.save(tmp_path / "index")
    header = json.loads((tmp_path / "index" / "index.json").read_text())
    assert (header["backend"], header["dim"], header["num_items"]) == (settings.backend, D, M)
    assert header["fingerprint"] == vectors_fingerprint(items)
    loaded = load_index(tmp_path / "index", expected_fingerprint=vectors_fingerprint(items))
    for a, b in zip(loaded.search(queries, 10, [[3]] * B), index.search(queries, 10, [[3]] * B), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no temporary folder left behind


@backends
def test_load_recomputes_the_fingerprint_from_the_stored_vectors(settings, vectors, tmp_path):
    # An index of other vectors whose index.json was edited to claim this model's fingerprint is refused.
    items, _, _ = vectors
    build_index(items * 2, settings).save(tmp_path / "other")
    header_path = tmp_path / "other" / "index.json"
    header = json.loads(header_path.read_text())
    header["fingerprint"] = vectors_fingerprint(items)
    header_path.write_text(json.dumps(header))
    with pytest.raises(SinerecError, match="claims fingerprint .* but the stored vectors have"):
        load_index(tmp_path / "other", expected_fingerprint=vectors_fingerprint(items))


def mapped_files() -> set[str]:
    """Paths of the files this process has memory-mapped (Linux /proc/self/maps)."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    return {line.split(None, 5)[5] for line in lines if len(line.split(None, 5)) == 6}


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the memory maps of Linux /proc")
@pytest.mark.parametrize("backend, payload", [("torch", "vectors.npy"),
                                              pytest.param("flat", "index.faiss", marks=[needs_faiss])])
def test_saved_exact_index_is_memory_mapped_so_workers_share_it(backend, payload, vectors, tmp_path):
    items, queries, _ = vectors
    folder = build_index(items, IndexSettings(backend)).save(tmp_path / "index")
    assert str(folder / payload) not in mapped_files()
    loaded = load_index(folder)
    assert str((folder / payload).resolve()) in mapped_files()  # its pages are the file's, not a private copy
    ids, scores = loaded.search(queries, 10, [[3]] * B)
    want_ids, want_scores = build_index(items, IndexSettings(backend)).search(queries, 10, [[3]] * B)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)


@pytest.mark.parametrize("backend", [pytest.param(name, marks=[needs_faiss] if spec.needs_faiss else [])
                                     for name, spec in BACKENDS.items() if spec.exact])
def test_exact_backends_break_ties_to_the_smaller_id(backend):
    # 6 distinct vectors, each repeated: every score comes in a tie group, also at the k-th place.
    base = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))
    items = torch.cat([torch.zeros(1, 5), base.repeat(4, 1)])  # item i has vector base[(i - 1) % 6]
    queries = torch.randn(4, 5, generator=torch.Generator().manual_seed(3))
    for k in (1, 3, 7, 10):
        ids, _ = build_index(items, IndexSettings(backend)).search(queries, k)
        np.testing.assert_array_equal(ids, topk_items(queries, items, k)[0].numpy())


@needs_faiss
def test_failed_save_leaves_the_old_index_intact(vectors, tmp_path, monkeypatch):
    items, queries, _ = vectors
    old = build_index(items, IndexSettings("flat"))
    old.save(tmp_path / "index")
    new = build_index(items * 2, IndexSettings("torch"))

    def broken_write(folder):
        (folder / "vectors.npy").write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(new, "_write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        new.save(tmp_path / "index")
    assert [p.name for p in tmp_path.iterdir()] == ["index"]
    loaded = load_index(tmp_path / "index")
    assert loaded.settings.backend == "flat" and loaded.fingerprint == old.fingerprint
    np.testing.assert_array_equal(loaded.search(queries, 5)[0], old.search(queries, 5)[0])


def test_load_refuses_an_index_of_other_vectors(vectors, tmp_path):
    items, _, _ = vectors
    build_index(items, IndexSettings("torch")).save(tmp_path / "index")
    with pytest.raises(SinerecError, match="other item vectors"):
        load_index(tmp_path / "index", expected_fingerprint=vectors_fingerprint(items + 1))


def test_save_refuses_to_replace_a_folder_that_is_not_an_index(vectors, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("precious")
    with pytest.raises(SinerecError, match="not an index folder"):
        build_index(vectors[0], IndexSettings("torch")).save(tmp_path / "data")
    assert (tmp_path / "data" / "keep.txt").read_text() == "precious"


def test_merge_keeps_each_item_once_with_its_best_score():
    # query 0: interest 0 lists items 5, 2; interest 1 lists 2 (higher), 9, and padding
    ids = np.array([[[5, 2, -1], [2, 9, -1]]])
    scores = np.array([[[0.9, 0.4, -np.inf], [0.7, 0.1, -np.inf]]], dtype=np.float32)
    out_ids, out_scores, interest = merge_multi(ids, scores, 4)
    np.testing.assert_array_equal(out_ids, [[5, 2, 9, -1]])
    np.testing.assert_allclose(out_scores, [[0.9, 0.7, 0.1, -np.inf]])
    np.testing.assert_array_equal(interest, [[0, 1, 1, -1]])


def test_merge_breaks_score_ties_to_the_smaller_id():
    ids = np.array([[[8, 3], [4, 8]]])
    scores = np.array([[[0.5, 0.5], [0.5, 0.2]]], dtype=np.float32)
    out_ids, _, interest = merge_multi(ids, scores, 3)
    np.testing.assert_array_equal(out_ids, [[3, 4, 8]])
    np.testing.assert_array_equal(interest, [[0, 1, 0]])


def test_recall_at_k_by_hand():
    exact = np.array([[1, 2, 3, 4], [5, 6, -1, -1], [-1, -1, -1, -1]])
    approx = np.array([[2, 9, 1, 7], [6, 8, -1, -1], [3, -1, -1, -1]])
    # row 0: {1, 2} of {1, 2, 3, 4} -> 0.5; row 1: {6} of {5, 6} -> 0.5; row 2 has no truth: skipped
    assert recall_at_k(approx, exact, 4) == pytest.approx(0.5)
    # k = 3: row 0 {2, 9, 1} & {1, 2, 3} -> 2/3; row 1 {6, 8} & {5, 6} -> 1/2
    assert recall_at_k(approx, exact, 3) == pytest.approx((2 / 3 + 1 / 2) / 2)


@needs_faiss
def test_ivf_recall_grows_with_the_cells_visited():
    # 40 clusters of 30 items; queries near the items. Visiting every cell is exact.
    g = np.random.default_rng(4)
    centers = g.standard_normal((40, 16))
    items = np.concatenate([np.zeros((1, 16)), np.repeat(centers, 30, 0) + 0.3 * g.standard_normal((1200, 16))])
    queries = items[g.integers(1, 1201, 50)] + 0.3 * g.standard_normal((50, 16))
    exact = build_index(items, IndexSettings("flat")).search(queries, 20)[0]
    ivf = build_index(items, IndexSettings("ivf", nlist=40, nprobe=1))
    recalls = [recall_at_k(ivf.with_search_settings(nprobe=p).search(queries, 20)[0], exact, 20) for p in (1, 4, 40)]
    assert recalls[0] <= recalls[1] <= recalls[2] == 1.0 and recalls[0] < 1.0, recalls


def test_exact_is_the_evaluators_ranking_with_or_without_faiss(vectors, monkeypatch):
    import sinerec.retrieval.faiss_index as faiss_index

    for available in (True, False):
        monkeypatch.setattr(faiss_index, "faiss_available", lambda available=available: available)
        index = build_index(vectors[0], IndexSettings("exact"))
        assert index.settings.backend == "torch" and type(index).__name__ == "TorchIndex"
        want = topk_items(vectors[1], vectors[0], 5)[0].numpy()
        np.testing.assert_array_equal(index.search(vectors[1], 5)[0], want)


def test_settings_errors_name_the_key_and_value():
    with pytest.raises(ConfigError, match=r"index.backend.*'annoy'"):
        IndexSettings("annoy")
    with pytest.raises(ConfigError, match=r"index.nprobe.*0"):
        IndexSettings("ivf", nprobe=0)


# --- a new backend is one class plus one table entry ----------------------------------------------------


class NumpyIndex(ItemIndex):
    """A toy candidate backend: brute force in numpy, saved as vectors.npy."""

    def __init__(self, item_vectors, settings, fingerprint):
        super().__init__(settings, item_vectors.shape[1], item_vectors.shape[0] - 1, fingerprint)
        self.item_vectors = item_vectors

    def _raw_search(self, queries, n):
        scores = queries @ self.item_vectors[1:].T  # (B, M)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        return top + 1, np.take_along_axis(scores, top, 1)

    def _write(self, folder):
        np.save(folder / "vectors.npy", self.item_vectors)

    def stored_items(self):
        return self.item_vectors[1:]

    @classmethod
    def load(cls, folder, settings, fingerprint):
        return cls(np.load(folder / "vectors.npy"), settings, fingerprint)


SHARED_SUITE = (test_search_equals_brute_force_topk, test_exclusion_equals_offline_evaluator,
                test_padding_row_is_never_returned, test_k_beyond_the_catalogue_is_padded,
                test_multi_vector_search_is_max_over_interests, test_save_and_load_roundtrip,
                test_load_recomputes_the_fingerprint_from_the_stored_vectors)


@pytest.fixture
def toy_backend():
    register_backend(BackendSpec("toy", "numpy brute force", NumpyIndex, NumpyIndex.load, exact=True,
                                 settings=("seed",)))
    yield BACKENDS["toy"]
    del BACKENDS["toy"]


def test_a_registered_backend_reaches_the_cli_build_load_and_the_shared_suite(toy_backend, vectors, tmp_path,
                                                                             capsys):
    parser = build_parser()
    assert parser.parse_args(["index", "build", "--run", "RUN", "--backend", "toy"]).backend == "toy"
    with pytest.raises(SystemExit):
        parser.parse_args(["recommend", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "{exact,torch,flat,ivf,hnsw,factory,toy}" in shown and "toy: numpy brute force" in shown
    assert "--seed" not in shown  # only the fields marked for the command line become flags
    index = build_index(vectors[0], IndexSettings("toy", seed=3))
    assert isinstance(index, NumpyIndex) and index.settings.describe() == {"backend": "toy", "seed": 3}
    loaded = load_index(index.save(tmp_path / "toy"))
    assert isinstance(loaded, NumpyIndex) and loaded.fingerprint == vectors_fingerprint(vectors[0])
    cases = {case.id: case.values[0] for case in backend_cases()}
    assert cases["toy"] == IndexSettings("toy")
    for shared_test in SHARED_SUITE:
        arguments = {"settings": cases["toy"], "vectors": vectors, "tmp_path": tmp_path / shared_test.__name__}
        shared_test(**{name: arguments[name] for name in shared_test.__code__.co_varnames[
            :shared_test.__code__.co_argcount]})


def test_the_shared_suite_is_every_backend_test():
    shared = {name for name, value in globals().items() if name.startswith("test_")
              and any(m.name == "parametrize" and m.args[0] == "settings" for m in getattr(value, "pytestmark", []))}
    assert shared == {t.__name__ for t in SHARED_SUITE}


def test_registering_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_backend(BackendSpec("exact", "", NumpyIndex, NumpyIndex.load, exact=True))



def test_load_names_the_folder_for_a_torn_or_foreign_index(vectors, tmp_path):
    items, _, _ = vectors
    build_index(items, IndexSettings("torch")).save(tmp_path / "index")
    header = json.loads((tmp_path / "index" / "index.json").read_text())
    (tmp_path / "index" / "index.json").write_text(json.dumps({**header, "format": "sinerec-index/1"}))
    with pytest.raises(SinerecError, match=r"unknown index format 'sinerec-index/1'.*sinerec index build"):
        load_index(tmp_path / "index")
    (tmp_path / "index" / "index.json").write_text(json.dumps({**header, "num_items": "many"}))
    with pytest.raises(SinerecError, match=r"index.json: 'num_items' should be a int, got 'many'"):
        load_index(tmp_path / "index")
    (tmp_path / "index" / "index.json").write_text('{"format": "sinerec-ind')
    with pytest.raises(SinerecError, match=r"index.json: not readable JSON"):
        load_index(tmp_path / "index")
    (tmp_path / "index" / "index.json").write_text(json.dumps(header))
    (tmp_path / "index" / "vectors.npy").write_bytes(b"\x93NUMPY torn")
    with pytest.raises(SinerecError, match=r"the stored index cannot be read \(ValueError"):
        load_index(tmp_path / "index")
