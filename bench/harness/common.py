"""Small shared pieces: paths, figures over several runs, percentiles."""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The checkout's own venv; in a git worktree without one, the venv of the Python that
# runs the bench (PYTHONPATH then points its processes at this checkout's code).
BIN = ROOT / ".venv/bin" if (ROOT / ".venv/bin").is_dir() else Path(sys.executable).parent
PYTHON = str(BIN / "python")
KOPPEL = str(BIN / "koppel")


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile `p` (0-100) of `values`; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


@dataclass
class Figure:
    """One measured quantity over several runs (rates per second or milliseconds)."""

    unit: str
    runs: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Operations per CPU-second of the process under test, per run: steadier than rates
    # when other processes share the machine.
    per_cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    @property
    def low(self) -> float:
        return min(self.runs) if self.runs else float("nan")

    @property
    def high(self) -> float:
        return max(self.runs) if self.runs else float("nan")


def say(message: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print(message, file=sys.stderr, flush=True)
