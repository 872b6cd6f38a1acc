"""``run_benchmark``: the plan (``plan``) run by the runner (``runner``) and reported (``report``).

Every run goes through the training job of ``sinerec train`` (``sinerec.job.train_run``); only the model and
its settings change. Output folder:

    OUT/data/                 the prepared data, read and filtered once, shared by every run
    OUT/runs/MODEL-seedS/     one ``sinerec train`` run directory per (model, seed), plus benchmark.json
    OUT/runs/MODEL-seedS.log  its log (epoch lines; errors)
    OUT/results.json|csv|md   mean and spread over seeds per model (``sinerec.benchmark.report``)
    OUT/chart.png             grouped bars with error bars

Running the same command again picks up where an interrupted benchmark stopped (see ``runner``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sinerec.benchmark import report
from sinerec.benchmark.plan import RunSpec, check_same_data, model_config, run_name
from sinerec.benchmark.runner import copy_finished, finished_record, run_all, write_shared_data
from sinerec.config import Config
from sinerec.errors import ConfigError
from sinerec.models import MODELS
from sinerec.pipeline import Prepared, prepare

__all__ = ["BenchmarkResult", "run_benchmark"]

Log = Callable[[str], None]
logger = logging.getLogger("sinerec")


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
                  isolate: bool = True, quick: bool = False, sort_by: str = "NDCG@10", order: str = "seed",
                  reuse: Sequence[str | Path] = (), report_only: bool = False, command: str | None = None,
                  log: Log = logger.info) -> BenchmarkResult:
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
        quick: one short epoch per run (``plan.QUICK``), to smoke-test a command.
        sort_by: test metric (mean over seeds) that orders the table, best first.
        order: which runs go first: ``"seed"`` (every model with the first seed, then the next seed: the
            whole table appears early, one seed deep) or ``"model"`` (every seed of a model before the next
            model: each row is complete, with its spread, as soon as it appears; for long benchmarks that
            take several sittings).
        reuse: output folders of other benchmarks; a run not finished here that one of them finished with the
            very same settings, data and split is copied in (its record says ``reused_from``) instead of being
            trained again, e.g. the runs a same-embedding-size table shares with the main table.
        report_only: train nothing: write the tables from the runs already finished in ``out_dir`` (and those
            ``reuse`` copies in), the others listed as not run yet; e.g. the whole table while invocations
            with other ``models`` are still training into the same folder. An error if none is finished.
        command: the command line to record in the results.
        log: receives progress lines.
    Returns:
        BenchmarkResult; ``results.json``, ``results.csv``, ``results.md`` and ``chart.png`` are in ``out_dir``.
    """
    models = list(models or MODELS)
    seeds = list(seeds)
    if not models or not seeds:
        raise ConfigError("benchmark: needs at least one model and one seed")
    if len(set(models)) != len(models) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"benchmark: models and seeds must not repeat, got {models} and {seeds}")
    if order not in ("seed", "model"):
        raise ConfigError(f"benchmark: order must be 'seed' or 'model', got {order!r}")
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

    configs = {s: first if s == seeds[0] else configs_for(s) for s in seeds}
    pairs = [(m, s) for s in seeds for m in models] if order == "seed" else [(m, s) for m in models for s in seeds]
    specs = [RunSpec(m, s, configs[s][m], out_dir / "runs" / run_name(m, s)) for m, s in pairs]
    header = report.header(models, seeds, prepared, first, command, sort_by, isolate, jobs)
    records = {s.run_dir.name: r for s in specs if (r := finished_record(s, prepared)) is not None}
    if records:
        log(f"{len(records)} of {len(specs)} runs already finished in {out_dir / 'runs'}: reused")
    sources = [Path(p) for p in reuse]
    for source in sources:
        if not (source / "runs").is_dir():
            raise ConfigError(f"benchmark: reuse: {source} is not a benchmark folder (it has no runs/)")
    copied = []
    for spec in specs if sources else []:
        if spec.run_dir.name not in records:
            record = copy_finished(spec, prepared, sources, log=logger.debug)
            if record is not None:
                records[spec.run_dir.name] = record
                copied.append(spec.run_dir.name)
    if copied:
        log(f"{len(copied)} finished runs with the same settings and data copied from "
            f"{', '.join(map(str, sources))}: {', '.join(copied)}")
    todo = [s for s in specs if s.run_dir.name not in records]
    if report_only and not records:
        raise ConfigError(f"benchmark: report only: no run of these models, seeds and settings has finished in "
                          f"{out_dir / 'runs'}: nothing to tabulate")
    before = _earlier_results(out_dir / "results.json", header) if records else None
    if before is not None:
        header["date"] = before["date"]  # when the reused runs were measured
    earlier = float(before.get("wall_seconds", 0.0)) if before is not None else 0.0
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

    if report_only:
        log(f"report only: {len(records)} of {len(specs)} runs finished, {len(todo)} listed as not run yet; "
            f"nothing trained")
    else:
        data_dir = write_shared_data(out_dir / "data", prepared) if isolate else None
        run_all(todo, prepared, data_dir, jobs, on_done)
    doc = report.document(header, records, specs, sort_by)
    # a resumed benchmark: the wall time of the invocations that finished before, plus this one's (a report
    # only adds none, and records none where no invocation has finished yet)
    if not report_only:
        doc["wall_seconds"] = round(earlier + time.perf_counter() - started, 1)
    elif before is not None and "wall_seconds" in before:
        doc["wall_seconds"] = before["wall_seconds"]
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
