"""sinerec.runtime: the wait policy every entry point sets before torch, and the thread rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sinerec import job, runtime
from sinerec.config import load_config

SRC = str(Path(__file__).resolve().parents[1] / "src")

# the OMP_WAIT_POLICY a process has after importing an entry point: the console script's module, ``python -m
# sinerec`` (run as __main__, as `--version`) or the server's factory module
PROBE = """
import json, os, sys
sys.argv = ["sinerec", "--version"]
entry = {entry!r}
if entry == "cli":
    import sinerec.cli
elif entry == "main":
    import runpy
    try:
        runpy.run_module("sinerec", run_name="__main__")
    except SystemExit:
        pass
else:
    import sinerec.serve
print(json.dumps({{"policy": os.environ.get("OMP_WAIT_POLICY")}}))
"""


def probe(entry: str, **env: str) -> dict[str, str | None]:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", runtime.OPT_OUT_ENV)}
    base["PYTHONPATH"] = SRC
    out = subprocess.run([sys.executable, "-c", PROBE.format(entry=entry)], env={**base, **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.parametrize("entry", ["cli", "main", "serve"])
def test_entry_points_set_passive_wait_unless_the_user_did(entry: str) -> None:
    assert probe(entry) == {"policy": "PASSIVE"}
    assert probe(entry, OMP_WAIT_POLICY="ACTIVE") == {"policy": "ACTIVE"}
    assert probe(entry, SINEREC_PROCESS_DEFAULTS="0") == {"policy": None}


def test_the_cli_sets_the_policy_before_torch_is_imported() -> None:
    code = ("import sys, os; import sinerec.cli; "
            "print('torch' in sys.modules, os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": SRC},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "PASSIVE"]


def test_prefer_passive_wait_on_a_mapping() -> None:
    env: dict[str, str] = {}
    assert runtime.prefer_passive_wait(env) is True and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "active"}
    assert runtime.prefer_passive_wait(env) is False and env == {"OMP_WAIT_POLICY": "active"}
    for off in ("0", "false", "No", " off "):
        env = {runtime.OPT_OUT_ENV: off}
        assert runtime.prefer_passive_wait(env) is False and "OMP_WAIT_POLICY" not in env


@pytest.mark.parametrize(("cpus", "ceiling", "expected"), [
    (2, 2, 2), (1, 2, 1), (16, 8, 8), (4, 1, 1), (1, 4, 1), (0, 4, 1),
])
def test_choose_threads(cpus: int, ceiling: int, expected: int) -> None:
    assert runtime.choose_threads(cpus, ceiling) == expected


def test_user_set_threads() -> None:
    assert runtime.user_set_threads(3, {}) is True
    assert runtime.user_set_threads(None, {"OMP_NUM_THREADS": "2"}) is True
    assert runtime.user_set_threads(None, {"OMP_NUM_THREADS": ""}) is False
    assert runtime.user_set_threads(None, {}) is False


@pytest.fixture
def threads_state(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A fresh runtime thread record and a fake torch thread count; the real one restored after."""
    monkeypatch.setattr(runtime._Threads, "torch_default", None)
    monkeypatch.setattr(runtime._Threads, "last_set", None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(runtime.OPT_OUT_ENV, raising=False)
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 1)  # e.g. taskset -c 0
    state = {"n": 2}
    return state, (lambda: state["n"]), (lambda n: state.update(n=n))


def test_apply_default_threads_follows_the_rule_unless_the_user_chose(threads_state, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    state, get, put = threads_state
    assert runtime.apply_default_threads(None, get, put) == 1 and state["n"] == 1
    assert runtime.apply_default_threads(None, get, put) == 1  # its own earlier choice may be revised
    put(3)  # the process set torch's threads itself: left alone
    assert runtime.apply_default_threads(None, get, put) is None and state["n"] == 3
    put(1)
    assert runtime.apply_default_threads(4, get, put) is None and state["n"] == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert runtime.apply_default_threads(None, get, put) is None
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv(runtime.OPT_OUT_ENV, "0")
    assert runtime.apply_default_threads(None, get, put) is None and state["n"] == 1


def test_a_training_job_applies_the_rule_and_train_threads_wins(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    monkeypatch.setattr(runtime._Threads, "torch_default", 2)
    monkeypatch.setattr(runtime._Threads, "last_set", None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(runtime.OPT_OUT_ENV, raising=False)
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 1)  # e.g. taskset -c 0
    try:
        torch.set_num_threads(2)
        job.apply_process_settings(load_config({"model": "sine"}))
        assert torch.get_num_threads() == 1
        job.apply_process_settings(load_config({"model": "sine", "train": {"threads": 2}}))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_benchmark_children_get_passive_wait_unless_set() -> None:
    source = (Path(SRC) / "sinerec" / "benchmark" / "runner.py").read_text()
    assert "runtime.prefer_passive_wait(env)" in source
