"""Process-wide defaults that keep sinerec fast on a busy machine: OpenMP's wait policy and torch's threads.

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
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping

__all__ = ["OPT_OUT_ENV", "apply_default_threads", "choose_threads", "default_threads", "enabled",
           "prefer_passive_wait", "usable_cpus", "user_set_threads"]

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
