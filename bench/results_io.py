"""How every benchmark reports: print the figures, and write them as JSON beside the others."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def machine() -> dict[str, str]:
    return {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def report(figures: dict, out: Path) -> None:
    figures = {**figures, **machine()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    width = max(len(key) for key in figures) + 2
    for key, value in figures.items():
        print(f"{key:{width}} {value}")
    print(f"wrote {out}")
