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
