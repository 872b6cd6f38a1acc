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
    assert text.count("<!-- table:") == 6
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
