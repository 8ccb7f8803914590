"""How busy this machine's CPUs are: what more associations would have to share.

Read from Linux's ``/proc/stat``, for the CPUs this process may run on (its
affinity). Time a CPU spent idle, waiting for I/O, or running others' work of
low priority (niced: it gives way to ours, unless ours is niced too) is free;
any other (user, system, interrupts, and steal: taken by the hypervisor for
another machine) is busy. Elsewhere, or
if it cannot be read, it is unknown. A container's CPU quota (cgroups) is not
seen: its machine's CPUs are counted.
"""

import os
from pathlib import Path

_STAT = Path("/proc/stat")
_NICE, _IDLE, _IOWAIT = 1, 3, 4
"""Fields of a ``cpuN`` line (after its name, in clock ticks) that may be free."""
_FIELDS = 8
"""user, nice, system, idle, iowait, irq, softirq, steal (guest time is in user)."""


def usable() -> frozenset[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def busy_seconds(cpus: frozenset[int]) -> tuple[float, int] | None:
    """CPU-seconds ``cpus`` have spent busy since the machine started.

    Returns:
        The seconds, and how many of ``cpus`` they are of (those listed); None if
        unknown (no ``/proc/stat``, a format not understood, none of ``cpus``).
    """
    try:
        lines = _STAT.read_text().splitlines()
        tick = os.sysconf("SC_CLK_TCK")
        free = (_IDLE, _IOWAIT) if os.nice(0) > 0 else (_NICE, _IDLE, _IOWAIT)
        busy = counted = 0
        for line in lines:
            name, _, rest = line.partition(" ")
            number = name.removeprefix("cpu")
            if name.startswith("cpu") and number.isdigit() and int(number) in cpus:
                ticks = [int(field) for field in rest.split()[:_FIELDS]]
                busy += sum(ticks) - sum(ticks[field] for field in free)
                counted += 1
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return (busy / tick, counted) if counted and tick > 0 else None
