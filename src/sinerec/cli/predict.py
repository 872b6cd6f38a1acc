"""``sinerec predict``: top-k lists for many known users, written to a Parquet or CSV file."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sinerec.cli.common import RUN_HELP
from sinerec.errors import SinerecError

if TYPE_CHECKING:
    import pandas as pd

EPILOG = """examples:
  sinerec predict --run RUN --users all --k 20 --out top20.parquet
  sinerec predict --run RUN --users 1,7,42 --out some.csv
  sinerec predict --run RUN --users ids.txt --out picked.csv    # one user id a line"""

#: the output formats, by suffix
SUFFIXES = (".parquet", ".csv")


def register(sub: Any) -> None:
    p = sub.add_parser("predict", help="batch top-k for known users (history excluded) into a file",
                       description="Top-k for known users after their whole sequence, the items they interacted "
                                   "with excluded: columns user_id, rank, item_id, score[, interest].",
                       epilog=EPILOG)
    p.add_argument("--run", required=True, help=RUN_HELP)
    p.add_argument("--users", default="all",
                   help="'all', comma-separated user ids, or a file of user ids (one a line)")
    p.add_argument("--k", type=int, default=10, help="items per user")
    p.add_argument("--out", required=True, help="output file, .parquet or .csv (written atomically)")
    p.add_argument("--batch-size", type=int, default=512, help="users per model call")
    p.set_defaults(handler=cmd_predict)


def parse_users(text: str) -> list[str] | None:
    """``all`` -> None (every user); an existing file -> its non-empty lines (a ``user_id`` header line is
    skipped); else the comma-separated ids."""
    from sinerec.ids import split_ids

    if text == "all":
        return None
    path = Path(text)
    if path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if lines and lines[0] == "user_id":
            lines = lines[1:]
        if not lines:
            raise SinerecError(f"--users: {path} lists no user ids")
        return lines
    ids = [str(i) for i in split_ids(text)]
    if not ids:
        raise SinerecError(f"--users: expected 'all', ids or a file, got {text!r}")
    return ids


def write_table(frame: pd.DataFrame, out: Path) -> None:
    """``frame`` as Parquet or CSV by ``out``'s suffix, written atomically."""
    from sinerec.storage import atomic_write_bytes

    buf = io.BytesIO()
    if out.suffix == ".parquet":
        try:
            frame.to_parquet(buf, index=False)
        except ImportError:
            raise SinerecError('--out: writing Parquet needs pyarrow: pip install "sinerec[parquet]"') from None
    else:
        buf.write(frame.to_csv(index=False).encode())
    atomic_write_bytes(out, buf.getvalue())


def cmd_predict(args: argparse.Namespace) -> int:
    from sinerec.api import load

    out = Path(args.out)
    if out.suffix not in SUFFIXES:
        raise SinerecError(f"--out: {out}: unknown suffix {out.suffix!r}; use {' or '.join(SUFFIXES)}")
    if args.batch_size < 1:
        raise SinerecError(f"--batch-size: must be >= 1, got {args.batch_size}")
    users = parse_users(args.users)
    frame = load(args.run).recommend_users(users, args.k, batch_size=args.batch_size)
    write_table(frame, out)
    n_users = frame["user_id"].nunique()
    print(f"{len(frame):,} rows ({n_users:,} users x up to {args.k} items) -> {out}")
    return 0
