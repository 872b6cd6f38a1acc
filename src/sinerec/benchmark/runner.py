"""Running a benchmark's runs: child processes (``--jobs``), peak memory, resuming.

Resuming: a run whose ``benchmark.json`` exists is finished and is reused; an unfinished run continues from its
last epoch checkpoint (or starts over when it has none). A finished run of another benchmark folder with the very
same settings and data can be copied in instead of trained again (:func:`copy_finished`, ``--reuse``: the runs a
same-embedding-size table shares with the main one). A finished run with different settings is an error,
never mixed in. ``train.amp`` is compared by the precision it trains in
(:func:`sinerec.runtime.resolve_precision`): a run that trained in float32 under ``amp = "auto"`` (before
``auto`` meant bf16 for SINE on CPUs with bf16 in hardware) is reused by ``train.amp = "off"`` and never by a
bf16 run.

Peak memory: each run is a fresh Python process (``isolate=True``, the default) and its peak is the kernel's
high-water mark of that process's resident set (``VmHWM`` in /proc/self/status): interpreter, torch, data,
model, optimiser state, activations and evaluation together, what ``sinerec train`` would need. (Not
``ru_maxrss``: a child's ru_maxrss starts from its parent's resident set at fork.) In-process runs
(``isolate=False``, for notebooks and tests) reset the mark before each run instead (``/proc/self/clear_refs``),
so their peak also counts whatever the caller's process already holds. On CUDA the peak of allocated device
memory is recorded too.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sinerec import job, runs, runtime
from sinerec.benchmark.plan import RunSpec
from sinerec.config import Config, load_config
from sinerec.errors import SinerecError
from sinerec.evaluate import evaluate
from sinerec.job import RunStart
from sinerec.pipeline import Prepared, prepare
from sinerec.storage import write_json

__all__ = ["HISTORY_RANKED", "RECORD", "comparable", "copy_finished", "finished_record", "peak_rss_bytes",
           "reset_peak_rss", "run_all", "run_child", "run_one", "write_shared_data"]

#: The record of a finished benchmark run, beside its run directory's files.
RECORD = "benchmark.json"
#: The record's test metrics with the user's history ranked among the candidates (history not excluded), as
#: the official code of SINE and its baselines scores; recorded beside ``test`` when the protocol excludes it.
HISTORY_RANKED = "test_history_ranked"
#: Settings that do not change a run's result: a finished run is reused even if they differ.
NOT_RESULT_SETTINGS = ("threads", "progress")

Log = Callable[[str], None]


# ----------------------------------------------------------------------------------------- memory
def peak_rss_bytes() -> int | None:
    """High-water mark of this process's resident set, in bytes (Linux: VmHWM; else ru_maxrss)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes, others: KiB


