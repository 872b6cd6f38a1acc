"""torchrun / DistributedDataParallel glue: the only module of the package that touches ``torch.distributed``.

``torchrun --nproc-per-node N -m sinerec train ...`` starts N processes and gives each the environment
variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`init` reads them
and joins the process group: gloo on CPU, nccl on CUDA, one GPU per local rank (``cuda:LOCAL_RANK``). Without
them (or with ``WORLD_SIZE=1``) it returns the single-process context and every helper below is a no-op:
no process group, no wrapper, no copy.

The trainer and the command line use this module; models, losses and the evaluator never import it (the
evaluator takes a ``gather`` function as an argument).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from sinerec.errors import SinerecError

#: The variables torchrun sets for every worker (MASTER_ADDR/MASTER_PORT come from its rendezvous).
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # "gloo" | "nccl" when a process group is joined, else None

    @property
    def enabled(self) -> bool:
        """Whether there are several processes (a process group is joined)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, logs and writes files."""
        return self.rank == 0


def init(device: torch.device | str = "cpu", timeout_s: float = 1800.0) -> DistContext:
    """Join torchrun's process group when ``WORLD_SIZE > 1`` in the environment, else stay single process.

    Args:
        device: the resolved training device. On CUDA every process takes ``cuda:LOCAL_RANK`` (one GPU per
            process) and the nccl backend; on CPU the gloo backend.
        timeout_s: how long a collective waits for the other ranks before failing.
    Returns:
        The context; with one process ``DistContext(device=device)``.
    """
    device = torch.device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=device)
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise SinerecError(f"distributed: WORLD_SIZE={world_size} but {', '.join(missing)} unset; launch with "
                           "torchrun (e.g. torchrun --nproc-per-node 2 -m sinerec train ...)")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise SinerecError(f"distributed: LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} "
                               "GPU(s) on this node; use --nproc-per-node <= the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_available():
        raise SinerecError("distributed: this torch build has no torch.distributed")
    if not dist.is_initialized():
        # env:// rendezvous: MASTER_ADDR / MASTER_PORT / RANK / WORLD_SIZE from torchrun
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend)


def cleanup(ctx: DistContext) -> None:
    """Leave the process group (no-op for one process).

    Release DDP-wrapped modules first (``Trainer.fit`` does): a DistributedDataParallel object that outlives
    the process group aborts the process at exit ("terminate called without an active exception"). The
    garbage collection here frees wrappers that are only held by reference cycles.
    """
    if ctx.enabled and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def wrap(module: nn.Module, ctx: DistContext) -> nn.Module:
    """``module`` in DistributedDataParallel (gradients averaged over ranks in ``backward``); unchanged for
    one process. DDP broadcasts rank 0's parameters at construction, so all ranks start equal."""
    if not ctx.enabled:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op for one process)."""
    if ctx.enabled:
        dist.barrier()


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects; no-op for one process)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: np.ndarray, ctx: DistContext) -> np.ndarray:
    """Elementwise sum over ranks of a small float64 vector (per-epoch loss totals, example counts)."""
    values = np.asarray(values, dtype=np.float64)
    if not ctx.enabled:
        return values
    t = torch.from_numpy(values.copy()).to(ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def all_gather_arrays(array: np.ndarray, ctx: DistContext) -> list[np.ndarray]:
    """Every rank's ``array``, in rank order; the first dimension may differ between ranks.

    The trailing dimensions and the dtype must agree. Sent as padded bytes through ``all_gather`` (gloo and
    nccl alike), so per-query evaluation results of any length cross without pickling.
    """
    array = np.ascontiguousarray(array)
    if not ctx.enabled:
        return [array]
    row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize
    sizes = torch.zeros(ctx.world_size, dtype=torch.int64, device=ctx.device)
    local_size = torch.tensor([array.shape[0]], dtype=torch.int64, device=ctx.device)
    dist.all_gather(list(sizes.chunk(ctx.world_size)), local_size)
    rows = sizes.cpu().tolist()
    width = max(rows) * row_bytes
    payload = torch.zeros(max(width, 1), dtype=torch.uint8)
    payload[:array.nbytes] = torch.from_numpy(array.reshape(-1).view(np.uint8))
    received = [torch.empty_like(payload, device=ctx.device) for _ in range(ctx.world_size)]
    dist.all_gather(received, payload.to(ctx.device))
    return [buf[:n * row_bytes].cpu().numpy().view(array.dtype).reshape((n, *array.shape[1:]))
            for buf, n in zip(received, rows, strict=True)]
