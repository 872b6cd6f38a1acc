"""Time and peak RSS of reading + preparing a Taobao-shaped log (issue 11, ingestion stage).

For each size: generate the file with ``sinerec data synth`` (kept out of the repository, in --workdir),
copy it with one malformed line inserted in the middle, then run in a child process, under
``/usr/bin/time -v``, for each engine (``old``: the code at --old-src, ``new``: this checkout's src) and each
file (clean; with the bad line and --skip-bad-lines)::

    sinerec data describe --path FILE --format taobao --set 'data.behaviors=["pv"]' \\
        --set data.min_user_count=5 --set data.min_item_count=5 --json [--skip-bad-lines]

(read, pv filter, iterative 5-core, order, id maps, CSR, fingerprint). Writes results.json and results.md
next to this script. The generated files are deleted at the end unless --keep (a file already in --workdir
from a --keep run is used again). Each run records the 1-minute load average before and after it (the machine
is shared: a time under load says little) and a --label naming the code measured.

    python benchmarks/taobao-scale/measure_ingest.py --rows 10000000 --engines old new --label p5-ingest --append
    python benchmarks/taobao-scale/measure_ingest.py --rows 100000000 --engines new --workdir /tmp/ingest100m \
        --label p5-ingest --append
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FILTERS = ["--set", 'data.behaviors=["pv"]', "--set", "data.min_user_count=5", "--set", "data.min_item_count=5"]
BAD_LINE = b"123,456,oops,pv\n"  # four fields: malformed


def synth_command(rows: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "sinerec", "data", "synth", "--rows", str(rows), "--items", str(rows // 25),
            "--users", str(rows // 50), "--concepts", "1000", "--seed", "0", "--out", str(out), "--quiet"]


def with_bad_line(src: Path, dst: Path) -> int:
    """Copy ``src`` to ``dst`` with BAD_LINE inserted after the line that ends past the middle; its number."""
    middle = src.stat().st_size // 2
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        head = fin.read(middle)
        head += fin.readline()
        fout.write(head)
        line = head.count(b"\n") + 1
        fout.write(BAD_LINE)
        shutil.copyfileobj(fin, fout, 16 << 20)
    return line


def measure(src: str, path: Path, skip: bool) -> dict[str, object]:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "sinerec", "data", "describe", "--path", str(path),
           "--format", "taobao", *FILTERS, "--json", *(["--skip-bad-lines"] if skip else [])]
    env = {**os.environ, "PYTHONPATH": src, "OMP_WAIT_POLICY": "PASSIVE"}
    load_before = round(os.getloadavg()[0], 2)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    load = {"load_before": load_before, "load_after": round(os.getloadavg()[0], 2)}
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:], **load}
    wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    assert wall and rss, proc.stderr
    seconds = int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    warned = [ln for ln in proc.stderr.splitlines() if "skipped" in ln and "malformed" in ln]
    return {"wall_s": round(seconds, 2), "peak_rss_gb": round(int(rss.group(1)) / 1e6, 3),
            "fingerprint": out["fingerprint"], "n_interactions": out["n_interactions"],
            "n_users": out["n_users"], "n_items": out["n_items"], "warning": warned[0][:300] if warned else None,
            **load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000_000])
    ap.add_argument("--engines", nargs="+", default=["old", "new"], choices=["old", "new"])
    ap.add_argument("--old-src", default="/work/main/src", help="src folder of the old engine (main)")
    ap.add_argument("--workdir", default="/tmp/sinerec-taobao-scale")
    ap.add_argument("--append", action="store_true", help="add to the existing results.json")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--label", default="", help="what the new engine is (a branch, a commit), kept in each run")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    srcs = {"old": args.old_src, "new": str(REPO / "src")}
    results_path = HERE / "results.json"
    doc = json.loads(results_path.read_text()) if args.append and results_path.exists() else {"runs": []}
    doc.update({"machine": f"{platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}",
                "note": "2 cores shared with other sessions during the runs: wall times are noisy, "
                        "ratios were measured within one invocation; peak RSS does not depend on contention",
                "command": "sinerec data describe --path FILE --format taobao " + " ".join(
                    f"'{a}'" if " " in a or "[" in a else a for a in FILTERS) + " --json [--skip-bad-lines]"})
    for rows in args.rows:
        clean, bad = work / f"taobao-{rows}.csv", work / f"taobao-{rows}-bad.csv"
        gen = synth_command(rows, clean)
        if not clean.exists():
            subprocess.run(gen, check=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        bad_line = with_bad_line(clean, bad)
        for engine in args.engines:
            label = args.label if engine == "new" else f"main ({args.old_src})"
            run = {"rows": rows, "engine": engine, "label": label, "date": dt.datetime.now(dt.UTC).isoformat(
                timespec="seconds"), "synth": " ".join(gen[2:]).replace(str(clean), "FILE.csv"),
                   "bad_line": bad_line, "clean": measure(srcs[engine], clean, False),
                   "one_bad_line": measure(srcs[engine], bad, True)}
            print(json.dumps(run), flush=True)
            doc["runs"].append(run)
            results_path.write_text(json.dumps(doc, indent=1) + "\n")
        bad.unlink(missing_ok=True)
        if not args.keep:
            for path in (clean, clean.with_name(f"taobao-{rows}.items.csv")):
                path.unlink(missing_ok=True)
    write_markdown(doc)


def _load(result: dict) -> str:
    """The 1-minute load average before -> after a run ("" for runs recorded before it was)."""
    return f"{result['load_before']} -> {result['load_after']}" if "load_before" in result else ""


def write_markdown(doc: dict) -> None:
    """results.md from results.json: the table of runs, then the notes (``doc["notes"]``, kept in the JSON so
    that writing the table again keeps them)."""
    lines = ["# Taobao-scale ingestion: read + pv filter + 5-core", "", f"Command: `{doc['command']}`", "",
             f"Machine: {doc['machine']}. {doc['note']}.", "",
             "| rows | code | clean: s | clean: peak GB | 1 bad line: s | 1 bad line: peak GB | bad/clean time "
             "| bad/clean RSS | load clean | load bad | fingerprint | date |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in doc["runs"]:
        c, b = run["clean"], run["one_bad_line"]
        code = run.get("label") or run["engine"]
        if "error" in c or "error" in b:
            lines.append(f"| {run['rows']:,} | {code} | failed | | | | | | | | | {run['date']} |")
            continue
        lines.append(
            f"| {run['rows']:,} | {code} | {c['wall_s']} | {c['peak_rss_gb']} | {b['wall_s']} | "
            f"{b['peak_rss_gb']} | {b['wall_s'] / c['wall_s']:.2f} | {b['peak_rss_gb'] / c['peak_rss_gb']:.2f} | "
            f"{_load(c)} | {_load(b)} | {c['fingerprint']} | {run['date']} |")
    lines += ["", "Files: `sinerec data synth` with the arguments in results.json (`synth`); the bad line "
              f"`{BAD_LINE.decode().strip()}` is inserted after the middle of the file (`bad_line`). Load: the "
              "1-minute load average before -> after the run (2 cores)."]
    for title, paragraphs in doc.get("notes", {}).items():
        lines += ["", f"{title}:", *[f"- {p}" for p in paragraphs]]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
