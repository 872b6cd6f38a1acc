"""``sinerec serve --workers N``: throughput, p99 latency and memory with 1, 2 and 4 worker processes.

Two parts, each against the real server (``python -m sinerec serve --workers N``, 127.0.0.1 only):

1. **Load** on a tiny *trained* SINE run (planted-concept synthetic log, one epoch) with a saved torch index:
   the settings 1, 2, 4 workers are measured *interleaved* (rounds 1, 2, 4, 1, 2, 4, ...) so that the load
   of other processes on this shared machine falls on all three alike; each phase sends a bounded number of
   ``POST /recommend`` (k = 50) from ``--concurrency`` keep-alive clients with a time cap (``load_phase`` of
   ``serve_load.py``). The report quotes medians over rounds and the ratios to one worker. After each phase
   ``/metrics`` is scraped: its request count, summed over workers, must equal what the client sent.
2. **Memory** on a larger catalogue (``--items``, a random-weight SINE stand-in of ``serve_load.py``, so
   that the index is tens of MB): 1 and 2 workers with a saved torch index (memory-mapped), a saved Faiss
   flat index (memory-mapped) and a flat index built in each worker (private). Per worker process, from
   ``/proc/PID/smaps_rollup``: RSS, PSS, USS (private pages); and from ``/proc/PID/smaps`` the RSS and PSS of
   the index file's mapping. Shared pages show as PSS = RSS / workers.

    PYTHONPATH=src .venv/bin/python benchmarks/serve_workers.py --out benchmarks/serve-workers

Results: ``OUT/results.json`` and ``OUT/results.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serve_load import load_average, load_phase, make_synthetic_run, request_histories  # noqa: E402

from sinerec.retrieval import IndexSettings, build_index  # noqa: E402
from sinerec.runs import load_run  # noqa: E402

WORKERS = (1, 2, 4)
K_SERVED = 50


class WorkerServer:
    """``python -m sinerec serve --workers N`` on a free loopback port, up once /health answers."""

    def __init__(self, run_dir: Path, workers: int, log: Path, index: Path | None = None,
                 backend: str = "exact") -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        cmd = [sys.executable, "-m", "sinerec", "serve", "--run", str(run_dir), "--port", str(self.port),
               "--workers", str(workers), "--max-body-bytes", str(8 << 20), "--backend", backend]
        if index is not None:
            cmd += ["--index", str(index)]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # serve makes a fresh one per server
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.workers = workers
        deadline = time.monotonic() + 300
        while len(self.worker_pids()) < workers or not self.healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited, see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start, see {log}")
            time.sleep(0.5)

    def healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        """The processes that serve: the server itself (1 worker) or its spawned workers."""
        if self.workers == 1:
            return [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        pids = []
        for pid in children:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:  # not multiprocessing's resource tracker
                pids.append(int(pid))
        return pids

    def scrape_total(self) -> float:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("sinerec_http_requests_total{") and 'route="/recommend"' in line)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def memory(pid: int, mapped: str | None) -> dict[str, float]:
    """MiB: rss, pss, uss (private clean + dirty) of the process; index_rss, index_pss of ``mapped``'s pages."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])  # kB
    out = {"rss": fields["Rss"] / 1024, "pss": fields["Pss"] / 1024,
           "uss": (fields["Private_Clean"] + fields["Private_Dirty"]) / 1024}
    if mapped:
        rss = pss = 0
        inside = False
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            head = line.split()
            if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:  # a mapping's header line
                inside = line.endswith(mapped)
            elif inside and head[0] == "Rss:":
                rss += int(head[1])
            elif inside and head[0] == "Pss:":
                pss += int(head[1])
        out.update(index_rss=rss / 1024, index_pss=pss / 1024)
    return {k: round(v, 1) for k, v in out.items()}


def tiny_trained_run(work: Path) -> Path:
    """One epoch of SINE on a planted-concept log (1,500 users, 2,000 items): a real trained run."""
    run_dir = work / "tiny-run"
    if (run_dir / "model.pt").exists():
        return run_dir
    from sinerec.config import load_config
    from sinerec.data.preprocess import preprocess
    from sinerec.data.splits import make_split
    from sinerec.data.synthetic import planted_concepts
    from sinerec.job import train_run
    from sinerec.pipeline import Prepared

    config = load_config(overrides=["model=sine", "data.max_len=20", "model_params.dim=64", "train.epochs=1",
                                    "train.batch_size=256", "train.progress=false", "train.threads=1"])
    data = preprocess(planted_concepts(n_users=1500, n_items=2000, n_concepts=20, length=30, seed=0))
    prepared = Prepared(data, make_split(data, config.protocol), 0.0)
    return train_run(config, run_dir, prepared=prepared, log=lambda *a: None).run_dir


