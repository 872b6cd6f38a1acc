"""Commands over a trained run's vectors: ``export``, ``recommend``, ``serve`` and ``index build``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sinerec.cli.common import (
    RUN_HELP,
    add_index_args,
    bounded_int,
    index_settings,
    non_negative_int,
    positive_float,
    positive_int,
    run_index,
)
from sinerec.ids import split_ids


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="write item vectors and per-user vectors, interests and concepts")
    p.add_argument("--run", required=True, help=RUN_HELP)
    p.add_argument("--out", help="output folder (default RUN/export)")
    p.add_argument("--format", choices=["npz", "parquet"], default="npz", help="file format (default npz)")
    p.add_argument("--batch-size", type=positive_int, default=512, help="users per model call")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("recommend", help="top k for a known user or a history of item ids, explained",
                       epilog="examples:\n  sinerec recommend --run RUN --user 42 --k 5\n"
                              "  sinerec recommend --run RUN --history 1,2,3 --backend hnsw")
    p.add_argument("--run", required=True, help=RUN_HELP)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="original id of a user of the run's data (their whole sequence)")
    who.add_argument("--history", help="comma-separated original item ids, oldest first")
    p.add_argument("--k", type=bounded_int(1), default=10,
                   help="number of items (default 10; above the catalogue size: every item)")
    p.add_argument("--exclude", default="", help="comma-separated item ids never to recommend")
    p.add_argument("--include-seen", action="store_true", help="allow items of the history")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_index_args(p)
    p.set_defaults(handler=cmd_recommend)

    p = sub.add_parser("serve", help="HTTP API: /recommend, /recommend/batch, /items/{id}/similar, /health",
                       epilog="examples:\n  sinerec serve --run RUN --port 8000\n"
                              "  sinerec serve --run RUN --index RUN/index-hnsw --host 0.0.0.0")
    p.add_argument("--run", required=True, help=RUN_HELP)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=bounded_int(1, 65535), default=8000, help="TCP port (default 8000)")
    p.add_argument("--threads", type=bounded_int(1), default=1, help="torch and Faiss threads per request (default 1)")
    p.add_argument("--max-concurrency", type=bounded_int(1), help="requests computed at once (default: CPU cores)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug", "trace"],
                   help="uvicorn log level (default warning)")
    g = p.add_argument_group("limits per request (stated in the OpenAPI schema; 413 or 422 beyond them)")
    g.add_argument("--max-body-bytes", type=bounded_int(1), default=1 << 20,
                   help="larger bodies get 413 (default 1 MiB)")
    g.add_argument("--max-history", type=bounded_int(1), default=1000, help="longest accepted history (default 1000)")
    g.add_argument("--max-k", type=bounded_int(1), default=1000, help="largest accepted k (default 1000)")
    g.add_argument("--max-batch", type=bounded_int(1), default=256, help="most requests per batch call (default 256)")
    g.add_argument("--max-batch-k", type=bounded_int(1), default=6400,
                   help="largest sum of k over a batch call (default 6400: 64 requests with k = 100)")
    g = p.add_argument_group("connections")
    g.add_argument("--read-timeout", type=positive_float, default=10.0,
                   help="seconds for a request to arrive whole, else the connection is closed (default 10)")
    g.add_argument("--keep-alive", type=bounded_int(1), default=5,
                   help="seconds an idle connection stays open (default 5)")
    g.add_argument("--max-connections", type=bounded_int(1), default=256,
                   help="open connections before new requests get 503 (default 256)")
    g = p.add_argument_group("exposure")
    g.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name to answer besides the loopback names and --host (repeatable; '*': any). "
                        "Needed behind a proxy or a DNS name; other Host headers get 400")
    g.add_argument("--explorer", action=argparse.BooleanOptionalAction, default=True,
                   help="serve the explorer page and its /api routes (default on)")
    g.add_argument("--expose-users", action=argparse.BooleanOptionalAction, default=None,
                   help="serve /api/users/... (training users' whole histories); default: on only when --host "
                        "is a loopback address")
    g = p.add_argument_group("deployment")
    g.add_argument("--workers", type=bounded_int(1), default=1,
                   help="server processes (default 1); > 1 runs the app factory sinerec.serve:create_app_from_env "
                        "in each, sharing a saved --index torch/flat memory-mapped")
    g.add_argument("--no-metrics", dest="metrics", action="store_false",
                   help="do not serve Prometheus metrics at /metrics (served by default)")
    g.add_argument("--access-log", action="store_true",
                   help="log one line per request (method, path, status, ms) on the sinerec.access logger")
    add_index_args(p)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("index", help="nearest-neighbour indexes over a run's item vectors")
    p.set_defaults(handler=None, group=p)
    isub = p.add_subparsers(dest="index_command")
    b = isub.add_parser("build", help="build, measure recall@k against exact, and save an index folder")
    b.add_argument("--run", required=True, help=RUN_HELP)
    b.add_argument("--out", help="index folder (default RUN/index-BACKEND)")
    b.add_argument("--recall-k", type=positive_int, default=50, help="k of the reported recall (default 50)")
    b.add_argument("--recall-queries", type=non_negative_int, default=1000,
                   help="sampled users (0: skip; default 1000)")
    add_index_args(b, saved=False)
    b.set_defaults(handler=cmd_index_build)


def cmd_export(args: argparse.Namespace) -> int:
    from sinerec.export import export_run
    from sinerec.runs import load_run

    manifest = export_run(load_run(args.run), args.out, fmt=args.format, batch_size=args.batch_size)
    out = Path(args.out) if args.out else Path(args.run) / "export"
    print(f"exported {manifest['num_items']:,} items and {manifest['num_users']:,} users "
          f"(D={manifest['dim']}, K={manifest['num_interests']}) to {out} [{manifest['seconds']}s]")
    for name in (*manifest["files"].values(), "export.json"):
        print(f"  {out / name}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    import dataclasses

    from sinerec.recommend import Recommender
    from sinerec.runs import load_run

    run = load_run(args.run)
    recommender = Recommender(run, run_index(args, run))
    history = recommender.user_history(args.user) if args.user is not None else split_ids(args.history)
    rec = recommender.recommend(history, k=args.k, exclude=split_ids(args.exclude), exclude_seen=not args.include_seen)
    if args.json:
        print(json.dumps(dataclasses.asdict(rec), default=str))
        return 0
    print(format_recommendation(rec, len(history)))
    return 0


def format_recommendation(rec: Any, history_length: int) -> str:
    """A recommendation as text: the explanation (SINE) then one line per item."""
    lines = [f"history: {history_length} items, the model saw the last {rec.history_used}; "
             f"{rec.excluded} excluded from the ranking"]
    e = rec.explanation
    if e is not None:
        lines.append("interests (k: concept, gate, weight e in the user vector):")
        for k, (concept, gate, weight) in enumerate(zip(e.concept_ids, e.gates, e.aggregation, strict=True)):
            lines.append(f"  {k}: concept {concept:<4} gate {gate:.3f}  e {weight:.3f}")
    lines.append(f"{'rank':>4}  {'item':>10}  {'score':>9}  {'interest':>8}  title [categories]")
    for rank, item in enumerate(rec.items, 1):
        interest = "-" if item.interest is None else (
            f"{item.interest}" + (f"/c{item.concept}" if item.concept is not None else ""))
        cats = f" [{'|'.join(item.categories)}]" if item.categories else ""
        lines.append(f"{rank:>4}  {item.item_id!s:>10}  {item.score:>9.4f}  {interest:>8}  {item.title or ''}{cats}")
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    from sinerec.serve import serve

    serve(args.run, host=args.host, port=args.port, index_path=args.index, settings=index_settings(args),
          nprobe=args.nprobe, ef_search=args.ef_search, threads=args.threads, log_level=args.log_level,
          allowed_hosts=args.allowed_host, expose_users=args.expose_users, read_timeout=args.read_timeout,
          keep_alive=args.keep_alive, max_connections=args.max_connections, explorer=args.explorer,
          max_body_bytes=args.max_body_bytes, max_history=args.max_history, max_k=args.max_k,
          max_batch=args.max_batch, max_batch_k=args.max_batch_k, max_concurrency=args.max_concurrency,
          workers=args.workers, metrics=args.metrics, access_log=args.access_log)
    return 0


def cmd_index_build(args: argparse.Namespace) -> int:
    from sinerec.recommend import index_recall
    from sinerec.retrieval import build_index
    from sinerec.runs import load_run

    run = load_run(args.run)
    t0 = time.perf_counter()
    index = build_index(run.model.item_embeddings().detach(), index_settings(args))
    seconds = time.perf_counter() - t0
    out = Path(args.out) if args.out else Path(args.run) / f"index-{index.settings.backend}"
    index.save(out)
    print(f"built {index.settings.describe()} over {index.num_items:,} items (D={index.dim}) in {seconds:.1f}s "
          f"-> {out}")
    if args.recall_queries > 0:
        r = index_recall(run, index, k=args.recall_k, num_queries=args.recall_queries)
        print(f"recall@{r['k']} against exact on {r['queries']} users' histories: {r['recall']:.4f}")
    return 0
