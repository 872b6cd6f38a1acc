"""``sinerec run-data``: where a run of a prepared dataset finds its sequences (relink, or copy them in)."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """examples:
  sinerec run-data RUN                                 # where the run's data is, checked
  sinerec run-data RUN --prepared /data/prepared/taobao  # the prepared dataset moved: point the run at it
  sinerec run-data RUN --copy                          # store the sequences in the run (self-contained)"""


def register(sub: Any) -> None:
    p = sub.add_parser("run-data", help="check, relink or copy in the prepared dataset a run was trained on",
                       description="A run trained with --prepared DIR references the prepared dataset instead of "
                                   "copying its sequences. Check that reference, point it at the dataset's new "
                                   "place (--prepared), or copy the sequences into the run (--copy) so that "
                                   "export, explain, serve and recommend no longer need the dataset.",
                       epilog=EPILOG)
    p.add_argument("run", metavar="RUN", help="a run directory written by `sinerec train`")
    p.add_argument("--prepared", metavar="DIR", help="the prepared dataset's new place (its fingerprint must be "
                                                     "the run's)")
    p.add_argument("--copy", action="store_true", help="write the sequences into the run (sequences.npz)")
    p.set_defaults(handler=cmd_run_data)


def cmd_run_data(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sinerec import run_data

    run = Path(args.run)
    if not (run / run_data.DATA_INFO).exists():
        from sinerec.errors import SinerecError

        raise SinerecError(f"{run}: not a sinerec run directory ({run_data.DATA_INFO} is missing)")
    if args.prepared is not None:
        new = run_data.relink(run, args.prepared)
        print(f"{run}: now references {new['path']} (fingerprint {new['fingerprint']})")
    if args.copy:
        print(f"{run}: sequences stored in {run_data.copy_sequences(run)}")
    if args.prepared is None and not args.copy:
        ref = run_data.prepared_reference(run)
        if ref is None or (run / run_data.SEQUENCES).exists():
            print(f"{run}: holds its own sequences ({run / run_data.SEQUENCES})")
        else:
            run_data.check_prepared(run, ref)
            print(f"{run}: maps the prepared dataset {ref['path']} (fingerprint {ref['fingerprint']}, checked)")
    return 0
