"""Every stage of the Taobao-scale path, timed and sized, each in its own child process (issue 11, items 5 and 7).

One configuration (rows, items, users of a ``sinerec data synth`` log) goes through the commands a user runs,
each under ``/usr/bin/time -v`` (wall seconds and peak resident memory of that process):

    synth     sinerec data synth --rows R --items I --users U --concepts 1000 --seed 0 --out WORK/log.csv
    prepare   sinerec data prepare --path WORK/log.csv --format taobao --set data.min_user_count=5
              --set data.min_item_count=1 --protocol comirec --out WORK/prepared
    train     sinerec train --prepared WORK/prepared --model sine, K = 8 interests from L = 1000 concepts, D = 64,
              sampled softmax (1000 popularity-sampled negatives), row-wise lazy Adam, batch 256, --epochs E
              [train.max_steps_per_epoch = S], validation on eval.max_queries = Q held-out users
    evaluate  sinerec evaluate --run WORK/run --part test --set eval.max_queries=Q --json
    export    sinerec export --run WORK/run --out WORK/export
    index     sinerec index build --run WORK/run --backend factory --factory F --nprobe P --out WORK/index
    serve     sinerec serve --run WORK/run --index WORK/index; --requests single POST /recommend (k = 50, one at
              a time, histories of sampled held-out users) from a client on the same machine: p50 / p99 latency;
              the server's peak RSS (VmHWM)
    nmi       benchmarks/explain_nmi.py: each item's nearest concept against the planted categories (the
              generator's concept of each item), next to random assignments with the same cluster sizes

The protocol is ComiRec's (the paper's Taobao protocol): users split 8:1:1, a held-out user's first 80 % is
the history and the rest the targets. The catalogue is kept whole (no item filter), so the item table has
``--items`` rows. Results go to ``OUT/stages-LABEL.json`` after every stage; a rerun skips the stages already
recorded (``--redo STAGE`` repeats one) and a train stage cut short resumes from its checkpoint. ``--work`` is
kept (delete it yourself). ``--path UserBehavior.csv`` sends a real Taobao log through the same stages (no
synth; the NMI is then against its category ids); ``--device cuda`` trains and evaluates on a GPU.

    python benchmarks/taobao-scale/stages.py --rows 10000000 --items 1000000 --users 300000 --epochs 2 \\
        --eval-queries 5000 --work /tmp/tb10m --label 10M-1M
    python benchmarks/taobao-scale/stages.py --rows 100000000 --items 4000000 --users 3000000 --epochs 1 \\
        --max-steps 300 --eval-queries 2000 --skip nmi --work /tmp/tb100m --label 100M-4M
    python benchmarks/taobao-scale/stages.py --path UserBehavior.csv --min-item-count 5 --skip-bad-lines \
        --epochs 5 --eval-queries 5000 --work /tmp/tb-real --label taobao-sample
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "src"))

STAGES = ("synth", "prepare", "train", "evaluate", "export", "index", "serve", "nmi")
SINE = ["--set", "model_params.num_interests=8", "--set", "model_params.num_concepts=1000",
        "--set", "model_params.dim=64", "--set", 'train.loss="sampled"', "--set", "train.num_negatives=1000",
        "--set", 'train.optimizer="lazy-adam"', "--batch-size", "256"]


def sinerec(*args: str) -> list[str]:
    return [sys.executable, "-m", "sinerec", *args]


def commands(args: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    log, prepared, run = args.path or work / "log.csv", work / "prepared", work / "run"
    queries = ["--set", f"eval.max_queries={args.eval_queries}"]
    device = ["--device", args.device] if args.device else []
    train = sinerec("train", "--prepared", str(prepared), "--protocol", "comirec", "--model", "sine", *SINE, *device,
                    "--epochs", str(args.epochs), *queries, "--seed", str(args.seed), "--out", str(run), "--quiet")
    if args.max_steps:
        train += ["--set", f"train.max_steps_per_epoch={args.max_steps}"]
    if (run / "checkpoint.pt").exists() and not (run / "metrics.json").exists():
        train.append("--resume")
    return {
        "synth": sinerec("data", "synth", "--rows", str(args.rows), "--items", str(args.items), "--users",
                         str(args.users), "--concepts", "1000", "--seed", "0", "--out", str(log), "--quiet"),
        "prepare": sinerec("data", "prepare", "--path", str(log), "--format", "taobao", "--set",
                           "data.min_user_count=5", "--set", f"data.min_item_count={args.min_item_count}",
                           "--protocol", "comirec", "--out", str(prepared),
                           *(["--skip-bad-lines"] if args.skip_bad_lines else [])),
        "train": train,
        "evaluate": sinerec("evaluate", "--run", str(run), "--part", "test", *queries, *device, "--json"),
        "export": sinerec("export", "--run", str(run), "--out", str(work / "export")),
        "index": sinerec("index", "build", "--run", str(run), "--backend", "factory", "--factory", args.factory,
                         "--nprobe", str(args.nprobe), "--out", str(work / "index")),
        "nmi": [sys.executable, str(REPO / "benchmarks" / "explain_nmi.py"), "--run", f"taobao-like={run}",
                "--repeats", str(args.nmi_repeats), "--min-count", "5", "--min-count", "20", "--min-count", "100",
                "--out", str(work / "nmi.json")],
    }


def timed(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` under /usr/bin/time -v, its output to ``log``; wall seconds, peak RSS, exit status."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_WAIT_POLICY": "PASSIVE"}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=out, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"command": " ".join(cmd[2:] if cmd[1:3] == ["-m", "sinerec"] else cmd).replace(sys.executable, "python"),
            "seconds": round(wall, 1), "peak_rss_gb": round(int(rss.group(1)) / 2**20, 3) if rss else None,
            "exit": proc.returncode, "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}


def serve_stage(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The real server on loopback with the built index: latency of single requests and its peak RSS."""
    import numpy as np
    from serve_load import Server, load_phase, plain_id

    from sinerec.data.prepared import load_sequences, load_split, read_summary
    from sinerec.data.splits import ProtocolConfig

    folder = work / "prepared"
    split = load_split(folder, ProtocolConfig(**read_summary(folder)["protocol"]))
    assert split is not None, f"{folder} holds no split"
    queries, data = split.test, load_sequences(folder, verify=False)
    pick = np.random.default_rng(0).choice(len(queries), size=min(200, len(queries)), replace=False)
    histories = [data.items[max(int(queries.hist_start[q]), int(queries.hist_end[q]) - 20):int(queries.hist_end[q])]
                 for q in pick]  # internal indices -> the log's item ids, as a client sends them
    bodies = [json.dumps({"history": [plain_id(data.item_ids[i]) for i in h], "k": 50}).encode() for h in histories]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    server = Server(work / "run", work / "index", {"nprobe": args.nprobe}, work / "serve.log")
    started = time.perf_counter() - t0
    try:
        load_phase(server.port, "/recommend", bodies, 20, 1, 60)  # warm-up
        phase = load_phase(server.port, "/recommend", bodies, args.requests, 1, 300)
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    finally:
        server.stop()
    return {"command": f"sinerec serve --run {work / 'run'} --index {work / 'index'} --nprobe {args.nprobe}",
            "seconds": round(started, 1), "startup_seconds": round(started, 1), "peak_rss_gb": round(hwm / 2**20, 3),
            "rss_after_gb": round(rss / 2**20, 3), "exit": 0, "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2),
            **{k: phase[k] for k in ("requests", "requests_per_s", "p50_ms", "p99_ms", "mean_ms", "statuses")}}


