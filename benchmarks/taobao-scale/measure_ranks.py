"""Memory of torchrun ranks that map one prepared dataset (issue 11 item 2): 1 rank vs 2 gloo ranks.

Prepares the file once (``sinerec data prepare ... --protocol loo``), then for each process count runs::

    torchrun --standalone --nproc_per_node N -m sinerec train --prepared DIR --device cpu --threads 1 \\
        --epochs 1 --set train.max_steps_per_epoch=STEPS --set train.loss="sampled" ... --quiet

and samples every rank (the children of the torchrun agent) every 0.1 s from /proc: the peak of the ranks'
RSS summed (a shared file page counts once per process that maps it) and the peak of their PSS summed
(a shared page counts 1/N per process: what the ranks cost the machine together), and each rank's private
memory (pages no other process maps: what a second rank adds), and the ranks' pages counted once (their
private pages plus the largest rank's shared ones: the RSS of the ranks together, a page that both map
counted once, whatever other processes map it too), with the load average before and after each run.
Writes ranks-NM.json (N million interactions; ``--suffix`` appends to the name) next to this script.

    python benchmarks/taobao-scale/measure_ranks.py --csv synth8m.csv --items-csv synth8m.items.csv \\
        --workdir /tmp/ranks
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def memory_kb(pid: int) -> dict[str, int]:
    """RSS, PSS, private (Private_Clean + Private_Dirty: pages no other process maps) and anonymous memory of
    ``pid`` in kB from /proc/PID/smaps_rollup; zeros once it is gone."""
    sizes = dict.fromkeys(("rss", "pss", "private", "anon"), 0)
    keys = {"Rss:": "rss", "Pss:": "pss", "Private_Clean:": "private", "Private_Dirty:": "private",
            "Anonymous:": "anon"}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key = keys.get(line.split(" ", 1)[0])
            if key:
                sizes[key] += int(line.split()[1])
    except OSError:
        pass
    return sizes


def run_ranks(nproc: int, data: list[str], out: Path, steps: int, extra: list[str]) -> dict[str, object]:
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", str(nproc), "-m", "sinerec", "train",
           *data, "--device", "cpu", "--threads", "1", "--epochs", "1",
           "--set", f"train.max_steps_per_epoch={steps}", "--set", 'train.loss="sampled"',
           "--set", "train.num_negatives=100", "--set", "model_params.dim=32", "--set",
           "model_params.num_concepts=100", *[x for kv in extra for x in ("--set", kv)], "--out", str(out),
           "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    agent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    peak = dict.fromkeys(("rss", "pss", "private", "anon", "union"), 0)
    per_rank: dict[int, dict[str, int]] = {}
    while agent.poll() is None:
        sizes = {pid: memory_kb(pid) for pid in children(agent.pid)}
        for key in ("rss", "pss", "private", "anon"):
            peak[key] = max(peak[key], sum(s[key] for s in sizes.values()))
        # the ranks' pages counted once: their private pages plus the largest rank's shared ones (the ranks
        # map the same files and libraries), whoever else on the machine maps them too
        shared = max((s["rss"] - s["private"] for s in sizes.values()), default=0)
        peak["union"] = max(peak["union"], sum(s["private"] for s in sizes.values()) + shared)
        for pid, s in sizes.items():
            mine = per_rank.setdefault(pid, dict.fromkeys(("rss", "pss", "private", "anon"), 0))
            for key in mine:
                mine[key] = max(mine[key], s[key])
        time.sleep(0.1)
    if agent.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {agent.returncode}")
    ranks = sorted(per_rank.values(), key=lambda s: -s["rss"])
    return {"processes": nproc, "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_sum_mb": round(peak["rss"] / 1024), "peak_pss_sum_mb": round(peak["pss"] / 1024),
            "peak_private_sum_mb": round(peak["private"] / 1024), "peak_anon_sum_mb": round(peak["anon"] / 1024),
            "peak_union_mb": round(peak["union"] / 1024),
            "peak_rss_per_rank_mb": [round(s["rss"] / 1024) for s in ranks],
            "peak_private_per_rank_mb": [round(s["private"] / 1024) for s in ranks],
            "run_holds_sequences": (out / "sequences.npz").exists(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "command": cmd}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True, help="a Taobao-shaped file (`sinerec data synth`)")
    ap.add_argument("--items-csv", help="its item file (FILE.items.csv)")
    ap.add_argument("--workdir", required=True, help="where the prepared folder and the runs go")
    ap.add_argument("--source-too", action="store_true", help="also 2 ranks reading the file themselves")
    ap.add_argument("--steps", type=int, default=30, help="training steps per run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="another setting of the measured runs, e.g. eval.item_chunk=8192 (repeatable)")
    ap.add_argument("--reuse-prepared", action="store_true",
                    help="keep WORKDIR/prepared from an earlier call (its prepare is then not timed)")
    ap.add_argument("--suffix", default="", help="appended to the result file's name (ranks-NM{suffix}.json)")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    prepared = work / "prepared"
    cmd = [sys.executable, "-m", "sinerec", "data", "prepare", "--path", args.csv, "--format", "taobao",
           "--protocol", "loo", "--out", str(prepared)]
    if args.items_csv:
        cmd += ["--set", f"data.item_path={json.dumps(args.items_csv)}"]
    t0 = time.perf_counter()
    prepare_s: float | None = None
    if args.reuse_prepared and (prepared / "summary.json").exists():  # made by an earlier call: not timed
        info = json.loads((prepared / "summary.json").read_text())
        summary = {"out": str(prepared), **{k: info[k] for k in ("name", "fingerprint", "n_users", "n_items",
                                                                 "n_interactions")}}
    else:
        summary = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                            env={**os.environ, "PYTHONPATH": str(REPO / "src")}).stdout)
        prepare_s = round(time.perf_counter() - t0, 1)
    mapped_mb = round(sum(f.stat().st_size for f in prepared.rglob("*.npy")) / 2**20)
    results = []
    for nproc in (1, 2):
        shutil.rmtree(work / f"run{nproc}", ignore_errors=True)
        results.append(run_ranks(nproc, ["--prepared", str(prepared)], work / f"run{nproc}", args.steps, args.set))
    one, two = results
    if args.source_too:  # the same 2-rank run without a prepared dataset: every rank reads the file itself
        shutil.rmtree(work / "run-source", ignore_errors=True)
        source = ["--path", args.csv, "--format", "taobao"]
        source += ["--set", f"data.item_path={json.dumps(args.items_csv)}"] if args.items_csv else []
        results.append({**run_ranks(2, source, work / "run-source", args.steps, args.set), "from_source": True})
    doc = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "machine": f"{os.cpu_count()} CPUs, {platform.platform()}", "csv": args.csv, "prepare": summary,
           "prepare_seconds": prepare_s, "prepare_command": cmd, "mapped_npy_mb": mapped_mb, "runs": results,
           "ratio_pss": round(two["peak_pss_sum_mb"] / one["peak_pss_sum_mb"], 2),  # type: ignore[operator]
           "ratio_union": round(two["peak_union_mb"] / one["peak_union_mb"], 2),  # type: ignore[operator]
           "ratio_rss": round(two["peak_rss_sum_mb"] / one["peak_rss_sum_mb"], 2)}  # type: ignore[operator]
    name = f"ranks-{summary['n_interactions'] // 1_000_000}M{args.suffix}.json"
    (HERE / name).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k not in ("runs", "prepare_command")}, indent=2))
    for r in results:
        print({k: v for k, v in r.items() if k != "command"})


if __name__ == "__main__":
    main()
