"""The ``sinerec`` command line: thin wiring over library functions."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sinerec.errors import SinerecError

if TYPE_CHECKING:
    from sinerec.config import Config
    from sinerec.distributed import DistContext
    from sinerec.runs import LoadedRun


def _add_data_args(p: argparse.ArgumentParser) -> None:
    from sinerec.data.formats import FORMATS

    g = p.add_argument_group("data")
    g.add_argument("--dataset", help="built-in dataset name (see `sinerec datasets`) or a name for --path")
    g.add_argument("--data-dir", help="folder holding the dataset's files (instead of cache/download)")
    g.add_argument("--path", help="your own interaction file")
    g.add_argument("--format", choices=list(FORMATS), metavar="FORMAT",
                   help="format of --path (default table): "
                        + "; ".join(f"{spec.name}: {spec.description}" for spec in FORMATS.values()))
    g.add_argument("--skip-bad-lines", action="store_true", help="skip malformed rows with a warning")


def _data_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for opt, key in (("dataset", "data.dataset"), ("data_dir", "data.data_dir"), ("path", "data.path"),
                     ("format", "data.format")):
        value = getattr(args, opt, None)
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")
    if getattr(args, "skip_bad_lines", False):
        out.append("data.skip_bad_lines=true")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sinerec", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("train", help="train a model and evaluate it (default: SINE on ml-latest-small)")
    p.add_argument("--config", help="TOML, JSON or YAML configuration file")
    p.add_argument("--model", help="sine (default), mostpop, sasrec, gru4rec, ...")
    _add_data_args(p)
    p.add_argument("--protocol", choices=["loo", "comirec"], help="evaluation protocol (default loo)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, help="torch CPU threads (per process)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step (train.compile)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting, e.g. --set model_params.num_concepts=100 --set train.patience=5")
    p.add_argument("--out", help="run directory (default runs/MODEL-DATASET-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")

    p = sub.add_parser("data", help="inspect data")
    dsub = p.add_subparsers(dest="data_command")
    d = dsub.add_parser("describe", help="counts of a dataset (no filters unless --set data.* is given)")
    _add_data_args(d)
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d = dsub.add_parser("synth", help="write a Taobao-shaped CSV (user,item,category,behavior,timestamp) with "
                        "planted concepts, and FILE.items.csv (item,concept,category)")
    d.add_argument("--rows", type=int, required=True, help="number of events (lines)")
    d.add_argument("--items", type=int, required=True, help="catalogue size (power-law popularity)")
    d.add_argument("--users", type=int, required=True, help="number of users (several interests each)")
    d.add_argument("--concepts", type=int, default=1000, help="planted concepts (default 1000)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", required=True, help="FILE.csv or FILE.csv.gz (written atomically)")
    d.add_argument("--quiet", action="store_true", help="no progress lines")

    p = sub.add_parser("datasets", help="list the named datasets, their sizes and licences")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("explain", help="HTML report on a trained run: curves, concepts, NMI, users")
    p.add_argument("--run", required=True, help="run directory written by `sinerec train`")
    p.add_argument("--out", help="output folder (default RUN/explain)")
    p.add_argument("--users", type=int, default=6, help="number of sampled users to explain (default 6)")
    p.add_argument("--top", type=int, default=10, help="items listed per concept (default 10)")
    p.add_argument("--k", type=int, default=10, help="recommendations per explained user (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the user sample and the random NMI")
    p.add_argument("--repeats", type=int, default=20, help="random assignments for the chance-level NMI")
    p = sub.add_parser("export", help="write item vectors and per-user vectors, interests and concepts")
    p.add_argument("--run", required=True, help="run directory written by `sinerec train`")
    p.add_argument("--out", help="output folder (default RUN/export)")
    p.add_argument("--format", choices=["npz", "parquet"], default="npz", help="file format (default npz)")
    p.add_argument("--batch-size", type=int, default=512, help="users per model call")

    p = sub.add_parser("recommend", help="top k for a known user or a history of item ids, explained")
    p.add_argument("--run", required=True, help="run directory written by `sinerec train`")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="original id of a user of the run's data (their whole sequence)")
    who.add_argument("--history", help="comma-separated original item ids, oldest first")
    p.add_argument("--k", type=int, default=10, help="number of items (default 10)")
    p.add_argument("--exclude", default="", help="comma-separated item ids never to recommend")
    p.add_argument("--include-seen", action="store_true", help="allow items of the history")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_index_args(p)

    p = sub.add_parser("serve", help="HTTP API: /recommend, /recommend/batch, /items/{id}/similar, /health")
    p.add_argument("--run", required=True, help="run directory written by `sinerec train`")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=1, help="torch and Faiss threads per request (default 1)")
    p.add_argument("--max-concurrency", type=int, help="requests computed at once (default: CPU cores)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger bodies get 413 (default 1 MiB)")
    p.add_argument("--max-history", type=int, default=1000, help="longest accepted history (default 1000)")
    p.add_argument("--max-k", type=int, default=1000, help="largest accepted k (default 1000)")
    p.add_argument("--max-batch", type=int, default=256, help="most requests per batch call (default 256)")
    p.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    _add_index_args(p)

    p = sub.add_parser("index", help="nearest-neighbour indexes over a run's item vectors")
    isub = p.add_subparsers(dest="index_command")
    b = isub.add_parser("build", help="build, measure recall@k against exact, and save an index folder")
    b.add_argument("--run", required=True, help="run directory written by `sinerec train`")
    b.add_argument("--out", help="index folder (default RUN/index-BACKEND)")
    b.add_argument("--recall-k", type=int, default=50, help="k of the reported recall (default 50)")
    b.add_argument("--recall-queries", type=int, default=1000, help="sampled users (0: skip; default 1000)")
    _add_index_args(b, saved=False)

    p = sub.add_parser("benchmark", help="train several models x seeds on one dataset and split; compare them")
    p.add_argument("--models", help="comma-separated models (default: all registered)")
    _add_data_args(p)
    p.add_argument("--protocol", choices=["loo", "comirec"], default="loo", help="evaluation protocol (default loo)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run per model each (default 0,1,2)")
    p.add_argument("--out", help="output folder; rerunning the same command resumes it "
                                 "(default runs/benchmark-DATASET-PROTOCOL[-quick])")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="[MODEL:]KEY=VALUE",
                   help="a setting for every model, or for one with a MODEL: prefix, "
                        "e.g. --set data.min_user_count=5 --set sasrec:model_params.dropout=0.5")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process (default 1)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: cores / jobs when jobs > 1)")
    p.add_argument("--sort-by", default="NDCG@10", help="test metric that orders the table (default NDCG@10)")
    p.add_argument("--quick", action="store_true", help="one short epoch per run: a smoke test, not a measurement")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from sinerec import __version__

        print(__version__)
        return 0
    try:
        handler = _HANDLERS.get((args.command, getattr(args, "data_command", None)
                                 or getattr(args, "index_command", None)))
        if handler is not None:
            return handler(args)
    except SinerecError as exc:
        print(f"sinerec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sinerec: interrupted", file=sys.stderr)
        return 130
    parser.print_help()
    return 1


def cmd_train(args: argparse.Namespace) -> int:
    from sinerec import distributed
    from sinerec.config import load_config
    from sinerec.train import resolve_device, tune_malloc

    tune_malloc()
    overrides = _data_overrides(args)
    for opt, key in (("model", "model"), ("protocol", "protocol.name"), ("epochs", "train.epochs"),
                     ("batch_size", "train.batch_size"), ("lr", "train.lr"), ("seed", "train.seed"),
                     ("device", "train.device"), ("threads", "train.threads")):
        value = getattr(args, opt)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    if args.quiet:
        overrides.append("train.progress=false")
    if args.compile:
        overrides.append("train.compile=true")
    out = Path(args.out) if args.out else None
    if args.resume:
        if out is None or not (out / "config.json").exists():
            raise SinerecError("--resume needs --out pointing at an earlier run directory (with config.json)")
        config = load_config(json.loads((out / "config.json").read_text()), overrides=args.overrides)
    else:
        config = load_config(file=args.config, overrides=overrides + args.overrides)
    ctx = distributed.init(resolve_device(config.train.device))  # under torchrun: join the process group
    try:
        return _train_run(args, config, out, ctx)
    finally:
        distributed.cleanup(ctx)


def _train_run(args: argparse.Namespace, config: Config, out: Path | None, ctx: DistContext) -> int:
    """The body of ``sinerec train`` on every process; only rank 0 prints and writes files."""
    from sinerec import distributed
    from sinerec.pipeline import metrics_document, prepare, write_run_header
    from sinerec.storage import write_json
    from sinerec.train import Trainer

    say = (lambda *a: None) if args.quiet or not ctx.is_main else print
    prepared = prepare(config)
    d = prepared.data
    say(f"data: {d.name}: {d.num_users:,} users, {d.num_items:,} items, {d.num_interactions:,} interactions "
        f"(fingerprint {d.fingerprint()}); protocol {config.protocol.name} "
        f"(split {prepared.split.fingerprint}), {len(prepared.split.train):,} training examples "
        f"[{prepared.seconds:.1f}s]")
    if out is None:  # rank 0's clock names the run for every rank
        out = Path(distributed.broadcast_object(
            str(Path("runs") / f"{config.model}-{d.name}-{time.strftime('%Y%m%d-%H%M%S')}"), ctx))
    if not args.resume:
        if (out / "metrics.json").exists() or (out / "checkpoint.pt").exists():
            raise SinerecError(f"{out} already holds a run; choose another --out or pass --resume")
        distributed.barrier(ctx)  # every rank has looked before rank 0 writes
        if ctx.is_main:
            write_run_header(out, config, prepared)
    trainer = Trainer(config, prepared.data, prepared.split, run_dir=out, log=say, dist=ctx)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    where = f" x {ctx.world_size} processes ({ctx.backend})" if ctx.enabled else ""
    say(f"model: {config.model} ({n_params:,} parameters) on {trainer.device}{where}")
    result = trainer.fit(resume=args.resume)
    if not ctx.is_main:
        return 0
    doc = metrics_document(config, prepared, result)
    doc["train"]["processes"] = ctx.world_size
    write_json(out / "metrics.json", doc)
    print(format_metrics_table(doc))
    print(f"\nrun directory: {out}")
    for name in ("metrics.json", "config.json", "model.pt", "log.jsonl", "items.csv"):
        if (out / name).exists():
            print(f"  {out / name}")
    return 0


def format_metrics_table(doc: dict[str, Any]) -> str:
    """Validation and test metrics in percent, one row per metric, one column per cut-off."""
    lines = [f"{doc['model']} on {doc['dataset']['name']} ({doc['protocol']['name']}, fingerprint "
             f"{doc['protocol']['fingerprint']}): metrics in %"]
    for part in ("valid", "test"):
        metrics = doc[part]
        names = sorted({k.split("@")[0] for k in metrics}, key=["HR", "Recall", "NDCG", "MRR"].index)
        ks = sorted({int(k.split("@")[1]) for k in metrics})
        if doc["protocol"]["name"] == "loo" and "Recall" in names:
            names.remove("Recall")  # equals HR with one target
        header = f"{part:<8}" + "".join(f"{'@' + str(k):>9}" for k in ks)
        lines.append(header)
        for name in names:
            lines.append(f"  {name:<6}" + "".join(f"{100 * metrics[f'{name}@{k}']:>9.2f}" for k in ks))
    return "\n".join(lines)


def cmd_describe(args: argparse.Namespace) -> int:
    from sinerec.config import load_config
    from sinerec.data.preprocess import preprocess
    from sinerec.pipeline import load_interactions

    config = load_config(overrides=_data_overrides(args) + args.overrides)
    interactions = load_interactions(config.data)
    summary = interactions.describe()
    data = preprocess(interactions, config.data.preprocess_config())
    desc = data.describe()
    out = {"dataset": desc["name"], **{k: desc[k] for k in ("n_users", "n_items", "n_interactions")},
           "sequence_length": {k: desc[k] for k in ("min_length", "median_length", "max_length")},
           "fingerprint": desc["fingerprint"], "raw": summary,
           "has_timestamps": interactions.has_timestamps,
           "has_categories": data.item_categories is not None,
           "source": interactions.source}
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from sinerec.data.synthfile import SynthSpec, write_taobao_csv

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"synth: {done:,} / {total:,} rows ({100 * done / total:.0f}%)", file=sys.stderr, flush=True)

    spec = SynthSpec(rows=args.rows, items=args.items, users=args.users, concepts=args.concepts, seed=args.seed)
    print(json.dumps(write_taobao_csv(spec, Path(args.out), progress=progress)))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from sinerec.data.datasets import list_datasets

    rows = list_datasets()
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    for row in rows:
        print(json.dumps(row, default=str))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from sinerec.explain import write_report

    report = write_report(args.run, args.out, n_users=args.users, n_top=args.top, k=args.k, seed=args.seed,
                          repeats=args.repeats)
    doc = json.loads((report.parent / "explain.json").read_text())
    if doc.get("note"):
        print(f"note: {doc['note']}")
    nmi = doc.get("nmi")
    if nmi:
        print(f"NMI of the concepts vs the dataset's categories: {nmi['value']:.4f} (random assignment with the "
              f"same cluster sizes: {nmi['random_mean']:.4f} +- {nmi['random_std']:.4f})")
    for warning in doc.get("warnings", []):
        print(f"warning: {warning}")
    print(f"report: {report}")
    return 0


def _add_index_args(p: argparse.ArgumentParser, saved: bool = True) -> None:
    g = p.add_argument_group("index")
    if saved:
        g.add_argument("--index", help="a saved index folder (`sinerec index build`) instead of building one")
    g.add_argument("--backend", choices=["exact", "flat", "torch", "ivf", "hnsw"], default="exact",
                   help="exact (Faiss flat, or torch without Faiss), flat, torch, ivf, hnsw (default exact)")
    g.add_argument("--nlist", type=int, default=1024, help="ivf: k-means cells (default 1024)")
    g.add_argument("--nprobe", type=int, help="ivf: cells visited per query (default 32)")
    g.add_argument("--hnsw-m", type=int, default=32, help="hnsw: links per node (default 32)")
    g.add_argument("--ef-construction", type=int, default=200, help="hnsw: build candidate list (default 200)")
    g.add_argument("--ef-search", type=int, help="hnsw: search candidate list (default 128)")


def _index_settings(args: argparse.Namespace) -> Any:
    from sinerec.retrieval import IndexSettings

    return IndexSettings(backend=args.backend, nlist=args.nlist, nprobe=args.nprobe or 32, hnsw_m=args.hnsw_m,
                         ef_construction=args.ef_construction, ef_search=args.ef_search or 128)


def _run_index(args: argparse.Namespace, run: LoadedRun) -> Any:
    """The index of a recommend/serve command: the saved --index, or one built from the flags."""
    from sinerec.retrieval import build_index, load_index, vectors_fingerprint

    vectors = run.model.item_embeddings().detach()
    if getattr(args, "index", None):
        return load_index(args.index, expected_fingerprint=vectors_fingerprint(vectors), nprobe=args.nprobe,
                          ef_search=args.ef_search)
    return build_index(vectors, _index_settings(args))


def _ids(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


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
    recommender = Recommender(run, _run_index(args, run))
    history = recommender.user_history(args.user) if args.user is not None else _ids(args.history)
    rec = recommender.recommend(history, k=args.k, exclude=_ids(args.exclude), exclude_seen=not args.include_seen)
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

    serve(args.run, host=args.host, port=args.port, index_path=args.index, settings=_index_settings(args),
          nprobe=args.nprobe, ef_search=args.ef_search, threads=args.threads, log_level=args.log_level,
          max_body_bytes=args.max_body_bytes, max_history=args.max_history, max_k=args.max_k,
          max_batch=args.max_batch, max_concurrency=args.max_concurrency)
    return 0


def cmd_index_build(args: argparse.Namespace) -> int:
    from sinerec.recommend import index_recall
    from sinerec.retrieval import build_index
    from sinerec.runs import load_run

    run = load_run(args.run)
    t0 = time.perf_counter()
    index = build_index(run.model.item_embeddings().detach(), _index_settings(args))
    seconds = time.perf_counter() - t0
    out = Path(args.out) if args.out else Path(args.run) / f"index-{index.settings.backend}"
    index.save(out)
    print(f"built {index.settings.describe()} over {index.num_items:,} items (D={index.dim}) in {seconds:.1f}s "
          f"-> {out}")
    if args.recall_queries > 0:
        r = index_recall(run, index, k=args.recall_k, num_queries=args.recall_queries)
        print(f"recall@{r['k']} against exact on {r['queries']} users' histories: {r['recall']:.4f}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from sinerec.benchmark import run_benchmark
    from sinerec.models import MODELS

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(MODELS)
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise SinerecError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    name = args.dataset or (Path(args.path).stem if args.path else "ml-latest-small")
    default_out = Path("runs") / f"benchmark-{name}-{args.protocol}{'-quick' if args.quick else ''}"
    out = Path(args.out) if args.out else default_out
    # the exact command, every choice spelled out, so that the results say how to reproduce them
    command = ["sinerec", "benchmark", "--models", ",".join(models)]
    for opt in ("dataset", "data_dir", "path", "format"):
        if getattr(args, opt) is not None:
            command += [f"--{opt.replace('_', '-')}", getattr(args, opt)]
    command += ["--protocol", args.protocol, "--seeds", ",".join(map(str, seeds)), "--out", str(out)]
    command += (["--skip-bad-lines"] if args.skip_bad_lines else []) + (["--quick"] if args.quick else [])
    command += [x for o in args.overrides for x in ("--set", o)]
    if args.jobs != 1:
        command += ["--jobs", str(args.jobs)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    if args.sort_by != "NDCG@10":
        command += ["--sort-by", args.sort_by]
    result = run_benchmark(models, out_dir=out, seeds=seeds, protocol=args.protocol,
                           overrides=_data_overrides(args) + args.overrides, jobs=args.jobs, threads=args.threads,
                           quick=args.quick, sort_by=args.sort_by, command=shlex.join(command))
    print()
    print(result.table)
    print(f"\nresults in {out}:")
    for path in result.files:
        print(f"  {path}")
    return 1 if result.failed else 0


#: (command, subcommand or None) -> handler
_HANDLERS = {
    ("train", None): cmd_train, ("data", "describe"): cmd_describe, ("data", "synth"): cmd_synth,
    ("datasets", None): cmd_datasets,
    ("explain", None): cmd_explain, ("export", None): cmd_export, ("recommend", None): cmd_recommend,
    ("serve", None): cmd_serve, ("index", "build"): cmd_index_build, ("benchmark", None): cmd_benchmark,
}
