"""Benchmark results: what each benchmark returns, and the JSON and Markdown written from them.

Every ratio is *ours / baseline* measured in the same run, oriented so that
higher is better (throughputs, not durations). A target is a threshold on one
number (a ratio, or a peak memory); ``met`` says whether this run reached it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1  # version of the JSON layout below


@dataclass(frozen=True)
class Target:
    """A threshold: ``value op threshold`` (op ``>=`` or ``<``)."""

    op: str
    threshold: float
    unit: str = "x"

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.threshold if self.op == ">=" else value < self.threshold

    def __str__(self) -> str:
        sign = "≥" if self.op == ">=" else "<"
        unit = "x" if self.unit == "x" else f" {self.unit}"
        return f"{sign} {self.threshold:g}{unit}"


@dataclass
class Line:
    """One row of the results table: our number, the baseline's, their ratio, a target."""

    metric: str  # a stable id, e.g. "submitter_vs_sequential"
    label: str  # what the row measures, for people
    ours: str  # our number, formatted with its unit
    baseline: str  # the baseline and its number, formatted ("" when there is none)
    ratio: float | None = None  # ours / baseline, higher is better
    target: Target | None = None
    value: float | None = None  # the number the target applies to (default: ratio)

    @property
    def checked(self) -> float | None:
        return self.value if self.value is not None else self.ratio

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.checked)


@dataclass
class Result:
    """What one benchmark measured."""

    name: str
    title: str
    sizes: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)  # product settings used
    measured: dict[str, Any] = field(default_factory=dict)  # our variants' raw numbers
    baseline: dict[str, Any] = field(default_factory=dict)  # the baselines' raw numbers
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"  # "ok", or "error" when the benchmark could not complete
    error: str | None = None
    seconds: float = 0.0  # wall time of the whole benchmark, set-up included

    @property
    def met(self) -> bool | None:
        """Every target met (None when the benchmark has no target or did not complete)."""
        verdicts = [line.met for line in self.lines if line.target is not None]
        if self.status != "ok" or not verdicts:
            return None
        return all(bool(v) for v in verdicts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "error": self.error,
            "seconds": round(self.seconds, 1),
            "sizes": self.sizes,
            "settings": self.settings,
            "measured": self.measured,
            "baseline": self.baseline,
            "ratios": {line.metric: line.ratio for line in self.lines if line.ratio is not None},
            "targets": [
                {
                    "metric": line.metric,
                    "value": line.checked,
                    "target": str(line.target),
                    "met": line.met,
                }
                for line in self.lines
                if line.target is not None
            ],
            "met": self.met,
            "lines": [
                {
                    "metric": line.metric,
                    "label": line.label,
                    "ours": line.ours,
                    "baseline": line.baseline,
                    "ratio": line.ratio,
                    "target": str(line.target) if line.target else None,
                    "met": line.met,
                }
                for line in self.lines
            ],
            "notes": self.notes,
        }


# --- the machine -------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Cores, memory, load and Python of this machine, as the results record them."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "memory_gib": None,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        info["load_average"] = None
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


# --- writing -----------------------------------------------------------------------------


def document(
    results: list[Result], *, size: str, started: dt.datetime, load_before: Any
) -> dict[str, Any]:
    """The whole JSON document of a run."""
    info = machine()
    info["load_average_before"] = load_before
    return {
        "schema": SCHEMA,
        "suite": "substra-worker benchmarks",
        "size": size,
        "date": started.isoformat(timespec="seconds"),
        "machine": info,
        "benchmarks": {r.name: r.as_dict() for r in results},
    }


def _verdict(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "—"}[met]


def markdown(doc: dict[str, Any]) -> str:
    """The results table (the README includes it), with the date and the machine."""
    m = doc["machine"]
    load = m.get("load_average_before")
    load_text = f", load average {load[0]:.2f} at start" if load else ""
    lines = [
        f"Measured {doc['date']} ({doc['size']} size) on {m['cores']} cores, "
        f"{m['memory_gib']} GiB RAM, Python {m['python']}"
        + (f", {m['cpu']}" if m.get("cpu") else "")
        + f"{load_text}. Ratios are ours / baseline, higher is better.",
        "",
        "| benchmark | ours | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for bench in doc["benchmarks"].values():
        if bench["status"] != "ok":
            lines.append(
                f"| {bench['title']} | did not complete: {bench['error']} | | | | **no** |"
            )
            continue
        for row in bench["lines"]:
            ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "—"
            lines.append(
                f"| {row['label']} | {row['ours']} | {row['baseline'] or '—'} | {ratio} "
                f"| {row['target'] or '—'} | {_verdict(row['met'])} |"
            )
    sizes = "; ".join(
        f"{b['name']}: " + ", ".join(f"{k} {v}" for k, v in b["sizes"].items())
        for b in doc["benchmarks"].values()
    )
    lines += ["", f"Sizes: {sizes}."]
    notes = [(b["title"], n) for b in doc["benchmarks"].values() for n in b.get("notes", [])]
    if notes:
        lines += [""] + [f"- {title}: {note}" for title, note in notes]
    return "\n".join(lines) + "\n"


def write(doc: dict[str, Any], json_path: Path, md_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown(doc), encoding="utf-8")


START_MARK = "<!-- results: generated by python -m bench, do not edit -->"
END_MARK = "<!-- end of results -->"


def update_readme(readme: Path, table: str) -> bool:
    """Put ``table`` between the results marks of ``readme``; False when it has none."""
    try:
        text = readme.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    start, end = text.find(START_MARK), text.find(END_MARK)
    if start < 0 or end < start:
        return False
    head = text[: start + len(START_MARK)]
    readme.write_text(f"{head}\n{table}{text[end:]}", encoding="utf-8")
    return True
