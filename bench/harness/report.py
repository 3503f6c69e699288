"""The one table (terminal and Markdown) and docs/benchmarks.md."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from bench.harness.common import Figure
from bench.harness.targets import REFERENCES, TARGETS

SOAK_BEGIN = "<!-- soak:begin -->"
SOAK_END = "<!-- soak:end -->"
HISTORY = "## History"


def _num(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "ms":
        return f"{value:.1f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def _per_cpu(figure: Figure | None) -> str:
    if figure is None or not figure.per_cpu:
        return "-"
    return _num(statistics.median(figure.per_cpu), "/s")


def rows(figures: dict[str, Figure], scenarios: list[str]) -> list[list[str]]:
    """scenario, median, min, max, per CPU-s, reference, ratio, target, met."""
    out = []
    for target in TARGETS:
        if target.scenario not in scenarios:
            continue
        figure = figures.get(target.source)
        unit = figure.unit if figure else ""
        ref = figures.get(target.reference) if target.reference else None
        ratio = target.ratio_of(figures)
        met = target.met(figures)
        out.append([
            target.label,
            _num(figure.median, unit) if figure else "-",
            _num(figure.low, unit) if figure else "-",
            _num(figure.high, unit) if figure else "-",
            _per_cpu(figure),
            f"{_num(ref.median, ref.unit)}" if ref else "-",
            f"{ratio:.2f}x" if ratio is not None else "-",
            target.describe(),
            {True: "yes", False: "NO", None: "n/a"}[met],
        ])
    for key, label in REFERENCES.items():
        figure = figures.get(key)
        if figure and figure.runs:
            out.append([f"reference: {label}", _num(figure.median, figure.unit),
                        _num(figure.low, figure.unit), _num(figure.high, figure.unit),
                        _per_cpu(figure), "", "", "", ""])
    return out


HEADER = ["scenario", "median", "min", "max", "per CPU-s", "reference", "ratio", "target",
          "met"]


def text_table(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *table]) for i in range(len(HEADER))]
    lines = []
    for row in [HEADER, *table]:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:7], widths[1:7], strict=True)]
        cells += [row[7].ljust(widths[7]), row[8]]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table]
    return "\n".join(lines)


def notes(figures: dict[str, Figure]) -> list[str]:
    return [f"- {name}: {note}" for name, f in figures.items() for note in f.notes]


def _section(text: str, begin: str, end: str) -> str:
    if begin in text and end in text:
        return text[text.index(begin):text.index(end) + len(end)]
    return ""


def _history(text: str) -> str:
    return text[text.index(HISTORY):] if HISTORY in text else ""


def write_doc(path: Path, body: str, soak: str | None = None) -> None:
    """Replace the benchmark part of `path`; keep its soak section unless a new one is
    given, and its history section."""
    old = path.read_text() if path.exists() else ""
    soak_part = (f"{SOAK_BEGIN}\n{soak}\n{SOAK_END}" if soak is not None
                 else _section(old, SOAK_BEGIN, SOAK_END))
    parts = [body.rstrip()]
    if soak_part:
        parts.append(soak_part)
    history = _history(old)
    if history:
        parts.append(history.rstrip())
    path.write_text("\n\n".join(parts) + "\n")


def replace_soak(path: Path, soak: str) -> None:
    """Only the soak section of `path` (appended if it has none)."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{SOAK_BEGIN}\n{soak}\n{SOAK_END}"
    current = _section(old, SOAK_BEGIN, SOAK_END)
    if current:
        new = old.replace(current, section)
    elif HISTORY in old:
        new = old.replace(HISTORY, section + "\n\n" + HISTORY, 1)
    else:
        new = old.rstrip() + "\n\n" + section + "\n"
    path.write_text(new)
