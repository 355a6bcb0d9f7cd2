"""Node health from the operating system, read without extra packages: CPU, memory, temperature where readable."""

from __future__ import annotations

import os
import time
from pathlib import Path


class SystemStats:
    def __init__(self) -> None:
        self._last_cpu = self._process_cpu()
        self._last_wall = time.monotonic()

    @staticmethod
    def _process_cpu() -> float:
        times = os.times()
        return times.user + times.system

    def cpu_percent(self) -> float:
        """This process's CPU use since the last call, as a percentage of one core (200 = two cores busy)."""
        cpu, wall = self._process_cpu(), time.monotonic()
        used = (cpu - self._last_cpu) / max(1e-6, wall - self._last_wall)
        self._last_cpu, self._last_wall = cpu, wall
        return round(100 * used, 1)

    @staticmethod
    def memory_mb() -> float:
        """Resident memory of this process."""
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return 0.0

    @staticmethod
    def temperature_c() -> float | None:
        """The hottest thermal zone, where the system exposes one (street boxes overheat in summer)."""
        readings = []
        for zone in Path("/sys/class/thermal").glob("thermal_zone*/temp"):
            try:
                readings.append(int(zone.read_text().strip()) / 1000)
            except (OSError, ValueError):
                continue
        return round(max(readings), 1) if readings else None