def reset_peak_rss() -> bool:
    """Lower the high-water mark to the current resident set (Linux >= 4.0). False where unsupported.

    Freed memory that the allocator keeps would otherwise count: collect garbage and trim glibc's heap first.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------------- one run
def comparable(config: dict[str, Any], precision: str | None = None) -> dict[str, Any]:
    """A config dict without the settings that do not change results; with ``precision``, ``train.amp`` is
    replaced by the precision it trained (or will train) in."""
    out = json.loads(json.dumps(config))
    for key in NOT_RESULT_SETTINGS:
        out.get("train", {}).pop(key, None)
    if precision is not None:
        out.setdefault("train", {})["amp"] = precision
    return out


def _planned_precision(config: Config) -> str:
    """The precision a run of ``config`` trains in on this machine."""
    from sinerec.models import model_class
    from sinerec.train import resolve_device

    return runtime.resolve_precision(config.train.amp, resolve_device(config.train.device).type,
                                     model_class(config.model).cpu_bf16)


def _checkpoint_precision(run_dir: Path, train: dict[str, Any]) -> str:
    """The precision the unfinished run in ``run_dir`` trained in (its checkpoint's; older checkpoints, which
    did not record it, by the rule of their time)."""
    from sinerec.storage import load_torch
    from sinerec.train import resolve_device

    state = load_torch(run_dir / runs.CHECKPOINT)
    device = train["device"] if train["device"] != "auto" else str(resolve_device("auto"))
    return state.get("precision") or runtime.legacy_precision(train["amp"], device)


def run_one(config: Config, prepared: Prepared, run_dir: Path, log: Log = print) -> dict[str, Any]:
    """Train and evaluate one (model, seed) into ``run_dir`` with the training job; return its record (also
    ``benchmark.json``).

    An unfinished run with the same settings continues from its checkpoint; anything else in ``run_dir`` is
    removed first. The record holds valid/test metrics (fractions), epochs, training seconds, the median over
    epochs of examples per second, parameters and, on CUDA, peak device memory; the caller adds peak RSS. Under
    a protocol that excludes the history, the test metrics with the history ranked too (:data:`HISTORY_RANKED`).
    """
    import torch

    t0 = time.perf_counter()
    resume = False
    if (run_dir / runs.CHECKPOINT).exists() and (run_dir / runs.CONFIG).exists():
        saved = load_config(json.loads((run_dir / runs.CONFIG).read_text())).to_dict()
        if comparable(saved) == comparable(config.to_dict()):
            resume = True
        elif comparable(saved, "?") == comparable(config.to_dict(), "?"):  # only train.amp differs
            trained_in = _checkpoint_precision(run_dir, saved["train"])
            resume = trained_in == _planned_precision(config)  # the same precision, named another way
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    if resume:
        runs.write_run_header(run_dir, config, prepared)  # the same header, with this invocation's threads

    def reset_gpu_peak(start: RunStart) -> None:
        if start.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(start.device)

    run = job.train_run(config, run_dir, resume=resume, log=log, prepared=prepared, on_start=reset_gpu_peak)
    result, history, cuda = run.result, run.result.history, run.device.type == "cuda"
    ranked = None
    if prepared.split.protocol.excludes_history:  # the same weights scored as the papers' official code does
        ranked = evaluate(result.model, prepared.data, prepared.split.test, config.data.max_len, False,
                          config.eval, run.device).means
    return {
        "model": config.model, "seed": config.train.seed, "status": "done", "resumed": resume,
        "precision": result.precision,
        "valid": result.valid.means, "test": result.test.means,
        **({HISTORY_RANKED: ranked} if ranked is not None else {}),
        "epochs": len(history), "best_epoch": result.best_epoch,
        "train_seconds": round(result.train_seconds, 3),
        "seconds_per_epoch": statistics.median(h["seconds"] for h in history) if history else None,
        "examples_per_second": round(statistics.median(h["examples_per_second"] for h in history), 1)
        if history else None,
        "n_parameters": run.n_parameters,
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(run.device) if cuda else None,
        "dataset_fingerprint": prepared.data.fingerprint(), "split_fingerprint": prepared.split.fingerprint,
        "device": str(run.device), "wall_seconds": round(time.perf_counter() - t0, 3),
    }


def run_child(spec_json: str) -> int:
    """Entry point of an isolated run (a fresh ``python`` process): load the shared data, train, record.

    ``spec_json``: {"config": dict, "data_dir": str, "run_dir": str, "dataset_fingerprint": str,
    "split_fingerprint": str}. Writes ``RUN/benchmark.json`` with ``peak_rss_bytes`` of this process.
    """
    from sinerec.data.splits import make_split

    spec = json.loads(spec_json)
    config = load_config(spec["config"])
    if config.data.prepared is not None:  # a prepared dataset: every run maps the same files
        prepared = prepare(config)
    else:
        data = runs.load_data(spec["data_dir"])
        prepared = Prepared(data, make_split(data, config.protocol), 0.0)
    data, split = prepared.data, prepared.split
    if (data.fingerprint(), split.fingerprint) != (spec["dataset_fingerprint"], spec["split_fingerprint"]):
        source = config.data.prepared or spec["data_dir"]
        raise SinerecError(f"{source}: the shared data changed (fingerprints {data.fingerprint()}, "
                           f"{split.fingerprint}; expected {spec['dataset_fingerprint']}, "
                           f"{spec['split_fingerprint']})")
    run_dir = Path(spec["run_dir"])
    record = run_one(config, prepared, run_dir, log=lambda line: print(line, flush=True))
    record.update(peak_rss_bytes=peak_rss_bytes(), memory="process")
    write_json(run_dir / RECORD, record)
    return 0


# ----------------------------------------------------------------------------------------- scheduling
def finished_record(spec: RunSpec, prepared: Prepared) -> dict[str, Any] | None:
    """The record of a finished run of ``spec``, None if it has not finished; an error if it is another run."""
    path = spec.run_dir / RECORD
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    # read back through the settings tree: a run saved before a setting existed ran with its default
    saved = load_config(json.loads((spec.run_dir / runs.CONFIG).read_text())).to_dict()
    same_data = (record["dataset_fingerprint"], record["split_fingerprint"]) == \
        (prepared.data.fingerprint(), prepared.split.fingerprint)
    trained_in = _record_precision(record, saved)
    planned = _planned_precision(spec.config)
    if comparable(saved, trained_in) == comparable(spec.config.to_dict(), planned) and same_data:
        return record
    if same_data and comparable(saved, "?") == comparable(spec.config.to_dict(), "?"):
        amp = "off" if trained_in == "float32" else "bf16"
        raise SinerecError(f"{spec.run_dir} holds a finished run trained in {trained_in}, and train.amp = "
                           f"{spec.config.train.amp!r} trains in {planned} here; add --set train.amp={amp} to "
                           "reuse it, or use another output folder")
    raise SinerecError(f"{spec.run_dir} holds a finished run with other settings or data; use another "
                       "output folder, or delete that run to redo it")


def copy_finished(spec: RunSpec, prepared: Prepared, sources: Sequence[Path], log: Log | None = None
                  ) -> dict[str, Any] | None:
    """Copy a finished run of ``spec`` from another benchmark folder in ``sources`` (each ``OUT`` of an earlier
    benchmark; its ``runs/MODEL-seedS``) into ``spec.run_dir``; its record, with ``reused_from``, or None.

    Only a run with the same settings (:func:`comparable`, precision included) on the same data and split is
    copied; one with other settings is passed over, never mixed in. The copy replaces an unfinished run of
    ``spec`` (same settings, so the finished one is what it would have become) and leaves out the checkpoint."""
    for source in sources:
        candidate = Path(source) / "runs" / spec.run_dir.name
        if candidate.resolve() == spec.run_dir.resolve() or not (candidate / RECORD).exists():
            continue
        try:
            record = finished_record(RunSpec(spec.model, spec.seed, spec.config, candidate), prepared)
        except SinerecError as e:  # other settings or data: not this run
            if log is not None:
                log(f"not reused: {e}")
            continue
        if record is None or record.get("status") != "done":
            continue
        spec.run_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = spec.run_dir.with_name(spec.run_dir.name + ".copying")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(candidate, staging, ignore=shutil.ignore_patterns(runs.CHECKPOINT, runs.LOCK))
        record = {**record, "reused_from": str(candidate)}
        write_json(staging / RECORD, record)
        shutil.rmtree(spec.run_dir, ignore_errors=True)
        staging.rename(spec.run_dir)  # the run appears whole or not at all
        if (candidate_log := candidate.with_name(candidate.name + ".log")).exists():
            shutil.copyfile(candidate_log, spec.log_path)
        return record
    return None


def _record_precision(record: dict[str, Any], saved: dict[str, Any]) -> str:
    """The precision a finished run trained in: its record's or, for records made before they named it, the
    rule of their time."""
    return record.get("precision") or runtime.legacy_precision(saved["train"]["amp"], record.get("device"))


def _run_inline(spec: RunSpec, prepared: Prepared) -> dict[str, Any]:
    spec.run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(spec.log_path, "a") as fh:
        measured = reset_peak_rss()
        record = run_one(spec.config, prepared, spec.run_dir, log=lambda line: print(line, file=fh, flush=True))
    record.update(peak_rss_bytes=peak_rss_bytes() if measured else None, memory="in-process")
    write_json(spec.run_dir / RECORD, record)
    return record


_CHILD = "import sys; from sinerec.benchmark.runner import run_child; sys.exit(run_child(sys.argv[1]))"


def _start_child(spec: RunSpec, prepared: Prepared, data_dir: Path) -> subprocess.Popen:
    payload = json.dumps({"config": spec.config.to_dict(), "data_dir": str(data_dir), "run_dir": str(spec.run_dir),
                          "dataset_fingerprint": prepared.data.fingerprint(),
                          "split_fingerprint": prepared.split.fingerprint})
    env = dict(os.environ)
    # the child must import this very sinerec, however the parent found it
    package_root = str(Path(__file__).resolve().parents[2])  # src/sinerec/benchmark/runner.py -> src
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    if spec.config.train.threads:
        env["OMP_NUM_THREADS"] = str(spec.config.train.threads)
    runtime.prefer_passive_wait(env)  # the child imports torch at once; the user's OMP_WAIT_POLICY wins
    spec.run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(spec.log_path, "a") as log:
        return subprocess.Popen([sys.executable, "-c", _CHILD, payload], stdout=log, stderr=subprocess.STDOUT, env=env)


def _failure(spec: RunSpec, why: str) -> dict[str, Any]:
    tail = spec.log_path.read_text().splitlines()[-5:] if spec.log_path.exists() else []
    return {"model": spec.model, "seed": spec.seed, "status": "failed", "error": why, "log_tail": tail,
            "log": str(spec.log_path)}


def run_all(specs: list[RunSpec], prepared: Prepared, data_dir: Path | None, jobs: int,
            on_done: Callable[[RunSpec, dict[str, Any]], None]) -> None:
    """Run ``specs`` (``jobs`` processes at a time when ``data_dir`` is given, else inline, one by one),
    calling ``on_done(spec, record)`` as each finishes or fails. Ctrl-C stops the processes it started."""
    if data_dir is None:
        for spec in specs:
            try:
                record = _run_inline(spec, prepared)
            except Exception as exc:  # one broken run must not lose the others; its log has the traceback
                with open(spec.log_path, "a") as fh:
                    traceback.print_exc(file=fh)
                record = _failure(spec, f"{type(exc).__name__}: {exc}")
            on_done(spec, record)
        return
    pending = list(specs)
    running: list[tuple[RunSpec, subprocess.Popen]] = []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                spec = pending.pop(0)
                running.append((spec, _start_child(spec, prepared, data_dir)))
            time.sleep(0.2)
            for spec, proc in list(running):
                if proc.poll() is None:
                    continue
                running.remove((spec, proc))
                path = spec.run_dir / RECORD
                if proc.returncode == 0 and path.exists():
                    on_done(spec, json.loads(path.read_text()))
                else:
                    on_done(spec, _failure(spec, f"exit status {proc.returncode}"))
    finally:
        for _, proc in running:  # interrupted: stop only the runs this call started
            proc.terminate()
            proc.wait()


def write_shared_data(folder: Path, prepared: Prepared) -> Path:
    """The prepared data in run-directory form, once for every run (``sinerec.runs.load_data`` reads it back);
    kept when it already holds the same data."""
    info = folder / runs.DATA_INFO
    if info.exists() and json.loads(info.read_text())["dataset"]["fingerprint"] == prepared.data.fingerprint():
        return folder
    runs.write_run_data(folder, prepared)
    return folder
