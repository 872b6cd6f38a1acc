"""Process-wide defaults that keep sinerec fast on a busy machine: OpenMP wait policy, threads, precision.

PyTorch's CPU build collapses when other work shares the cores (issue 13): its OpenMP threads *spin* at every
barrier (``OMP_WAIT_POLICY`` unset), burning the time slices that the other processes and this process's own
straggling thread need. sinerec's entry points (the ``sinerec`` command, ``python -m sinerec``, the
benchmark's child processes and the server) therefore set ``OMP_WAIT_POLICY=PASSIVE``
(:func:`prefer_passive_wait`) before torch is first imported, unless the user set it (OpenMP reads it once,
when torch loads it).

Threads: a training job uses the CPUs this process may run on (its affinity mask, which torch's own default
ignores under ``taskset`` or a cpuset), at most torch's default (:func:`default_threads`), unless the user set
them (``--threads``, ``train.threads`` or ``OMP_NUM_THREADS``). It does *not* drop threads because other
processes are busy: measured side by side on 2 cores (benchmarks/speed/quiet/), one thread next to two busy
PyTorch jobs kept 25-28 % of its idle rate and two passive threads 29 % (against a truly idle baseline), and
next to one busy job 53 % against 57 %: the scheduler shares the CPUs between runnable threads, so giving up a
thread gives up a share.

``SINEREC_PROCESS_DEFAULTS=0`` keeps OpenMP's and torch's own defaults (e.g. to measure them).

Precision (:func:`resolve_precision`): ``train.amp = "auto"`` trains under bf16 autocast on CUDA, and where this
CPU computes bfloat16 products in hardware (:func:`native_bf16`: x86's AVX512-BF16 or AMX-BF16) for the models
measured to gain from it (SINE); in float32 elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping

__all__ = ["BF16_FLAGS", "OPT_OUT_ENV", "apply_default_threads", "choose_threads", "default_threads", "enabled",
           "legacy_precision", "native_bf16", "prefer_passive_wait", "resolve_precision", "usable_cpus",
           "user_set_threads"]

#: set to 0 to keep OpenMP's and torch's own defaults
OPT_OUT_ENV = "SINEREC_PROCESS_DEFAULTS"


def enabled(environ: MutableMapping[str, str] | None = None) -> bool:
    """False when ``SINEREC_PROCESS_DEFAULTS`` is ``0``, ``false``, ``no`` or ``off``."""
    env = os.environ if environ is None else environ
    return env.get(OPT_OUT_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def prefer_passive_wait(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (default ``os.environ``) unless it is set already or
    the defaults are off (:data:`OPT_OUT_ENV`). Returns whether it was set. It only takes effect in this
    process if torch has not been imported yet; child processes inherit it either way."""
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in env or not enabled(env):
        return False
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


#: /proc/cpuinfo flags of CPUs with bfloat16 dot products in hardware (x86: AVX512-BF16, AMX-BF16)
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def native_bf16(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 products in hardware: a ``flags`` line of ``cpuinfo`` names one of
    :data:`BF16_FLAGS`. False where the file is missing or unreadable (not Linux): without hardware support,
    bf16 autocast is emulated and slower than float32."""
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                if line.startswith("flags") and BF16_FLAGS & set(line.partition(":")[2].split()):
                    return True
    except OSError:
        return False
    return False


def resolve_precision(amp: str, device_type: str, cpu_bf16: bool) -> str:
    """What ``train.amp`` trains in on a device of ``device_type`` (``"cpu"``, ``"cuda"``): ``"bf16"``
    (autocast) or ``"float32"``; ``cpu_bf16`` is the model's flag (``SequentialRecommender.cpu_bf16``).

    ``auto`` is bf16 on CUDA, and on a CPU that computes bf16 products in hardware (:func:`native_bf16`) for the
    models whose flag says bf16 pays there; float32 elsewhere. SINE's does: on such a CPU (2 cores,
    AVX512-BF16) bf16 autocast trained it 1.14x faster than float32 at its shipped batch of 128 and 1.5-1.7x at
    2048 (2.1x with ``train.compile``), kept more of its rate next to other busy jobs, and left its validation
    NDCG@10 within the seeds' spread on ML-1M and above float32's on Amazon Beauty
    (benchmarks/speed/bf16-accuracy). At batch 128 SASRec, MIND and ComiRec-DR ran slower in bf16
    (benchmarks/speed/batch-128) and no baseline's accuracy was checked, so theirs does not. Parameters,
    optimiser state, evaluation, export and serving stay float32 in every case.
    """
    if amp == "bf16":
        return "bf16"
    if amp == "auto" and (device_type == "cuda" or (device_type == "cpu" and cpu_bf16 and native_bf16())):
        return "bf16"
    return "float32"


def legacy_precision(amp: str, device: str | None) -> str:
    """What a run recorded before runs named their precision trained in: ``auto`` then meant bf16 on CUDA only."""
    return "bf16" if amp == "bf16" or (amp == "auto" and (device or "").startswith("cuda")) else "float32"


def choose_threads(cpus: int, ceiling: int) -> int:
    """The intra-op threads for a process that may use ``cpus`` CPUs: ``cpus``, at least 1 and at most
    ``ceiling`` (torch's default)."""
    return max(1, min(ceiling, cpus))


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def user_set_threads(configured: int | None, environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether the user chose the thread count: ``train.threads``/``--threads`` or ``OMP_NUM_THREADS``."""
    env = os.environ if environ is None else environ
    return bool(configured) or bool(env.get("OMP_NUM_THREADS", "").strip())


def default_threads(ceiling: int) -> int:
    """:func:`choose_threads` for this process: its usable CPUs, capped by ``ceiling`` (torch's default)."""
    return choose_threads(usable_cpus(), ceiling)


class _Threads:
    """torch's own default thread count (read before sinerec first changes it) and the count sinerec set."""
    torch_default: int | None = None
    last_set: int | None = None


def apply_default_threads(configured: int | None, get_num_threads: Callable[[], int],
                          set_num_threads: Callable[[int], None]) -> int | None:
    """Set torch's threads to :func:`default_threads` unless the user chose them (``configured``, i.e.
    ``train.threads``, or ``OMP_NUM_THREADS``), the defaults are off, or the process changed them itself
    (``torch.set_num_threads`` to a value sinerec did not set). Returns the count set, or None.
    ``get_num_threads``/``set_num_threads`` are torch's (passed in: this module must not import torch)."""
    current = get_num_threads()
    if _Threads.torch_default is None:
        _Threads.torch_default = current
    if user_set_threads(configured) or not enabled() or current not in (_Threads.torch_default, _Threads.last_set):
        return None
    threads = default_threads(_Threads.torch_default)
    set_num_threads(threads)
    _Threads.last_set = threads
    return threads
