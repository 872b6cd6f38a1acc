from __future__ import annotations

import os
from pathlib import Path

# OpenMP threads spin while waiting by default: on 2 shared cores that made 2-thread steps up to 50x slower
# than 1-thread ones (benchmarks/scaling). Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

#: ../shared/data beside the repository (CI clones the project next to a copy of shared/).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Two cores: keep tests from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def shared_dataset(name: str) -> Path:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present (real-data tests need ../shared/data beside the repository)")
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_run(run_dir: Path, overrides: list[str], log) -> Path:
    """Train a tiny run on the Interactions ``log`` into ``run_dir`` (a full run directory) and return it.

    Single-threaded: the tests share two cores. The trainer sets the thread count process-wide, so it is
    restored afterwards.
    """
    from sinerec.config import load_config
    from sinerec.data.preprocess import preprocess
    from sinerec.data.splits import make_split
    from sinerec.pipeline import Prepared, write_run_header
    from sinerec.train import Trainer

    config = load_config(overrides=["train.batch_size=128", "train.progress=false", "train.epochs=1",
                                    "train.threads=1", *overrides])
    data = preprocess(log)
    split = make_split(data, config.protocol)
    write_run_header(run_dir, config, Prepared(data, split, 0.0))
    threads = torch.get_num_threads()
    try:
        Trainer(config, data, split, run_dir=run_dir, log=lambda *a: None).fit()
    finally:
        torch.set_num_threads(threads)
    return run_dir
