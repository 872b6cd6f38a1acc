"""The results tables of README.md and benchmarks/baselines.md are generated from the committed results files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def renderer():
    spec = importlib.util.spec_from_file_location("render_readme", ROOT / "benchmarks" / "render_readme.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["render_readme"] = module
    spec.loader.exec_module(module)
    return module


def test_the_committed_tables_are_what_the_results_files_give(capsys):
    assert renderer().main(["--check"]) == 0, capsys.readouterr().out


def test_a_changed_cell_is_caught_and_rewritten(tmp_path, capsys):
    r = renderer()
    text = (ROOT / "README.md").read_text()
    assert text.count("<!-- table:") == 7
    drifted = tmp_path / "README.md"
    # one second of training time off, as the hand-copied tables drifted
    drifted.write_text(text.replace("| gru4rec | **26.13** ± 0.29", "| gru4rec | **26.14** ± 0.29", 1))
    assert drifted.read_text() != text
    assert r.main(["--check", str(drifted)]) == 1
    assert "+| gru4rec | **26.13** ± 0.29" in capsys.readouterr().out
    assert r.main([str(drifted)]) == 0
    assert drifted.read_text() == text


def test_the_headline_uses_the_sample_standard_deviation():
    r = renderer()
    table = r.sine_ml1m()
    # paper variant test HR@10 over seeds 23.709, 23.444, 23.427: sample sd 0.158 (the population sd is 0.129)
    line = next(line for line in table.splitlines() if line.startswith('| sinerec SINE, `variant = "paper"` ('))
    assert line.split(" | ")[1].replace("**", "") == "23.53 ± 0.16"  # bold only while it is the best row
    assert r.mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert r.mean_sd([5.0]) == (5.0, 0.0)


def test_an_unknown_marker_is_an_error(tmp_path):
    import pytest

    doc = tmp_path / "x.md"
    doc.write_text("<!-- table:nope -->\n| a |\n<!-- /table -->\n")
    with pytest.raises(SystemExit, match="nope"):
        renderer().main([str(doc)])


def test_converged_tables_show_what_has_finished_and_what_has_not(tmp_path, monkeypatch):
    import json

    r = renderer()
    monkeypatch.setattr(r, "BENCH", tmp_path)
    folder = tmp_path / "converged" / "ml1m-loo"
    folder.mkdir(parents=True)

    def summary(n, ndcg, sd, epochs, best, seconds):
        metric = {"mean": ndcg, "std": sd}
        return {"n_seeds": n, "test": {m: metric for m in r.FOUR}, "epochs": {"mean": epochs},
                "best_epoch": {"mean": best}, "train_seconds": {"mean": seconds}}

    doc = {"sort_by": "NDCG@10", "ranking": ["sasrec", "sine"],
           "summary": {"sasrec": summary(1, 0.15, 0.0, 20, 17, 600.0), "sine": summary(3, 0.14, 0.004, 11.0, 8.0, 90)},
           "versus": {"relative": {"sasrec": {"NDCG@10": 0.15 / 0.14 - 1}},
                      "beaten_by": {"NDCG@10": [{"model": "sasrec", "relative": 0.0714, "within_spread": True}]}},
           "runs": [{"model": "sasrec", "seed": 0, "train_seconds": 600.0},
                    *[{"model": "sine", "seed": s, "train_seconds": 90.0} for s in range(3)]],
           "pending": ["sasrec-seed1", "sasrec-seed2", "comirec-sa-seed0"], "failed": []}
    ranked = {m: {"mean": 0.07, "std": 0.002} for m in r.FOUR}
    doc["summary"]["sine"]["test_history_ranked"] = {**ranked, "n_seeds": 2}  # one run recorded before it existed
    (folder / "results.json").write_text(json.dumps(doc))
    lines = r.converged().splitlines()
    # the models the paper lists, scored as its official code does, beside its Table 1 (ML-1M)
    assert ("| sine | 2 | 7.00 ± 0.20 | 7.00 ± 0.20 | 7.00 ± 0.20 | 7.00 ± 0.20 | 16.34 / 7.06 / 45.79 / 13.50 "
            "|") in lines
    assert not any(line.startswith("| sasrec | 1 | 7") for line in lines)  # sasrec has no history-ranked record
    assert lines[0] == "**ML-1M, `loo`, history excluded** (`benchmarks/converged/ml1m-loo/`):"
    # one seed: no spread shown; three: mean ± sample sd; the gap to SINE and whether the seeds can tell it
    assert ("| sasrec | 1 | **15.00** | **15.00** | **15.00** | **15.00** | 20 (17) | +7.1% (within spread) "
            "| 10m 00s |") in lines
    assert "| sine | 3 | 14.00 ± 0.40 | 14.00 ± 0.40 | 14.00 ± 0.40 | 14.00 ± 0.40 | 11 (8) | - | 1m 30s |" in lines
    assert ("4 of 7 runs finished, trained for 14m 30s in all (every sitting's epochs); not finished yet: "
            "sasrec (seed 1, 2); comirec-sa (seed 0).") in lines
    assert "**Amazon Beauty, ComiRec's protocol**: not started yet." in lines
    # runs copied from another table (--reuse) are counted as finished but not as time spent on this table
    doc["runs"][1:3] = [{"model": "sine", "seed": s, "train_seconds": 90.0,
                         "reused_from": f"benchmarks/converged/beauty-loo/runs/sine-seed{s}"} for s in range(2)]
    (folder / "results.json").write_text(json.dumps(doc))
    assert ("4 of 7 runs finished (2 of them the same runs as in `beauty-loo`, copied), trained for 11m 30s in all "
            "(every sitting's epochs); not finished yet: sasrec (seed 1, 2); comirec-sa (seed 0).") in \
        r.converged().splitlines()
    # a run that trained every epoch allowed without early stopping firing is marked: not known to be converged
    doc["runs"][0] = {"model": "sasrec", "seed": 0, "epochs": 20, "best_epoch": 17, "train_seconds": 600.0}
    doc["settings"] = {"sasrec": {"resolved": {"train": {"epochs": 20, "patience": 3}}}}
    (folder / "results.json").write_text(json.dumps(doc))
    assert "| 20 (17) |" in r.converged()  # stopped at the ceiling, but by early stopping (3 epochs past its best)
    doc["runs"][0]["best_epoch"] = 18
    (folder / "results.json").write_text(json.dumps(doc))
    lines = r.converged().splitlines()
    assert any("| 20 (17)† |" in line for line in lines)
    assert ("† reached its epoch ceiling with the best validation epoch among its last train.patience epochs, so "
            "early stopping did not end it and it may still have been improving: sasrec (seed 0).") in lines
