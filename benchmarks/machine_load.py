"""How busy the machine was during a measurement (shared by the speed benchmarks, which warn when
other processes competed for the cores)."""

from __future__ import annotations

import os


def busy_seconds() -> float | None:
    """CPU seconds all processes have used (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
