"""Several models, one dataset and protocol, several seeds: ``sinerec benchmark``.

Every run goes through the same data, trainer and evaluator as ``sinerec train``; only the model and its
settings change. Each model starts from the settings file shipped with the package
(``sinerec/configs/MODEL.toml``, the paper's settings where the paper gives them), then the benchmark's data
and protocol options, then the caller's overrides: ``key=value`` for every model, ``MODEL:key=value`` for one.

    OUT/data/                 the prepared data, read and filtered once, shared by every run
    OUT/runs/MODEL-seedS/     one ``sinerec train`` run directory per (model, seed), plus benchmark.json
    OUT/runs/MODEL-seedS.log  its log (epoch lines; errors)
    OUT/results.json|csv|md   mean and spread over seeds per model (sinerec.benchmark_report)
    OUT/chart.png             grouped bars with error bars

Resuming: a run whose ``benchmark.json`` exists is finished and is reused; an unfinished run continues from its
last epoch checkpoint (or starts over when it has none). Running the same command again therefore picks up
where an interrupted benchmark stopped. A finished run with different settings is an error, never mixed in.

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
import dataclasses
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
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sinerec.config import Config, load_config
from sinerec.errors import ConfigError, SinerecError
from sinerec.models import MODELS
from sinerec.pipeline import Prepared, dataset_summary, metrics_document, prepare, write_run_header
from sinerec.runs import save_data
from sinerec.storage import write_json

#: Train settings of ``quick=True``: a smoke run of the whole pipeline, not a measurement.
QUICK = {"epochs": 1, "max_steps_per_epoch": 20}
#: Settings that do not change a run's result: a finished run is reused even if they differ.
_NOT_RESULT_SETTINGS = ("threads", "progress")

Log = Callable[[str], None]


# ----------------------------------------------------------------------------------------- configuration
def shipped_config_path(model: str) -> Path:
    """The settings file shipped for ``model`` (``sinerec/configs/MODEL.toml``)."""
    if model not in MODELS:
        raise ConfigError(f"benchmark: unknown model {model!r}; choose from {', '.join(MODELS)}")
    path = Path(str(resources.files("sinerec") / "configs" / f"{model}.toml"))
    if not path.is_file():
        raise ConfigError(f"benchmark: no shipped settings for {model!r} ({path} is missing)")
    return path


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``["train.lr=0.01", "sasrec:model_params.dropout=0.5"]`` -> (every model's, {model: its own}).

    A prefix before ``:`` in the key names a registered model; an unknown model name is an error, a known
    model that is not benchmarked is ignored (so one command line can carry settings for a full run).
    """
    common: list[str] = []
    scoped: dict[str, list[str]] = {}
    for text in overrides:
        key = text.split("=", 1)[0]
        if ":" in key:
            model, rest = text.split(":", 1)
            if model not in MODELS:
                raise ConfigError(f"override {text!r}: {model!r} is not a model ({', '.join(MODELS)})")
            scoped.setdefault(model, []).append(rest)
            key = rest.split("=", 1)[0]
        else:
            common.append(text)
        if key.strip() == "model":
            raise ConfigError(f"override {text!r}: choose the benchmark's models with `models`, not `model`")
    return common, scoped


def model_config(model: str, seed: int, data: dict[str, Any] | None = None,
                 protocol: str | dict[str, Any] | None = None, overrides: Sequence[str] = (), quick: bool = False,
                 threads: int | None = None) -> Config:
    """One run's settings: shipped file <- data/protocol/quick/threads <- overrides <- ``train.seed = seed``.

    ``data`` holds ``data`` section values (e.g. ``{"dataset": "ml-1m", "data_dir": "..."}``), ``protocol`` a
    protocol name or ``protocol`` section values; ``overrides`` may hold ``MODEL:key=value`` items (see
    :func:`split_overrides`).
    """
    common, scoped = split_overrides(overrides)
    values: dict[str, Any] = {"data": dict(data or {}), "train": {"progress": False}}
    if protocol is not None:
        values["protocol"] = {"name": protocol} if isinstance(protocol, str) else dict(protocol)
    if quick:
        values["train"].update(QUICK)
    if threads is not None:
        values["train"]["threads"] = threads
    forced = [f"train.seed={seed}", "train.progress=false"]
    return load_config(values, file=shipped_config_path(model), overrides=common + scoped.get(model, []) + forced)


