"""The README's Python example runs verbatim: from a DataFrame to recommendations."""

from __future__ import annotations

import re
import shutil
from importlib import resources
from pathlib import Path

import torch

#: the file whose marked ```python block is the example
README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- readme-example"


def example_code() -> str:
    text = README.read_text()
    match = re.search(re.escape(MARKER) + r".*?```python\n(.*?)```", text, re.S)
    assert match, f"{README}: no ```python block after {MARKER}"
    return match.group(1)


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    ratings = Path(str(resources.files("sinerec") / "resources" / "ml-latest-small" / "ratings.csv.gz"))
    shutil.copy(ratings, tmp_path / "ratings.csv.gz")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    namespace: dict = {}
    try:
        exec(compile(example_code(), str(README), "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    run, top, same = namespace["run"], namespace["top"], namespace["same"]
    assert run.config.model == "sasrec" and run.data.num_users == 610
    assert list(top.columns) == ["user_id", "rank", "item_id", "score"] and len(top) == 30
    assert same.metrics == run.metrics and (tmp_path / "runs" / "readme" / "metrics.json").exists()
    printed = capsys.readouterr().out.splitlines()[-2:]  # the example's prints (a CLI test may have routed
    assert 0.0 <= float(printed[0]) <= 1.0 and len(eval(printed[1])) == 5  # the sinerec logger to stdout)
