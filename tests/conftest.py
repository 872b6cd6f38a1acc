from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

#: ../shared/data beside the repository (CI clones the project next to a copy of shared/).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Two cores: keep tests from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def shared_dataset(name: str) -> Path:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present (real-data tests need ../shared/data beside the repository)")
    return folder
