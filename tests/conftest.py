from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """Every test leaves torch's thread count as it found it (a training job sets ``train.threads`` for the
    whole process)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def shared_dataset(name: str, root: Path | None = None) -> Path:
    """``../shared/data/NAME`` (or ``root/NAME``). Absent, a real-data test skips on a developer's machine but
    FAILS under CI (the environment variable ``CI`` set and not "0"/"false"/""): CI is meant to test these
    datasets, and a skipped test there would pass without testing anything."""
    folder = (root or SHARED_DATA) / name
    if not folder.is_dir():
        message = f"{folder} is not present (real-data tests need ../shared/data beside the repository)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI is set and {message}", pytrace=False)
        pytest.skip(message)
    return folder


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate ``proc`` (a server under test), kill it if it has not exited within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_run(run_dir: Path, overrides: list[str], log) -> Path:
    """Train a tiny run on the Interactions ``log`` into ``run_dir`` (a full run directory) and return it.

    Through the training job, as ``sinerec train`` does. Single-threaded: the tests share two cores. The job
    sets the thread count process-wide, so it is restored afterwards.
    """
    from sinerec.config import load_config
    from sinerec.data.preprocess import preprocess
    from sinerec.data.splits import make_split
    from sinerec.job import train_run as train_job
    from sinerec.pipeline import Prepared

    config = load_config(overrides=["train.batch_size=128", "train.progress=false", "train.epochs=1",
                                    "train.threads=1", *overrides])
    data = preprocess(log)
    prepared = Prepared(data, make_split(data, config.protocol), 0.0)
    threads = torch.get_num_threads()
    try:
        return train_job(config, run_dir, prepared=prepared, log=lambda *a: None).run_dir
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def serve_process(run_dir: Path, *extra_args: str, timeout: float = 90.0) -> Iterator[str]:
    """A real ``python -m sinerec serve`` process for ``run_dir`` on a free loopback port, up once /health
    answers; yields its base URL and terminates it afterwards. Its output goes to ``run_dir/serve.log``."""
    port = free_port()
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log_path = run_dir / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sinerec", "serve", "--run", str(run_dir),
                                 "--port", str(port), *extra_args], env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                        if json.load(answer).get("status") == "ok":
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sinerec serve did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            yield url
        finally:
            stop_process(proc)
