"""Merge the converged-table runs that another machine finished (a GPU session's archive) into this checkout.

``benchmarks/gpu_session.sh`` returns ``converged.tgz`` (inside ``gpu-session.tgz``): the folder
benchmarks/converged as the GPU machine left it, without weights. Unpacking it over the checkout would replace
runs this machine has finished or is still training. This copies only what is new: every run the archive holds
*finished* (its ``benchmark.json``) that is not finished here; an unfinished run here (its checkpoint included)
is replaced by the finished one. Runs finished here are kept as they are, and a run the archive holds unfinished
is ignored (its checkpoint did not travel). The next ``bash benchmarks/converged/run.sh`` (or ``sinerec
benchmark`` with the folder's command) reuses the merged runs and rewrites the tables.

    python benchmarks/converged/merge.py converged.tgz             # or a folder it was unpacked into
    python benchmarks/converged/merge.py converged.tgz --dry-run   # say what would be copied
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORD = "benchmark.json"


def finished_runs(converged: Path) -> dict[str, Path]:
    """``TABLE/runs/RUN`` -> its folder, for every finished run under ``converged`` (a benchmarks/converged)."""
    return {f"{p.parent.parent.parent.name}/runs/{p.parent.name}": p.parent
            for p in sorted(converged.glob(f"*/runs/*/{RECORD}"))}


def merge(source: Path, target: Path, dry_run: bool = False) -> list[str]:
    """Copy the finished runs of ``source`` (a benchmarks/converged folder) that ``target`` has not finished;
    returns their names (``TABLE/runs/RUN``)."""
    here = finished_runs(target)
    copied = []
    for name, folder in finished_runs(source).items():
        if name in here:
            continue
        copied.append(name)
        if dry_run:
            continue
        destination = target / name
        if destination.exists():  # unfinished here: the finished run replaces it, checkpoint and all
            shutil.rmtree(destination)
        shutil.copytree(folder, destination)
        log = folder.parent / f"{folder.name}.log"
        if log.exists():
            shutil.copy2(log, destination.parent / log.name)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="converged.tgz, or a folder holding benchmarks/converged")
    parser.add_argument("--into", type=Path, default=ROOT / "benchmarks" / "converged",
                        help="this checkout's benchmarks/converged (default)")
    parser.add_argument("--dry-run", action="store_true", help="only say which runs would be copied")
    args = parser.parse_args(argv)
    if not args.source.exists():
        print(f"merge: {args.source} does not exist", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sinerec-merge-") as tmp:
        root = args.source
        if args.source.is_file():
            with tarfile.open(args.source) as tar:
                tar.extractall(tmp, filter="data")  # plain files and folders only
            root = Path(tmp)
        found = [p for p in (root / "benchmarks" / "converged", root / "converged", root) if p.is_dir()
                 and any(p.glob(f"*/runs/*/{RECORD}"))]
        if not found:
            print(f"merge: no finished runs (*/runs/*/{RECORD}) in {args.source}", file=sys.stderr)
            return 2
        copied = merge(found[0], args.into, args.dry_run)
    verb = "would copy" if args.dry_run else "copied"
    print(f"{verb} {len(copied)} finished run(s) into {args.into}" + "".join(f"\n  {n}" for n in copied))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
