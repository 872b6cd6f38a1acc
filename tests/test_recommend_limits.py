"""The Recommender against hostile library and CLI input: eval mode whatever the model's state, k capped at
the catalogue, ids that cannot be parsed (huge numerals, foreign digits) are unknown ids on one line."""

import json

import pytest
from conftest import train_run

from sinerec.cli import main
from sinerec.data.synthetic import planted_concepts
from sinerec.recommend import Recommender, UnknownItemError
from sinerec.runs import load_run

N_ITEMS = 21


@pytest.fixture(scope="module")
def sasrec_dir(tmp_path_factory):
    log = planted_concepts(n_users=30, n_items=N_ITEMS, n_concepts=3, length=9, seed=5)
    return train_run(tmp_path_factory.mktemp("limits") / "sasrec",
                     ["model=sasrec", "data.max_len=6", "model_params.dim=8", "model_params.dropout=0.5"], log)


def test_a_model_left_in_training_mode_serves_in_eval_mode(sasrec_dir):
    run = load_run(sasrec_dir)
    run.model.train()  # as a model fresh out of the trainer: dropout on
    recommender = Recommender(run)
    assert not run.model.training
    history = [int(i) for i in run.data.item_ids[1:6]]
    first, second = recommender.recommend(history, k=8), recommender.recommend(history, k=8)
    assert [(i.item_id, i.score) for i in first.items] == [(i.item_id, i.score) for i in second.items]


def test_k_above_the_catalogue_returns_every_item_without_a_huge_allocation(sasrec_dir):
    recommender = Recommender(load_run(sasrec_dir))
    history = [int(i) for i in recommender.data.item_ids[1:4]]
    rec = recommender.recommend(history, k=10**12)  # uncapped, the (1, k) result alone would be 12 TB
    assert recommender.num_items == N_ITEMS and len(rec.items) == N_ITEMS - 3
    assert {i.item_id for i in rec.items}.isdisjoint(history)
    assert len(recommender.similar(history[0], k=10**12)) == N_ITEMS - 1


def test_unparseable_ids_are_unknown_items(sasrec_dir):
    recommender = Recommender(load_run(sasrec_dir))
    known = int(recommender.data.item_ids[1])
    arabic = "".join(chr(0x0660 + int(c)) for c in str(known))  # the same number in Arabic-Indic digits
    for bad in ("9" * 5000, arabic, 10**5000):
        with pytest.raises(UnknownItemError) as caught:
            recommender.recommend([known, bad])
        assert caught.value.ids == [bad] and len(str(caught.value)) < 120


def test_cli_recommend_with_a_huge_numeral_prints_one_line(sasrec_dir, capsys):
    assert main(["recommend", "--run", str(sasrec_dir), "--history", "1," + "7" * 5000]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown item id '7777" in err and "(5,000 characters)" in err
    assert main(["recommend", "--run", str(sasrec_dir), "--user", "٣"]) == 2
    assert "unknown user id '٣'" in capsys.readouterr().err


def test_cli_recommend_k_above_the_catalogue(sasrec_dir, capsys):
    assert main(["recommend", "--run", str(sasrec_dir), "--history", "1,2", "--k", "1000000000000", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == N_ITEMS - 2