def bench_load(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = tiny_trained_run(work)
    run = load_run(run_dir)
    index = build_index(run.model.item_embeddings().detach(), IndexSettings("torch")).save(work / "tiny-index")
    bodies = [json.dumps({"history": h, "k": K_SERVED}).encode() for h in request_histories(run, 500, seed=1)]
    phases: dict[int, list[dict[str, Any]]] = {n: [] for n in WORKERS}
    for round_ in range(args.rounds):
        for n in WORKERS:
            server = WorkerServer(run_dir, n, work / f"load-{n}-{round_}.log", index=index)
            try:
                load_phase(server.port, "/recommend", bodies, args.warmup, args.concurrency, args.time_cap)
                result = load_phase(server.port, "/recommend", bodies, args.requests, args.concurrency,
                                    args.time_cap)
                result["metrics_recommend_total"] = server.scrape_total()
                result["client_sent"] = args.warmup + result["requests"]
                result["memory"] = [memory(pid, "vectors.npy") for pid in server.worker_pids()]
                result["load_average"] = load_average()
            finally:
                server.stop()
            phases[n].append(result)
            print(f"round {round_} workers {n}: {result['requests_per_s']} req/s, p99 {result['p99_ms']} ms",
                  flush=True)
    summary = {}
    for n, runs in phases.items():
        summary[n] = {k: round(statistics.median(r[k] for r in runs), 2)
                      for k in ("requests_per_s", "p50_ms", "p99_ms")}
    for n in WORKERS:
        summary[n]["rps_ratio_to_1"] = round(summary[n]["requests_per_s"] / summary[1]["requests_per_s"], 2)
        summary[n]["p99_ratio_to_1"] = round(summary[n]["p99_ms"] / summary[1]["p99_ms"], 2)
    return {"run": {"model": "sine", "items": len(run.data.item_ids) - 1, "dim": 64, "trained_epochs": 1},
            "index": "torch (saved, memory-mapped)", "k": K_SERVED, "concurrency": args.concurrency,
            "requests_per_phase": args.requests, "warmup": args.warmup, "time_cap_s": args.time_cap,
            "rounds": args.rounds, "order": [n for _ in range(args.rounds) for n in WORKERS],
            "phases": {str(n): runs for n, runs in phases.items()},
            "median": {str(n): s for n, s in summary.items()}}


def bench_memory(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    run_dir = make_synthetic_run(work / "memory-run", args.items, 64, 200, 300, seed=0)
    vectors = load_run(run_dir).model.item_embeddings().detach()
    saved = {b: build_index(vectors, IndexSettings(b)).save(work / f"memory-index-{b}") for b in ("torch", "flat")}
    body = json.dumps({"history": request_histories(load_run(run_dir), 1, seed=0)[0], "k": K_SERVED}).encode()
    cases = [("torch saved (mmap)", saved["torch"], "exact", "vectors.npy"),
             ("flat saved (mmap)", saved["flat"], "exact", "index.faiss"),
             ("flat built per worker", None, "flat", None)]
    out = []
    for label, index, backend, mapped in cases:
        for n in (1, 2):
            server = WorkerServer(run_dir, n, work / f"memory-{n}.log", index=index, backend=backend)
            try:
                # Each worker searched its whole index once at start-up (sinerec.deploy.load_service); the
                # table shows each worker's index RSS, so a worker that had not would be visible.
                load_phase(server.port, "/recommend", [body], 120, 12, 60)
                procs = [memory(pid, mapped) for pid in server.worker_pids()]
            finally:
                server.stop()
            total = {k: round(sum(p[k] for p in procs), 1) for k in ("rss", "pss", "uss")}
            out.append({"index": label, "workers": n, "per_worker": procs, "total": total})
            print(f"memory {label} x{n}: {total}", flush=True)
    return out


def write_report(doc: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    load = doc["load"]
    lines = ["# `sinerec serve --workers N`: throughput, p99 and memory", "",
             f"- date: {doc['date']}" + (f" (load part: {doc['load_date']})" if "load_date" in doc else "")
             + f"; command: `{doc['command']}`",
             f"- machine: {doc['machine']['cpus']} CPU cores, {doc['machine']['platform']}, torch "
             f"{doc['machine']['torch']}; **shared** with other jobs while measuring (load average "
             f"{doc['load_before']} before, {doc['load_after']} after), so absolute numbers are noisy: the "
             "settings were measured interleaved and the medians and ratios are what to read.",
             "- client: the load generator of `serve_load.py` on the same machine (its CPU time is part of the "
             "load), loopback, keep-alive connections.", "",
             f"## Load: tiny trained SINE ({load['run']['items']:,} items, D={load['run']['dim']}), saved torch "
             f"index, k={load['k']}",
             "", f"{load['concurrency']} concurrent clients, {load['requests_per_phase']} requests per phase "
             f"(after {load['warmup']} warm-up), time cap {load['time_cap_s']} s, {load['rounds']} rounds in "
             f"the order {load['order']}.", "",
             "| workers | requests/s (median) | p50 ms | p99 ms | req/s vs 1 | p99 vs 1 | per round req/s |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    for n, s in load["median"].items():
        per_round = ", ".join(str(r["requests_per_s"]) for r in load["phases"][n])
        lines.append(f"| {n} | {s['requests_per_s']} | {s['p50_ms']} | {s['p99_ms']} | {s['rps_ratio_to_1']} | "
                     f"{s['p99_ratio_to_1']} | {per_round} |")
    checks = [(r["metrics_recommend_total"], r["client_sent"]) for runs in load["phases"].values() for r in runs]
    agree = all(a == b for a, b in checks)
    lines += ["", f"`/metrics` after each phase, summed over workers, equals the requests sent: {agree} "
                  f"({len(checks)} phases).", "",
              f"## Memory: {doc['memory_items']:,}-item stand-in catalogue, D=64 (index file "
              f"{doc['memory_items'] * 64 * 4 / 2**20:.0f} MiB)", "",
              "MiB, summed over the worker processes (the supervisor of N > 1 excluded); index RSS/PSS: the "
              "index file's mapping in each worker.", "",
              "| index | workers | RSS | PSS | USS (private) | index RSS per worker | index PSS per worker |",
              "|---|---:|---:|---:|---:|---|---|"]
    for m in doc["memory"]:
        idx_rss = ", ".join(str(p.get("index_rss", "-")) for p in m["per_worker"])
        idx_pss = ", ".join(str(p.get("index_pss", "-")) for p in m["per_worker"])
        t = m["total"]
        lines.append(f"| {m['index']} | {m['workers']} | {t['rss']} | {t['pss']} | {t['uss']} | {idx_rss} | "
                     f"{idx_pss} |")
    lines += ["", doc["reading"], ""]
    (out / "results.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/serve-workers", help="runs, indexes, server logs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "serve-workers"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400, help="requests per measured phase")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--time-cap", type=float, default=30.0, help="seconds per phase at most")
    parser.add_argument("--items", type=int, default=200_000, help="catalogue of the memory part")
    parser.add_argument("--reading", default="", help="the paragraph that reads the results (results.md)")
    parser.add_argument("--only", choices=["memory"], help="measure memory only, keeping OUT's load results")
    parser.add_argument("--report-only", action="store_true", help="rewrite results.md from results.json")
    args = parser.parse_args()
    out = Path(args.out)
    if args.report_only:
        doc = json.loads((out / "results.json").read_text())
        doc["reading"] = args.reading or doc.get("reading", "")
        write_report(doc, out)
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "PYTHONPATH=src .venv/bin/python benchmarks/serve_workers.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "shared_with_other_jobs": True},
        "load_before": load_average()}
    if args.only == "memory":  # keep the load part of an earlier run
        previous = json.loads((out / "results.json").read_text())
        doc["load"] = previous["load"]
        doc["load_date"] = previous.get("load_date", previous["date"])
    else:
        doc["load"] = bench_load(work, args)
    doc["memory_items"] = args.items
    doc["memory"] = bench_memory(work, args)
    doc["load_after"] = load_average()
    doc["reading"] = args.reading
    write_report(doc, out)
    print(f"wrote {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