def details(stage: str, work: Path) -> dict[str, Any]:
    """What a stage produced, from its files: sizes, throughput, metrics, recall, NMI."""
    out: dict[str, Any] = {}
    if stage == "synth":
        out["file_gb"] = round((work / "log.csv").stat().st_size / 2**30, 3)
    elif stage == "prepare":
        summary = json.loads((work / "prepared" / "summary.json").read_text())
        out["fingerprint"] = summary.get("fingerprint")
        out["summary"] = {k: v for k, v in summary.items() if k in ("n_users", "n_items", "n_interactions", "split")}
        out["artifact_gb"] = round(sum(p.stat().st_size for p in (work / "prepared").rglob("*") if p.is_file())
                                   / 2**30, 3)
    elif stage == "train":
        metrics = json.loads((work / "run" / "metrics.json").read_text())
        out["train"] = metrics["train"]
        out["valid"] = {k: round(100 * v, 3) for k, v in metrics["valid"].items()}
        out["evaluated"] = metrics.get("evaluated")
        out["dataset"] = metrics["dataset"]
        out["protocol"] = metrics["protocol"]
    elif stage == "evaluate":
        text = (work / "evaluate.log").read_text()
        start = text.find("{")
        try:
            result = json.loads(text[start:text.rfind("}") + 1])
            out["result"] = result
        except ValueError:
            pass
    elif stage == "export":
        out["export_gb"] = round(sum(p.stat().st_size for p in (work / "export").rglob("*") if p.is_file()) / 2**30, 3)
    elif stage == "index":
        out["settings"] = json.loads((work / "index" / "index.json").read_text())["settings"]
        recall = re.search(r"recall@(\d+) against exact on (\d+) users' histories: ([0-9.]+)",
                           (work / "index.log").read_text())
        if recall:
            out["recall"] = {"k": int(recall.group(1)), "users": int(recall.group(2)), "value": float(recall.group(3))}
        out["index_gb"] = round(sum(p.stat().st_size for p in (work / "index").rglob("*") if p.is_file()) / 2**30, 3)
    elif stage == "nmi":
        out["result"] = json.loads((work / "nmi.json").read_text())["results"]["taobao-like"]
    return out


