"""`sinerec index build`, and a saved index used by `recommend --index` and `serve --index`."""

from __future__ import annotations

import json

import pytest
from conftest import serve_process, train_run

from sinerec.cli import main
from sinerec.data.synthetic import planted_concepts
from sinerec.retrieval import vectors_fingerprint
from sinerec.runs import load_run

TINY = ["data.max_len=6", "model_params.dim=12", "model_params.num_concepts=7", "model_params.num_interests=3"]


def _log():
    log = planted_concepts(n_users=41, n_items=30, n_concepts=5, length=9, seed=2)
    log.events["item"] = log.events["item"] * 3 + 50  # original ids unlike the indices
    log.items.index = log.items.index * 3 + 50
    return log


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    return (train_run(root / "a", TINY, _log()), train_run(root / "b", [*TINY, "train.seed=9"], _log()))


def listed_ids(out: str) -> list[int]:
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit() and "  item " in line]
    return [int(r[1]) for r in rows]


def recommend(capsys, *args: str) -> list[int]:
    capsys.readouterr()
    assert main(["recommend", *args]) == 0
    return listed_ids(capsys.readouterr().out)


@pytest.fixture(scope="module")
def index_dir(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "index-torch"
    assert main(["index", "build", "--run", str(runs[0]), "--backend", "torch", "--out", str(out),
                 "--recall-queries", "10", "--recall-k", "5"]) == 0
    return out


def test_index_build_writes_a_folder_with_the_run_vectors_fingerprint(runs, index_dir, capsys):
    header = json.loads((index_dir / "index.json").read_text())
    vectors = load_run(runs[0]).model.item_embeddings().detach().float()
    assert header["backend"] == "torch"
    assert header["fingerprint"] == vectors_fingerprint(vectors)
    assert (header["dim"], header["num_items"]) == (12, 30)


def test_recommend_with_a_saved_index_gives_the_built_index_list(runs, index_dir, capsys):
    run = str(runs[0])
    user = str(load_run(runs[0]).data.user_ids[5])
    plain = recommend(capsys, "--run", run, "--user", user, "--k", "6", "--backend", "torch")
    assert len(plain) == 6
    assert recommend(capsys, "--run", run, "--user", user, "--k", "6", "--index", str(index_dir)) == plain


def test_an_index_of_another_run_is_refused(runs, index_dir, capsys):
    user = str(load_run(runs[1]).data.user_ids[5])
    assert main(["recommend", "--run", str(runs[1]), "--user", user, "--index", str(index_dir)]) == 2
    err = capsys.readouterr().err
    assert "fingerprint" in err and "Traceback" not in err


@pytest.mark.slow
def test_serve_with_a_saved_index_answers_like_recommend(runs, index_dir, capsys):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    run = load_run(runs[0])
    user = str(run.data.user_ids[5])
    expected = recommend(capsys, "--run", str(runs[0]), "--user", user, "--k", "6", "--backend", "torch")
    history = [int(run.data.item_ids[i]) for i in run.data.items[run.data.offsets[5]:run.data.offsets[6]]]
    with serve_process(runs[0], "--index", str(index_dir)) as base:
        answer = httpx.post(base + "/recommend", json={"history": history, "k": 6}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert [int(item["item_id"]) for item in answer.json()["items"]] == expected
