"""Several models, one dataset and protocol, several seeds: ``sinerec benchmark``.

    plan     which runs (models x seeds) with which settings: shipped settings files, overrides
    runner   running them: one child process per run (``--jobs``), peak memory, resuming
    report   mean and spread over seeds: results.json, .csv, .md and the chart
    run      ``run_benchmark``: the plan, run and reported
"""

from sinerec.benchmark.plan import QUICK, RunSpec, model_config, shipped_config_path, split_overrides
from sinerec.benchmark.run import BenchmarkResult, run_benchmark
from sinerec.benchmark.runner import peak_rss_bytes, run_one

__all__ = ["QUICK", "BenchmarkResult", "RunSpec", "model_config", "peak_rss_bytes", "run_benchmark", "run_one",
           "shipped_config_path", "split_overrides"]