def code_version() -> str | None:
    """The checkout's commit, with ``+changes`` when files differ from it (None outside a git checkout)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, help="synth: events")
    parser.add_argument("--items", type=int, help="synth: catalogue size")
    parser.add_argument("--users", type=int, help="synth: users")
    parser.add_argument("--path", type=Path, help="a Taobao UserBehavior.csv instead of the synthetic log "
                        "(no synth stage); the NMI is then against its categories")
    parser.add_argument("--skip-bad-lines", action="store_true", help="prepare: skip malformed lines (warned)")
    parser.add_argument("--min-item-count", type=int, default=1, help="prepare: data.min_item_count (default 1: "
                        "the whole catalogue; 5 is ComiRec's Taobao filter)")
    parser.add_argument("--device", help="train and evaluate on this device (e.g. cuda; default: sinerec's auto)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=0, help="train.max_steps_per_epoch (0: whole epochs)")
    parser.add_argument("--eval-queries", type=int, default=5000, help="eval.max_queries (held-out users ranked)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--factory", default="IVF4096,PQ32", help="Faiss index-factory string of the index stage")
    parser.add_argument("--nprobe", type=int, default=64)
    parser.add_argument("--requests", type=int, default=500, help="serve: single requests timed")
    parser.add_argument("--nmi-repeats", type=int, default=20)
    parser.add_argument("--skip", action="append", default=[], choices=STAGES, help="a stage not to run")
    parser.add_argument("--redo", action="append", default=[], choices=STAGES, help="run a recorded stage again")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (log, artifact, run, index)")
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", type=Path, default=HERE / "stages")
    args = parser.parse_args()
    if args.path is None and None in (args.rows, args.items, args.users):
        parser.error("give --rows, --items and --users (a synthetic log), or --path")
    if args.path is not None:
        args.skip.append("synth")
        args.path = args.path.resolve()
    if not shutil.which("/usr/bin/time"):
        parser.error("needs GNU time at /usr/bin/time (Debian: apt-get install time)")
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"stages-{args.label}.json"
    doc = json.loads(path.read_text()) if path.exists() else {"label": args.label, "stages": {}}
    doc.update({"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                             if k not in ("work", "out", "skip", "redo")},
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version()}})
    for stage in STAGES:
        if stage in args.skip or (stage in doc["stages"] and stage not in args.redo
                                  and doc["stages"][stage].get("exit") == 0):
            continue
        print(f"[{dt.datetime.now():%H:%M:%S}] {args.label}: {stage}", flush=True)
        if stage == "serve":
            record = serve_stage(args, args.work)
        else:
            # a stage run again starts from nothing (a finished run is not resumed; an unfinished one is)
            folder = args.work / {"prepare": "prepared", "export": "export", "index": "index"}.get(stage, "run")
            if stage in ("prepare", "export", "index") and folder.exists() or \
                    stage == "train" and (folder / "metrics.json").exists():
                shutil.rmtree(folder)
            record = timed(commands(args, args.work)[stage], args.work / f"{stage}.log")
        if record["exit"] == 0:
            record.update(details(stage, args.work))
        record["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        record["code"] = code_version()
        doc["stages"][stage] = record
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)
        print(f"  {record['seconds']} s, peak {record['peak_rss_gb']} GB, exit {record['exit']}", flush=True)
        if record["exit"] != 0:
            print(f"  failed: see {args.work / (stage + '.log')}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
