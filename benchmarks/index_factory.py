"""Faiss index-factory indexes against flat (exact) search on a clustered synthetic catalogue (issue 11, item 6).

Items: the generator of ``benchmarks/serve_load.py`` (a cluster centre plus noise of the same scale, times a
log-normal norm), ``--items`` x ``--dim``; queries: a random item plus noise. For flat and each
``--factory`` string the script builds the index (``train_size`` vectors sampled for training), saves it,
loads it in a fresh process (memory-mapped as ``sinerec serve`` loads it) and measures there: recall@50
against flat (history-free queries), per-query search latency at batch 1 (p50 / p99 over ``--queries``),
and the process's resident memory after loading and searching (RSS, of which file-backed = the mapped
index). Build time and index file size are measured in the building process.

    PYTHONPATH=src .venv/bin/python benchmarks/index_factory.py --items 1000000 --dim 64 \\
        --factory "IVF4096,PQ32" --factory "OPQ16,IVF4096,PQ16" --work /tmp/index-bench --out benchmarks/indexes
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sinerec.retrieval import IndexSettings, build_index, load_index, recall_at_k  # noqa: E402


def catalogue(n_items: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """(M + 1, D) float32 item vectors, row 0 padding: serve_load.py's clustered generator."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32) / np.sqrt(dim)
    labels = rng.integers(0, clusters, n_items)
    noise = rng.standard_normal((n_items, dim), dtype=np.float32) / np.sqrt(dim)
    vectors = (centres[labels] + noise) * np.exp(0.2 * rng.standard_normal((n_items, 1))).astype(np.float32)
    return np.concatenate([np.zeros((1, dim), np.float32), vectors])


def queries_for(items: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    picks = items[rng.integers(1, len(items), n)]
    return (picks + rng.standard_normal(picks.shape).astype(np.float32) / np.sqrt(items.shape[1])).astype(np.float32)


def rss_kib() -> dict[str, int]:
    """VmRSS and its file-backed part (RssFile) of this process, in KiB (Linux)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "RssFile", "RssAnon") if key in fields}


def measure_loaded(folder: str, queries_path: str, exact_path: str, k: int) -> dict[str, Any]:
    """In a fresh process: load (mapped), search one query at a time, recall@k against the exact lists."""
    before = rss_kib()
    index = load_index(folder)
    loaded = rss_kib()
    queries, exact = np.load(queries_path), np.load(exact_path)
    index.search(queries[:10], k)  # warm-up
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        ids, _ = index.search(q[None], k)
        times.append(time.perf_counter() - start)
        found.append(ids[0])
    ms = np.array(times) * 1e3
    return {"recall_at_k": recall_at_k(np.stack(found), exact, k), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "rss_before_load_kib": before, "rss_loaded_kib": loaded,
            "rss_after_search_kib": rss_kib()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--factory", action="append", default=None, help="repeatable (default the two of issue 11)")
    p.add_argument("--nprobe", type=int, default=64)
    p.add_argument("--train-size", type=int, default=262_144)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)  # internal: FOLDER QUERIES EXACT K
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure_loaded(*args.measure[:3], int(args.measure[3]))))
        return
    strings = args.factory or ["IVF4096,PQ32", "OPQ16,IVF4096,PQ16"]
    args.work.mkdir(parents=True, exist_ok=True)
    items = catalogue(args.items, args.dim, args.clusters, args.seed)
    queries = queries_for(items, args.queries, args.seed)
    np.save(args.work / "queries.npy", queries)
    rows = []
    cases = [("flat", IndexSettings("flat"))] + [
        (s, IndexSettings("factory", factory=s, nprobe=args.nprobe, train_size=args.train_size, seed=args.seed))
        for s in strings]
    for name, settings in cases:
        start = time.perf_counter()
        index = build_index(items, settings)
        build_s = time.perf_counter() - start
        folder = index.save(args.work / name.replace(",", "_"))
        del index
        if name == "flat":
            exact = load_index(folder).search(queries, args.k)[0]
            np.save(args.work / "exact.npy", exact)
        out = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--out", str(args.out),
                              "--measure", str(folder), str(args.work / "queries.npy"),
                              str(args.work / "exact.npy"), str(args.k)],
                             check=True, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        row = {"index": name, "settings": settings.describe(), "build_s": build_s,
               "file_bytes": (folder / "index.faiss").stat().st_size, **measured}
        print(json.dumps(row), flush=True)
        rows.append(row)
    write(args, rows)


def write(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
            "cpus": os.cpu_count(), "items": args.items, "dim": args.dim, "clusters": args.clusters,
            "queries": args.queries, "k": args.k, "command": " ".join(sys.argv)}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# Faiss index-factory indexes, {args.items:,} items x D {args.dim}", "",
             f"{meta['date']}, {meta['machine']}, {meta['cpus']} CPUs (shared with other sessions' jobs: "
             "timings are upper bounds). Command:", "", f"    {meta['command']}", "",
             f"| index | build s | recall@{args.k} | p50 ms | p99 ms | file MB | RSS loaded MB (file-backed) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        rss = r["rss_after_search_kib"]
        lines.append(f"| {r['index']} | {r['build_s']:.1f} | {r['recall_at_k']:.3f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['file_bytes'] / 1e6:.1f} | {rss['VmRSS'] / 1024:.0f} "
                     f"({rss.get('RssFile', 0) / 1024:.0f}) |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
