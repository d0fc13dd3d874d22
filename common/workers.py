"""How many worker processes this machine can use.

Asking for more workers than usable CPUs only adds processes that contend for the same cores
(``--workers 1000`` once spawned ~750 processes and took 6 minutes on 2 cores), so requests
are capped at the CPUs this process may run on (its affinity mask, which ``taskset``, cgroup
cpusets and batch schedulers set), with one warning per option and process.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

_warned: set[str] = set()


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
