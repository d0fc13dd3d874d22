"""How many worker processes this machine can use.

Asking for more workers than usable CPUs only adds processes that contend for the same cores
(``--workers 1000`` once spawned ~750 processes and took 6 minutes on 2 cores), so requests
are capped at the CPUs this process may run on (its affinity mask, which ``taskset``, cgroup
cpusets and batch schedulers set), with one warning per option and process.

Two kinds of ``--workers`` share the name, each with one meaning and one default:

* process pools (``occsim generate``, ``occsim synth``): :data:`PROCESS_WORKERS`, 0 = every
  usable core (:func:`resolve_workers`), the default;
* data loaders (``reid train``, ``study``, ``eval``, ``embed``): PyTorch DataLoader worker
  processes, 0 = images read in the main process; 4 for training (``TrainConfig.workers``),
  0 for the one-pass commands (``EvalConfig.workers``, ``EmbedConfig.workers``).
"""

from __future__ import annotations

import logging
import numbers
import os

from common.errors import BadInputError
from common.options import Option

logger = logging.getLogger(__name__)

_warned: set[str] = set()

#: ``--workers`` of the commands that run a pool of processes: 0 = all cores (see :func:`resolve_workers`).
PROCESS_WORKERS = Option(0, "Worker processes; 0 = all cores.", low=0,
                         why="must be 0 (all cores) or a positive integer")


def usable_cpus() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` where it is missing)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def cap_workers(requested: int, option: str = "--workers") -> int:
    """``requested`` worker processes, at most :func:`usable_cpus`; 0 (a caller's "none" or
    "auto") is returned as is. Warns once per ``option`` when it lowers the count."""
    available = usable_cpus()
    if requested <= available:
        return requested
    if option not in _warned:
        _warned.add(option)
        logger.warning("%s %d: only %d CPUs are usable here; using %d worker processes",
                       option, requested, available, available)
    return available


def resolve_workers(workers: int) -> int:
    """Processes of a pool asked for with :data:`PROCESS_WORKERS`: ``workers`` capped at the
    usable CPUs (:func:`cap_workers`), or every usable core for 0.

    Raises:
        BadInputError: not a whole number, or negative.
    """
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral):
        raise BadInputError(f"--workers {workers!r}: must be a whole number")
    PROCESS_WORKERS.check("workers", workers)
    if workers > 0:
        return cap_workers(int(workers))
    from joblib import cpu_count  # the affinity mask and cgroup CPU quotas

    return max(1, cpu_count())
