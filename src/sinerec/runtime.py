"""Process-wide defaults that keep sinerec fast on a busy machine: OpenMP's wait policy and torch's threads.

Two defaults of PyTorch's CPU build collapse when other work shares the cores (issue 13): OpenMP threads
*spin* at every barrier (``OMP_WAIT_POLICY`` unset), burning the time slices the other processes and this
process's own straggling thread need; and torch takes every core even when other processes keep some of
them busy, so each parallel region waits for a thread that is not running. sinerec's entry points (the
``sinerec`` command, ``python -m sinerec``, the benchmark's child processes and the server) therefore:

- set ``OMP_WAIT_POLICY=PASSIVE`` (:func:`prefer_passive_wait`) before torch is first imported, unless the
  user set ``OMP_WAIT_POLICY``: OpenMP reads it once, when torch loads it;
- choose torch's intra-op threads at the start of a training job (:func:`default_threads`) unless the user
  set them (``--threads``, ``train.threads`` or ``OMP_NUM_THREADS``): the usable CPUs less those other
  processes keep busy right now, at least 1, at most torch's own default (:func:`choose_threads`).

``SINEREC_PROCESS_DEFAULTS=0`` keeps OpenMP's and torch's own defaults (e.g. to measure them).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, MutableMapping

__all__ = ["OPT_OUT_ENV", "apply_default_threads", "busy_elsewhere", "choose_threads", "default_threads",
           "enabled", "prefer_passive_wait", "usable_cpus", "user_set_threads"]

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


def choose_threads(cpus: int, busy: float, ceiling: int) -> int:
    """The intra-op threads for a process that may use ``cpus`` CPUs while other processes keep ``busy``
    of them running: ``cpus - round(busy)``, at least 1 and at most ``ceiling`` (torch's default)."""
    return max(1, min(ceiling, cpus - round(busy)))


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def busy_elsewhere(samples: int = 3, interval: float = 0.01,
                   read: Callable[[], str] | None = None) -> float:
    """Runnable tasks other than this process's sampling thread: the median over ``samples`` readings of the
    running count in ``/proc/loadavg`` (``4/112`` -> 4), less 1. Where that file is missing, the 1-minute
    load average. A snapshot, not a forecast: it reflects the processes running when the job starts."""
    def from_file() -> str:
        with open("/proc/loadavg") as fh:
            return fh.read()

    reader = read or from_file
    counts = []
    try:
        for i in range(samples):
            if i:
                time.sleep(interval)
            counts.append(int(reader().split()[3].split("/")[0]))
    except (OSError, IndexError, ValueError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0
    return max(0.0, statistics.median(counts) - 1)


def user_set_threads(configured: int | None, environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether the user chose the thread count: ``train.threads``/``--threads`` or ``OMP_NUM_THREADS``."""
    env = os.environ if environ is None else environ
    return bool(configured) or bool(env.get("OMP_NUM_THREADS", "").strip())


def default_threads(ceiling: int) -> int:
    """:func:`choose_threads` for this machine now: usable CPUs less those busy elsewhere, capped by
    ``ceiling`` (torch's default thread count)."""
    return choose_threads(usable_cpus(), busy_elsewhere(), ceiling)


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
