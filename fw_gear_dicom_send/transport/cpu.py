"""How busy this machine's CPUs are: what more associations would have to share.

Read from Linux's ``/proc/stat``, for the CPUs this process may run on (its
affinity). Time a CPU spent idle or waiting for I/O is free; any other (user,
system, interrupts, and steal: taken by the hypervisor for another machine) is
busy. Elsewhere, or if it cannot be read, it is unknown. A container's CPU quota
(cgroups) is not seen: its machine's CPUs are counted.
"""

import os
from pathlib import Path

_STAT = Path("/proc/stat")
_IDLE, _IOWAIT = 3, 4
"""The free fields of a ``cpuN`` line (after its name), in clock ticks."""


def usable() -> frozenset[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def busy_seconds(cpus: frozenset[int]) -> float | None:
    """CPU-seconds ``cpus`` have spent busy since the machine started, or None."""
    try:
        lines = _STAT.read_text().splitlines()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(f) for f in fields]
            busy += sum(ticks[:8]) - ticks[_IDLE] - ticks[_IOWAIT]
    return busy / tick
