"""Load benchmark of ``sinerec serve``: latency and throughput on loopback, exact and approximate indexes.

Two catalogues:

- **ML-1M**: a trained SINE run (``--ml1m-run``, e.g. the paper-settings run of ``sinerec train --dataset
  ml-1m``); the request histories are the last 20 items of sampled real users.
- **synthetic-1m**: 1,000,000 items with D = 128 in ``--clusters`` Gaussian clusters, served by a *model
  stand-in*: a SINE (paper variant, L = 50, K = 4, T = 20) with seeded random weights whose item table is
  the synthetic catalogue. A user vector is therefore computed exactly as a trained SINE computes it
  (concept activation, intention assignment, attention, LayerNorm'd interests, aggregation) and the request
  path is the real one; only the weights are untrained. Each synthetic user draws 20 items from 3 clusters.

For each catalogue the script (1) builds and saves a flat (exact), an IVF and an HNSW index over the model's
item vectors; (2) sweeps the approximate search settings in-process, measuring recall@50 against the flat
index on the served queries (same histories, history excluded) and the single-query search time; (3) for
flat and for the cheapest IVF and HNSW setting with recall@50 >= ``--recall-target`` (0.96) it starts the real server
(``python -m sinerec serve --index ...``, 127.0.0.1) and runs a bounded load generator (threads with
keep-alive ``http.client`` connections, a fixed number of requests and a time cap per phase):

- ``single``: one ``POST /recommend`` (k = 50) at a time: p50 / p99 latency, requests per second;
- ``single-c4``: 4 concurrent clients: throughput under concurrency;
- ``batch32``: ``POST /recommend/batch`` with 32 histories per call, one at a time.

Each phase is repeated ``--repeats`` times; the report quotes the median of each statistic over repeats.
recall@50 of the served lists is also measured end to end, from the HTTP answers of the approximate server
against the flat server's answers for the same histories.

    PYTHONPATH=src .venv/bin/python benchmarks/serve_load.py --ml1m-run /tmp/explore/paper-b256 \\
        --work /tmp/serve-bench --out benchmarks/serve

Results: ``OUT/results.json`` (every number) and ``OUT/results.md`` (the tables). Latency is measured by the
client on the same 2-core machine as the server, so the client's own CPU time is part of the load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sinerec.data.preprocess import SequenceData  # noqa: E402
from sinerec.ids import plain_id  # noqa: E402
from sinerec.retrieval import IndexSettings, ItemIndex, build_index, load_index, recall_at_k  # noqa: E402
from sinerec.runs import LoadedRun, dataset_summary, load_run  # noqa: E402

K_SERVED = 50
MAX_LEN = 20


# ---------------------------------------------------------------------------------------------------------
# The synthetic catalogue and its model stand-in
# ---------------------------------------------------------------------------------------------------------


def make_synthetic_run(run_dir: Path, n_items: int, dim: int, clusters: int, n_users: int, seed: int) -> Path:
    """Write a run directory (as `sinerec train` would) for a random-weight SINE over a clustered catalogue."""
    from sinerec.config import load_config
    from sinerec.models.sine import SINE, SINEConfig
    from sinerec.runs import save_data
    from sinerec.storage import save_torch, write_json

    if (run_dir / "model.pt").exists():
        return run_dir
    rng = np.random.default_rng(seed)
    # Items: a cluster centre (norm ~1) plus noise of the same scale, times a log-normal "popularity" norm.
    centres = rng.standard_normal((clusters, dim), dtype=np.float32) / np.sqrt(dim)
    labels = rng.integers(0, clusters, n_items)
    noise = rng.standard_normal((n_items, dim), dtype=np.float32) / np.sqrt(dim)
    vectors = (centres[labels] + noise) * np.exp(0.2 * rng.standard_normal((n_items, 1))).astype(np.float32)
    # Users: 20 items drawn from 3 clusters each.
    by_cluster = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[by_cluster], np.arange(clusters + 1))
    sequences = []
    for _ in range(n_users):
        owned = rng.choice(clusters, 3, replace=False)
        picks = owned[rng.integers(0, 3, MAX_LEN)]
        sequences.append(by_cluster[starts[picks] + rng.integers(0, starts[picks + 1] - starts[picks])] + 1)
    item_ids = np.empty(n_items + 1, dtype=object)
    item_ids[0] = None
    item_ids[1:] = np.arange(1, n_items + 1) + 10_000_000  # original ids unlike the indices
    data = SequenceData(name=f"synthetic-{n_items // 1000}k", items=np.concatenate(sequences).astype(np.int64),
                        offsets=np.arange(n_users + 1, dtype=np.int64) * MAX_LEN,
                        user_ids=np.arange(n_users, dtype=np.int64), item_ids=item_ids,
                        item_categories=[()] + [(f"c{c}",) for c in labels],
                        steps={"synthetic": {"clusters": clusters, "seed": seed, "dim": dim}})
    config = load_config(overrides=["model=sine", f"model_params.dim={dim}", f"data.max_len={MAX_LEN}",
                                    f'data.dataset="{data.name}"'])
    torch.manual_seed(seed)
    model = SINE(n_items, MAX_LEN, SINEConfig(dim=dim))
    with torch.no_grad():
        model.item_embedding.weight[1:] = torch.from_numpy(vectors)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config.to_dict())
    write_json(run_dir / "data.json", {"dataset": dataset_summary(data), "protocol": {"name": "none"}})
    save_data(run_dir, data)
    save_torch(run_dir / "model.pt", model.state_dict())
    return run_dir


def request_histories(run: LoadedRun, n: int, seed: int) -> list[list[Any]]:
    """The last MAX_LEN items (original ids) of up to n sampled users."""
    d = run.data
    users = np.random.default_rng(seed).permutation(d.num_users)[:n]
    out = []
    for u in users:
        items = d.items[d.offsets[u]:d.offsets[u + 1]][-MAX_LEN:]
        out.append([plain_id(d.item_ids[i]) for i in items])
    return out


# ---------------------------------------------------------------------------------------------------------
# Indexes and the in-process sweep
# ---------------------------------------------------------------------------------------------------------


def saved_index(folder: Path, vectors: torch.Tensor, settings: IndexSettings) -> tuple[ItemIndex, float | None]:
    """Load ``folder`` if it holds an index with these build settings, else build and save it."""
    if (folder / "index.json").exists():
        header = json.loads((folder / "index.json").read_text())
        built = IndexSettings(**header["settings"])
        if built.describe() | {"nprobe": 0, "ef_search": 0} == settings.describe() | {"nprobe": 0, "ef_search": 0}:
            return load_index(folder), header.get("build_seconds")
    t0 = time.perf_counter()
    index = build_index(vectors, settings)
    seconds = time.perf_counter() - t0
    index.save(folder)
    header = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**header, "build_seconds": round(seconds, 1)}, indent=2))
    return index, round(seconds, 1)


def sweep(index: ItemIndex, exact_ids: np.ndarray, queries: np.ndarray, exclude: list[np.ndarray], key: str,
          values: list[int], timed: int) -> list[dict[str, Any]]:
    """recall@50 and single-query search time for each search setting ``key`` in ``values``."""
    rows = []
    for value in values:
        tuned = index.with_search_settings(**{key: value})
        ids = tuned.search(queries, K_SERVED, exclude)[0]
        times = []
        for q, ex in zip(queries[:timed], exclude[:timed], strict=True):
            t0 = time.perf_counter()
            tuned.search(q[None], K_SERVED, [ex])
            times.append(time.perf_counter() - t0)
        rows.append({key: value, "recall@50": round(recall_at_k(ids, exact_ids, K_SERVED), 4),
                     "search_ms_p50": round(1000 * float(np.median(times)), 3),
                     "search_ms_p99": round(1000 * float(np.quantile(times, 0.99)), 3)})
        print(f"    {key}={value}: recall@50 {rows[-1]['recall@50']:.4f}, search p50 "
              f"{rows[-1]['search_ms_p50']:.2f} ms", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------------
# The server and the load generator
# ---------------------------------------------------------------------------------------------------------


class Server:
    """``python -m sinerec serve`` in a child process on a free loopback port."""

    def __init__(self, run_dir: Path, index_dir: Path, search: dict[str, int], log: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "sinerec", "serve", "--run", str(run_dir), "--index", str(index_dir),
               "--port", str(self.port), "--max-body-bytes", str(8 << 20)]
        for key, value in search.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited, see {log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start, see {log}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def load_phase(port: int, path: str, bodies: list[bytes], requests: int, concurrency: int, time_cap: float,
               keep: bool = False) -> dict[str, Any]:
    """Send ``requests`` POSTs (cycling over ``bodies``) from ``concurrency`` threads, stopping at
    ``time_cap`` seconds; returns latency percentiles, requests/s, status counts (and answers if ``keep``)."""
    counter = itertools.count()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    answers: dict[int, bytes] = {}
    lock = threading.Lock()
    deadline = time.perf_counter() + time_cap

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        while True:
            i = next(counter)
            if i >= requests or time.perf_counter() > deadline:
                break
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if keep and i < len(bodies):
                    answers[i] = payload
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1000
    out = {"requests": len(latencies), "concurrency": concurrency, "seconds": round(wall, 2),
           "requests_per_s": round(len(latencies) / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
           "p99_ms": round(float(np.percentile(ms, 99)), 2), "mean_ms": round(float(ms.mean()), 2),
           "statuses": statuses}
    if keep:
        out["answers"] = answers
    return out


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("requests_per_s", "p50_ms", "p99_ms", "mean_ms")
    return {**{k: round(statistics.median(r[k] for r in runs), 2) for k in keys},
            "requests": [r["requests"] for r in runs], "repeats": [{k: r[k] for k in keys} for r in runs],
            "non_200": sum(n for r in runs for s, n in r["statuses"].items() if s != 200)}


def answer_ids(answers: dict[int, bytes]) -> dict[int, list[Any]]:
    return {i: [item["item_id"] for item in json.loads(a)["items"]] for i, a in answers.items()}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------------------------
# One catalogue
# ---------------------------------------------------------------------------------------------------------


def bench_catalogue(name: str, run_dir: Path, work: Path, plan: dict[str, Any], args: argparse.Namespace) -> dict:
    from sinerec.recommend import Recommender, left_padded

    print(f"== {name}: loading {run_dir}", flush=True)
    run = load_run(run_dir)
    vectors = run.model.item_embeddings().detach()
    histories = request_histories(run, args.queries, seed=0)
    # The served queries, computed by the server's own code path (one model call for all histories).
    rec = Recommender(run, build_index(vectors, IndexSettings("torch")))
    batch = [rec.item_indices(h) for h in histories]
    with torch.inference_mode():
        queries = run.model(torch.from_numpy(left_padded(batch, rec.max_len))).user.numpy()  # (Q, D)
    exclude = [np.unique(b) for b in batch]

    indexes: dict[str, Any] = {}
    flat, flat_seconds = saved_index(work / "index-flat", vectors, IndexSettings("flat"))
    exact_ids = flat.search(queries, K_SERVED, exclude)[0]
    indexes["flat"] = {"settings": flat.settings.describe(), "build_seconds": flat_seconds, "search": {}}
    for backend, build, key, values in plan["approximate"]:
        print(f"  building {backend} {build}", flush=True)
        index, seconds = saved_index(work / f"index-{backend}", vectors, IndexSettings(backend, **build))
        print(f"  {backend} built in {seconds} s; sweeping {key}", flush=True)
        rows = sweep(index, exact_ids, queries, exclude, key, values, timed=args.timed_queries)
        good = [r for r in rows if r["recall@50"] >= args.recall_target]
        chosen = good[0] if good else rows[-1]
        indexes[backend] = {"settings": index.settings.describe(), "build_seconds": seconds, "sweep": rows,
                            "search": {key: chosen[key]}}
    del rec, flat
    bodies = [json.dumps({"history": h, "k": K_SERVED}).encode() for h in histories]
    batch_bodies = [json.dumps({"requests": [{"history": h, "k": K_SERVED} for h in histories[i:i + 32]]}).encode()
                    for i in range(0, len(histories) - 31, 32)]
    served: dict[str, Any] = {}
    flat_answers: dict[int, list[Any]] = {}
    for backend, info in indexes.items():
        print(f"  serving {backend} {info['search']}", flush=True)
        server = Server(run_dir, work / f"index-{backend}", info["search"], work / f"server-{backend}.log")
        try:
            load_phase(server.port, "/recommend", bodies, 50, 1, 60)  # warm-up
            n_single = plan["single_requests"].get(backend, plan["single_requests"]["default"])
            phases: dict[str, list[dict[str, Any]]] = {"single": [], "single-c4": [], "batch32": []}
            loads = [load_average()]
            for _ in range(args.repeats):
                phases["single"].append(load_phase(server.port, "/recommend", bodies, n_single, 1, args.time_cap,
                                                   keep=True))
                phases["single-c4"].append(load_phase(server.port, "/recommend", bodies, n_single, 4,
                                                      args.time_cap))
                phases["batch32"].append(load_phase(server.port, "/recommend/batch", batch_bodies,
                                                    max(4, n_single // 32), 1, args.time_cap))
                loads.append(load_average())
        finally:
            server.stop()
        ids = answer_ids(phases["single"][0].pop("answers"))
        for p in phases["single"][1:]:
            p.pop("answers")
        if backend == "flat":
            flat_answers = ids
        common = sorted(set(ids) & set(flat_answers))
        http_recall = recall_at_k(np.array([_pad(ids[i]) for i in common]),
                                  np.array([_pad(flat_answers[i]) for i in common]), K_SERVED) if common else None
        served[backend] = {"search": info["search"], "phases": {k: median_of(v) for k, v in phases.items()},
                           "http_recall@50": None if http_recall is None else round(http_recall, 4),
                           "http_recall_queries": len(common), "load_average_1_5_15": loads}
        s = served[backend]["phases"]["single"]
        print(f"    single p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, {s['requests_per_s']} req/s; "
              f"recall@50 (HTTP) {served[backend]['http_recall@50']}", flush=True)
    d = run.data
    return {"catalogue": name, "run": str(run_dir), "model": run.config.model, "num_items": d.num_items,
            "dim": int(vectors.shape[1]), "dataset_fingerprint": d.fingerprint(), "queries": len(histories),
            "indexes": indexes, "served": served}


def _pad(ids: list[Any]) -> list[Any]:
    return (ids + [-1] * K_SERVED)[:K_SERVED]


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------


CATALOGUE_NOTES = {
    "ML-1M": "Histories: the last 20 items of 1000 sampled users.",
    "synthetic": ("Items: 2000 Gaussian cluster centres of norm ~1 plus noise of the same scale, times a "
                  "log-normal norm (sigma 0.2); histories: 20 items from 3 clusters per user. Model stand-in: "
                  "a SINE with seeded random weights whose item table is this catalogue, so the user vector "
                  "is computed as a trained SINE computes it (attention pooling, LayerNorm'd interests, "
                  "aggregation) over the history's item vectors."),
}


def verdict(cat: dict[str, Any]) -> str:
    """One line per approximate index: single-call p99 and recall@50 against the 20 ms / 0.95 goal."""
    parts = []
    for backend, s in cat["served"].items():
        if backend == "flat":
            continue
        p99 = s["phases"]["single"]["p99_ms"]
        chosen = next(r for r in cat["indexes"][backend]["sweep"] if all(r[k] == v for k, v in s["search"].items()))
        ok = p99 < 20 and chosen["recall@50"] >= 0.95
        parts.append(f"{backend} {s['search']}: single-call p99 {p99} ms, recall@50 {chosen['recall@50']} "
                     f"(in-process, {cat['queries']} queries) -> {'meets' if ok else 'misses'} p99 < 20 ms with "
                     "recall@50 >= 0.95")
    return "Goal check: " + "; ".join(parts) + "."


def write_report(doc: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    m = doc["machine"]
    lines = ["# `sinerec serve` under load", "",
             f"Measured {doc['date']} on {m['cpus']} CPU cores ({m['platform']}), no GPU, torch {m['torch']}, "
             f"Faiss {m['faiss']}; server `--threads 1`, one request computed per core at a time. The machine "
             f"was shared with other jobs (load average 1/5/15 min before the run: {doc['load_before']}; each "
             "served configuration lists its own below). Client and server share the 2 cores, loopback only.",
             "", "Command:", "", "```bash", doc["command"], "```", "",
             f"Every statistic is the median over {doc['repeats']} repeats. k = {K_SERVED}, history of 20 items, "
             "history excluded. `single`: one `POST /recommend` at a time; `single-c4`: 4 concurrent clients; "
             "`batch32`: `POST /recommend/batch` with 32 histories per call (latency per call; requests/s in "
             "calls, x32 histories). recall@50: against the flat (exact) index on the same queries, in-process "
             "(sweep) and end to end from the HTTP answers.", ""]
    for cat in doc["catalogues"]:
        lines += [f"## {cat['catalogue']}: {cat['num_items']:,} items, D = {cat['dim']}", "",
                  f"Run `{cat['run']}` ({cat['model']}), dataset fingerprint `{cat['dataset_fingerprint']}`, "
                  f"{cat['queries']} request histories. {CATALOGUE_NOTES.get(cat['catalogue'][:9], '')}", "",
                  "| index | search settings | build s | single p50 ms | single p99 ms | single req/s | c4 req/s "
                  "| c4 p99 ms | batch32 p50 ms | batch32 p99 ms | batch32 calls/s | recall@50 (HTTP) | non-200 "
                  "| load avg |", "|" + "---|" * 14]
        for backend, s in cat["served"].items():
            ph = s["phases"]
            info = cat["indexes"][backend]
            build = {k: v for k, v in info["settings"].items() if k not in ("backend", "nprobe", "ef_search")}
            non200 = sum(p["non_200"] for p in ph.values())
            label = f"{backend} {build}" if build else backend
            lines.append(
                f"| {label} | {s['search'] or '-'} | {info['build_seconds']} | "
                f"{ph['single']['p50_ms']} | **{ph['single']['p99_ms']}** | {ph['single']['requests_per_s']} | "
                f"{ph['single-c4']['requests_per_s']} | {ph['single-c4']['p99_ms']} | {ph['batch32']['p50_ms']} | "
                f"{ph['batch32']['p99_ms']} | {ph['batch32']['requests_per_s']} | "
                f"{s['http_recall@50'] if backend != 'flat' else 1.0} ({s['http_recall_queries']} q) | {non200} | "
                f"{s['load_average_1_5_15'][-1][0]} |")
        lines += ["", "Recall / speed trade-off (in-process, single-query search time, no HTTP):", "",
                  "| index | setting | recall@50 | search p50 ms | search p99 ms |", "|---|---|---|---|---|"]
        for backend, info in cat["indexes"].items():
            for row in info.get("sweep", []):
                key = next(k for k in row if k in ("nprobe", "ef_search"))
                lines.append(f"| {backend} | {key}={row[key]} | {row['recall@50']} | {row['search_ms_p50']} | "
                             f"{row['search_ms_p99']} |")
        lines += ["", verdict(cat), ""]
    lines += [doc["notes"], "", "Build times are those of each index's first build (indexes are cached in `--work` and "
              "reused when their build settings match; search settings are applied at load).", ""]
    (out / "results.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ml1m-run", help="a trained SINE run on ML-1M (skipped when absent)")
    parser.add_argument("--work", default="/tmp/serve-bench", help="indexes, the synthetic run, server logs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "serve"), help="results.json, results.md")
    parser.add_argument("--only", choices=["ml1m", "synthetic"], help="one catalogue only")
    parser.add_argument("--items", type=int, default=1_000_000, help="synthetic catalogue size")
    parser.add_argument("--clusters", type=int, default=2000, help="synthetic clusters")
    parser.add_argument("--queries", type=int, default=1000, help="request histories per catalogue")
    parser.add_argument("--timed-queries", type=int, default=200, help="queries timed in the sweep")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--time-cap", type=float, default=90.0, help="seconds per load phase at most")
    parser.add_argument("--report-only", action="store_true", help="rewrite OUT/results.md from results.json")
    parser.add_argument("--recall-target", type=float, default=0.96,
                        help="serve the cheapest swept setting with at least this recall@50 (default 0.96: a "
                             "margin over the required 0.95 for the sampling error of 1000 queries)")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads((Path(args.out) / "results.json").read_text()), Path(args.out))
        return 0
    # A terminated benchmark still stops its server child (the `finally` in bench_catalogue runs).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import faiss

    work = Path(args.work)
    doc: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "PYTHONPATH=src .venv/bin/python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "faiss": faiss.__version__, "gpu": None},
        "load_before": load_average(), "repeats": args.repeats, "k": K_SERVED, "catalogues": [],
        "recall_target": args.recall_target,
        "notes": ("HNSW's candidate list is never smaller than the fetch size (k plus the excluded history "
                  "items), so ef_search values below about 70 behave as 70 here."),
    }
    torch.set_num_threads(2)
    if args.only in (None, "ml1m") and args.ml1m_run:
        plan = {"approximate": [("ivf", {"nlist": 64}, "nprobe", [2, 4, 8, 16, 24, 32]),
                                ("hnsw", {"hnsw_m": 32, "ef_construction": 200}, "ef_search", [70, 100, 200, 400])],
                "single_requests": {"default": 1000}}
        doc["catalogues"].append(bench_catalogue("ML-1M", Path(args.ml1m_run), work / "ml1m", plan, args))
        write_report(doc, Path(args.out))
    if args.only in (None, "synthetic"):
        run_dir = make_synthetic_run(work / "synthetic-run", args.items, 128, args.clusters, 2000, seed=0)
        plan = {"approximate": [("ivf", {"nlist": 1024, "train_size": 65_536}, "nprobe", [4, 8, 16, 32, 64]),
                                ("hnsw", {"hnsw_m": 32, "ef_construction": 80}, "ef_search", [70, 200, 400, 600, 800])],
                "single_requests": {"default": 1000, "flat": 200}}
        doc["catalogues"].append(bench_catalogue(f"synthetic-{args.items // 1000}k", run_dir,
                                                 work / "synthetic", plan, args))
    doc["load_after"] = load_average()
    write_report(doc, Path(args.out))
    print(f"wrote {Path(args.out) / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