def check_same_data(configs: dict[str, Config]) -> None:
    """Every model must see the same data and split: ``data`` (except ``max_len``) and ``protocol`` agree."""
    def data_key(c: Config) -> dict[str, Any]:
        d = c.to_dict()
        return {"data": {k: v for k, v in d["data"].items() if k != "max_len"}, "protocol": d["protocol"]}

    names = list(configs)
    ref = data_key(configs[names[0]])
    for name in names[1:]:
        other = data_key(configs[name])
        if other != ref:
            diff = [f"{sec}.{k}" for sec in ref for k in ref[sec] if ref[sec][k] != other[sec].get(k)]
            raise ConfigError(f"benchmark: {name} and {names[0]} would see different data or splits "
                              f"({', '.join(diff)}); data and protocol settings must be the same for every "
                              "model (only data.max_len may differ)")


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict without the settings that do not change results."""
    out = json.loads(json.dumps(config))
    for key in _NOT_RESULT_SETTINGS:
        out.get("train", {}).pop(key, None)
    return out


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
def run_name(model: str, seed: int) -> str:
    return f"{model}-seed{seed}"


def train_run(config: Config, prepared: Prepared, run_dir: Path, log: Log = print) -> dict[str, Any]:
    """Train and evaluate one (model, seed) into ``run_dir``; return its record (also ``benchmark.json``).

    An unfinished run with the same settings continues from its checkpoint; anything else in ``run_dir`` is
    removed first. The record holds valid/test metrics (fractions), epochs, training seconds, the median over
    epochs of examples per second, parameters and, on CUDA, peak device memory; the caller adds peak RSS.
    """
    import torch

    from sinerec.train import Trainer

    t0 = time.perf_counter()
    resume = (run_dir / "checkpoint.pt").exists() and (run_dir / "config.json").exists() and \
        _comparable(json.loads((run_dir / "config.json").read_text())) == _comparable(config.to_dict())
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    write_run_header(run_dir, config, prepared)  # rewrites the same header on resume
    trainer = Trainer(config, prepared.data, prepared.split, run_dir=run_dir, log=log)
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    result = trainer.fit(resume=resume)
    doc = metrics_document(config, prepared, result)
    write_json(run_dir / "metrics.json", doc)
    history = result.history
    return {
        "model": config.model, "seed": config.train.seed, "status": "done", "resumed": resume,
        "valid": result.valid.means, "test": result.test.means,
        "epochs": len(history), "best_epoch": result.best_epoch,
        "train_seconds": round(result.train_seconds, 3),
        "seconds_per_epoch": statistics.median(h["seconds"] for h in history) if history else None,
        "examples_per_second": round(statistics.median(h["examples_per_second"] for h in history), 1)
        if history else None,
        "n_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(trainer.device) if cuda else None,
        "dataset_fingerprint": prepared.data.fingerprint(), "split_fingerprint": prepared.split.fingerprint,
        "device": str(trainer.device), "wall_seconds": round(time.perf_counter() - t0, 3),
    }


def run_child(spec_json: str) -> int:
    """Entry point of an isolated run (a fresh ``python`` process): load the shared data, train, record.

    ``spec_json``: {"config": dict, "data_dir": str, "run_dir": str, "dataset_fingerprint": str,
    "split_fingerprint": str}. Writes ``RUN/benchmark.json`` with ``peak_rss_bytes`` of this process.
    """
    from sinerec.data.splits import make_split
    from sinerec.runs import load_data
    from sinerec.train import tune_malloc  # the same allocator settings as `sinerec train`

    tune_malloc()
    spec = json.loads(spec_json)
    config = load_config(spec["config"])
    data = load_data(spec["data_dir"])
    split = make_split(data, config.protocol)
    if (data.fingerprint(), split.fingerprint) != (spec["dataset_fingerprint"], spec["split_fingerprint"]):
        raise SinerecError(f"{spec['data_dir']}: the shared data changed (fingerprints {data.fingerprint()}, "
                           f"{split.fingerprint}; expected {spec['dataset_fingerprint']}, "
                           f"{spec['split_fingerprint']})")
    run_dir = Path(spec["run_dir"])
    record = train_run(config, Prepared(data, split, 0.0), run_dir, log=lambda line: print(line, flush=True))
    record.update(peak_rss_bytes=peak_rss_bytes(), memory="process")
    write_json(run_dir / "benchmark.json", record)
    return 0


# ----------------------------------------------------------------------------------------- scheduling
@dataclass
class RunSpec:
    model: str
    seed: int
    config: Config
    run_dir: Path

    @property
    def log_path(self) -> Path:
        return self.run_dir.with_name(self.run_dir.name + ".log")


def finished_record(spec: RunSpec, prepared: Prepared) -> dict[str, Any] | None:
    """The record of a finished run of ``spec``, None if it has not finished; an error if it is another run."""
    path = spec.run_dir / "benchmark.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    saved = json.loads((spec.run_dir / "config.json").read_text())
    same_data = (record["dataset_fingerprint"], record["split_fingerprint"]) == \
        (prepared.data.fingerprint(), prepared.split.fingerprint)
    if _comparable(saved) != _comparable(spec.config.to_dict()) or not same_data:
        raise SinerecError(f"{spec.run_dir} holds a finished run with other settings or data; use another "
                           "output folder, or delete that run to redo it")
    return record


def _run_inline(spec: RunSpec, prepared: Prepared) -> dict[str, Any]:
    spec.run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(spec.log_path, "a") as fh:
        measured = reset_peak_rss()
        record = train_run(spec.config, prepared, spec.run_dir, log=lambda line: print(line, file=fh, flush=True))
    record.update(peak_rss_bytes=peak_rss_bytes() if measured else None, memory="in-process")
    write_json(spec.run_dir / "benchmark.json", record)
    return record


_CHILD = "import sys; from sinerec.benchmark import run_child; sys.exit(run_child(sys.argv[1]))"


def _start_child(spec: RunSpec, prepared: Prepared, data_dir: Path) -> subprocess.Popen:
    payload = json.dumps({"config": spec.config.to_dict(), "data_dir": str(data_dir), "run_dir": str(spec.run_dir),
                          "dataset_fingerprint": prepared.data.fingerprint(),
                          "split_fingerprint": prepared.split.fingerprint})
    env = dict(os.environ)
    # the child must import this very sinerec, however the parent found it
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    if spec.config.train.threads:
        env["OMP_NUM_THREADS"] = str(spec.config.train.threads)
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
                path = spec.run_dir / "benchmark.json"
                if proc.returncode == 0 and path.exists():
                    on_done(spec, json.loads(path.read_text()))
                else:
                    on_done(spec, _failure(spec, f"exit status {proc.returncode}"))
    finally:
        for _, proc in running:  # interrupted: stop only the runs this call started
            proc.terminate()
            proc.wait()


# ----------------------------------------------------------------------------------------- the benchmark
@dataclass
class BenchmarkResult:
    out_dir: Path
    document: dict[str, Any]  # the content of results.json
    table: str  # the plain-text table printed on the terminal
    files: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return self.document["failed"]


def run_benchmark(models: Sequence[str] | None = None, *, out_dir: str | Path, seeds: Sequence[int] = (0, 1, 2),
                  data: dict[str, Any] | None = None, protocol: str | None = None, overrides: Sequence[str] = (),
                  prepared: Prepared | None = None, jobs: int = 1, threads: int | None = None,
                  isolate: bool = True, quick: bool = False, sort_by: str = "NDCG@10",
                  command: str | None = None, log: Log = print) -> BenchmarkResult:
    """Train every model in ``models`` (default: all registered) once per seed on one dataset and split.

    Args:
        models: model names (``sinerec.models.MODELS``).
        out_dir: output folder (see the module docstring); reusing it resumes.
        seeds: one run per seed per model (``train.seed``); the data and split are the same for all.
        data: ``data`` section values (dataset, data_dir, filters); ignored for reading when ``prepared``.
        protocol: ``loo`` or ``comirec`` (default: the config's, loo).
        overrides: ``key=value`` for every model, ``MODEL:key=value`` for one.
        prepared: data already read and split (e.g. synthetic); else read and split once here.
        jobs: runs at a time, each in its own process (``isolate`` only). When ``jobs > 1`` and ``threads`` is
            None, each run gets ``cpu_count // jobs`` torch threads.
        threads: torch threads per run (``train.threads``).
        isolate: one fresh process per run (peak memory per run); False trains in this process.
        quick: one short epoch per run (:data:`QUICK`), to smoke-test a command.
        sort_by: test metric (mean over seeds) that orders the table, best first.
        command: the command line to record in the results.
        log: receives progress lines.
    Returns:
        BenchmarkResult; ``results.json``, ``results.csv``, ``results.md`` and ``chart.png`` are in ``out_dir``.
    """
    from sinerec import benchmark_report as report

    models = list(models or MODELS)
    seeds = list(seeds)
    if not models or not seeds:
        raise ConfigError("benchmark: needs at least one model and one seed")
    if len(set(models)) != len(models) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"benchmark: models and seeds must not repeat, got {models} and {seeds}")
    if jobs < 1 or (jobs > 1 and not isolate):
        raise ConfigError(f"benchmark: jobs must be >= 1 (and 1 when not isolated), got {jobs}")
    if threads is None and jobs > 1:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    out_dir = Path(out_dir)
    data = dict(data or {})
    protocol_values: str | dict[str, Any] | None = protocol
    if prepared is not None:  # the settings describe the prepared data and split
        data.setdefault("dataset", prepared.data.name)
        if protocol is None:
            protocol_values = dataclasses.asdict(prepared.split.protocol)

    def configs_for(seed: int) -> dict[str, Config]:
        return {m: model_config(m, seed, data, protocol_values, overrides, quick, threads) for m in models}

    first = configs_for(seeds[0])
    check_same_data(first)
    report.check_sort_metric(sort_by, first[models[0]])
    if prepared is None:
        log("preparing the data once for every run ...")
        prepared = prepare(first[models[0]])
    elif prepared.split.protocol != first[models[0]].protocol:
        raise ConfigError(f"benchmark: the prepared split's protocol {prepared.split.protocol} differs from the "
                          f"settings' {first[models[0]].protocol}")
    d = prepared.data
    log(f"data: {d.name}: {d.num_users:,} users, {d.num_items:,} items, {d.num_interactions:,} interactions "
        f"(fingerprint {d.fingerprint()}); protocol {prepared.split.protocol.name} "
        f"(split {prepared.split.fingerprint}), {len(prepared.split.train):,} training examples")
    data_dir = _write_shared_data(out_dir / "data", prepared) if isolate else None

    specs = [RunSpec(m, s, cfg, out_dir / "runs" / run_name(m, s))
             for s in seeds for m, cfg in (first if s == seeds[0] else configs_for(s)).items()]
    header = report.header(models, seeds, prepared, first, command, sort_by, isolate, jobs)
    records = {s.run_dir.name: r for s in specs if (r := finished_record(s, prepared)) is not None}
    todo = [s for s in specs if s.run_dir.name not in records]
    if records:
        log(f"{len(records)} of {len(specs)} runs already finished in {out_dir / 'runs'}: reused")
    earlier = 0.0
    if records and (before := _earlier_results(out_dir / "results.json", header)) is not None:
        earlier = float(before.get("wall_seconds", 0.0))
        header["date"] = before["date"]  # when the reused runs were measured
    started = time.perf_counter()

    def on_done(spec: RunSpec, record: dict[str, Any]) -> None:
        records[spec.run_dir.name] = record
        done = sum(r["status"] == "done" for r in records.values())
        if record["status"] == "done":
            log(f"[{done}/{len(specs)}] {spec.model} seed {spec.seed}: test {sort_by} "
                f"{100 * record['test'][sort_by]:.2f}%, epochs {record['epochs']}, "
                f"{report.format_seconds(record['wall_seconds'])} ({spec.run_dir})")
        else:
            log(f"FAILED {spec.model} seed {spec.seed}: {record['error']}; see {record['log']}")
        report.write_tables(out_dir, report.document(header, records, specs, sort_by))  # progress so far

    run_all(todo, prepared, data_dir, jobs, on_done)
    doc = report.document(header, records, specs, sort_by)
    # a resumed benchmark: the wall time of the invocations that finished before, plus this one's
    doc["wall_seconds"] = round(earlier + time.perf_counter() - started, 1)
    files = report.write_tables(out_dir, doc)
    chart = report.write_chart(out_dir / "chart.png", doc)
    if chart is None:
        log('chart.png skipped: matplotlib is not installed (pip install "sinerec[bench]")')
    else:
        files.append(chart)
    return BenchmarkResult(out_dir, doc, report.format_table(doc, markdown=False), files)


def _earlier_results(path: Path, header: dict[str, Any]) -> dict[str, Any] | None:
    """The results.json an earlier invocation wrote in ``path`` for the same data and split, else None. Only a
    finished invocation records ``wall_seconds``: an interrupted one's time is not counted."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = all(doc.get(k, {}).get("fingerprint") == header[k]["fingerprint"] for k in ("dataset", "protocol"))
    return doc if same and "date" in doc else None


def _write_shared_data(folder: Path, prepared: Prepared) -> Path:
    """The prepared data in run-directory form (``sinerec.runs.load_data`` reads it back)."""
    info = folder / "data.json"
    if info.exists() and json.loads(info.read_text())["dataset"]["fingerprint"] == prepared.data.fingerprint():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    save_data(folder, prepared.data)
    write_json(info, {"dataset": dataset_summary(prepared.data), "protocol": prepared.split.summary()})
    return folder
