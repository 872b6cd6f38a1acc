"""The test helpers' own logic: a missing shared dataset skips on a developer's machine and fails under CI."""

from __future__ import annotations

import pytest
from conftest import shared_dataset


@pytest.mark.parametrize("ci", [None, "", "0", "false"])
def test_a_missing_dataset_skips_outside_ci(tmp_path, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="not present"):
        shared_dataset("nope", root=tmp_path)


@pytest.mark.parametrize("ci", ["1", "true", "yes"])
def test_a_missing_dataset_fails_under_ci(tmp_path, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="CI is set and .*nope is not present"):
        shared_dataset("nope", root=tmp_path)


@pytest.mark.parametrize("ci", [None, "1"])
def test_a_present_dataset_is_returned(tmp_path, monkeypatch, ci):
    monkeypatch.delenv("CI", raising=False) if ci is None else monkeypatch.setenv("CI", ci)
    (tmp_path / "here").mkdir()
    assert shared_dataset("here", root=tmp_path) == tmp_path / "here"
