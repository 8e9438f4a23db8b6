"""What a measurement ran on: CPU, cores, torch, GPU and the load, recorded beside every benchmark's
figures (a CPU time means little without the machine and how busy it was)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def describe() -> dict:
    """The machine, the software and the load average now (``load_average_at_start``)."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    load = load_average()
    if load is not None:
        info["load_average_at_start"] = load
    return info


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
