"""What a bench measured, as JSON that ``write_performance.py`` renders into docs/performance.md.

Each bench script calls :func:`write` once at its end with the figures it printed, so the
docs quote numbers from one run's files rather than from someone's copy of a terminal.

A file ``build/bench/<bench>.json`` holds::

    {"bench": "validate", "title": "...", "command": "python tests/bench/...",
     "measured_at": "2026-12-08T03:00:00+00:00", "python": "3.11.9", "nproc": 2,
     "figures": [{"figure": "validate CPU / bare SHA-256", "at": "1,000,000 rows",
                  "value": 4.0, "unit": "x"}, ...]}

Named without ``bench_`` or ``test_`` so neither make nor pytest runs it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: TikTok's rate-limit tiers, calls per second per developer app
#: (docs/tiktok-contract.md#rate-limit-how-a-second-is-counted).
TIERS = {"Basic": 10, "Advanced": 20, "Ultimate": 50}

#: Where ``make bench`` collects the results; BENCH_RESULTS overrides it (tests, other runs).
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "build" / "bench"


@dataclass(frozen=True)
class Figure:
    """One measured number: what, at which size, its value and unit."""

    figure: str
    at: str
    value: float | int
    unit: str


def results_dir() -> Path:
    return Path(os.environ.get("BENCH_RESULTS", DEFAULT_DIR))


def command_line() -> str:
    """This process's command as run from the repository root."""
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):  # a script outside the repository keeps its path
        script = script.resolve().relative_to(DEFAULT_DIR.parents[1])
    return shlex.join(["python", str(script), *sys.argv[1:]])


def write(bench: str, title: str, figures: list[Figure], **extra: Any) -> Path:
    """Write ``<results_dir>/<bench>.json``; ``extra`` keeps other fields (parameters)."""
    document = {
        "bench": bench,
        "title": title,
        "command": command_line(),
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "figures": [asdict(f) for f in figures],
        **extra,
    }
    path = results_dir() / f"{bench}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def rows_label(count: int, noun: str = "rows") -> str:
    return f"{count:,} {noun}"
