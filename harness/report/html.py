"""`crashtest report DIR...`: one static HTML page from result directories.

The kernel x backend x workload matrix (pass/fail, states checked), every
violation with its evidence and reproducer command, timings, and small inline
SVG plots. No scripts and no external files: the page can be mailed or archived.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.model import CLASSES, FAULTS
from harness.report.corpus import CorpusView
from harness.report.diff import find_runs
from harness.report.regress import candidates
from harness.report.render import write_page
from harness.report.summary import BackendRecord, FindingGroup, Summary, load_corpus, load_summary


@dataclass
class Cell:
    run: str
    run_dir: Path
    kernel: str
    backend: str
    workload: str
    data: BackendRecord
    release: str = ""
    findings: list[FindingGroup] = field(default_factory=list)  # the run's
    known_entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def row(self) -> str:
        return " · ".join(x for x in (self.kernel, self.release) if x)

    @property
    def failing(self) -> int:
        return sum(1 for v in self.data.violations if v.fails)


def load_cells(docs: dict[Path, Summary]) -> list[Cell]:
    return [
        Cell(
            doc.run_id or run.name,
            run,
            b.kernel,
            b.backend,
            b.workload or doc.workload or "default",
            b,
            b.release,
            doc.findings,
            list(doc.known_failures.get("entries", [])),
        )
        for run, doc in docs.items()
        for b in doc.backends
    ]


def _cell_findings(cell: Cell) -> list[FindingGroup]:
    return [
        f
        for f in cell.findings
        if (f.backend, f.workload or cell.workload, f.release, f.kernel)
        == (cell.backend, cell.workload, cell.release, cell.kernel)
    ]


_HEADS = {
    "new-docker": "NEW: docker's fault",
    "known": "known only",
    "error": "harness errors",
    "pass": "PASS",
}


def _matrix(cells: list[Cell]) -> dict[str, Any]:
    """Each cell says whose fault its violations are, new and known apart: docker's
    bugs show as docker's, not as the backend failing."""
    cols = sorted({(c.workload, c.backend) for c in cells})
    rows = []
    for k in sorted({c.row for c in cells}):
        row: list[dict[str, Any] | None] = []
        for w, b in cols:
            here = [c for c in cells if (c.row, c.backend, c.workload) == (k, b, w)]
            if not here:
                row.append(None)
                continue
            found = [f for c in here for f in _cell_findings(c)]
            new = [f for f in found if not f.known]
            errs = sum(len(c.data.harness_errors) for c in here)
            faults = Counter(str(f.fault) for f in new)
            if new:
                status = "new-fs" if set(faults) - {"docker"} else "new-docker"
            else:
                status = "known" if found else "error" if errs else "pass"
            head = (
                "NEW: " + ", ".join(f"{f}'s fault" for f in sorted(faults))
                if status == "new-fs"
                else _HEADS[status]
            )
            lines = [f"{sum(c.data.states_checked for c in here)} states"]
            by_fault = Counter[tuple[str, bool]]()
            for f in found:
                by_fault[(f.fault, bool(f.known))] += f.states
            lines += [
                f"{n} states: {fault}'s fault" + (" (known)" if known else "")
                for (fault, known), n in sorted(by_fault.items())
            ]
            if errs:
                lines.append(f"{errs} harness errors")
            row.append({"status": status, "head": head, "lines": lines})
        rows.append({"label": k, "cells": row})
    return {"cols": cols, "rows": rows}


def _cells_of(members: list[tuple[Cell, FindingGroup]]) -> list[str]:
    """Each cell a signature showed in, once however many runs of it were given,
    with the states that showed it."""
    states = Counter[str]()
    for _, f in members:
        states[f"{f.workload} {f.release} {f.kernel} {f.backend}"] += f.states
    return [f"{cell} ({n})" for cell, n in states.items()]


def _findings(cells: list[Cell], base: Path) -> list[dict[str, Any]]:
    """Findings grouped by signature, new first: whose fault, where and how often,
    one example's evidence in full, and the command that reproduces it."""
    groups: dict[str, list[tuple[Cell, FindingGroup]]] = {}
    for c in cells:
        for f in _cell_findings(c):
            groups.setdefault(f.signature, []).append((c, f))
    known = {e["id"]: e for c in cells for e in c.known_entries}
    out = []
    for sig, members in sorted(
        groups.items(),
        key=lambda kv: (all(f.known for _, f in kv[1]), kv[1][0][1].fault == "docker", kv[0]),
    ):
        first_c, first = members[0]
        ex = first.example
        out.append(
            {
                "signature": sig,
                "known": all(f.known for _, f in members),
                "fault": str(first.fault),
                "cls": str(first.cls),
                "object": sig.rsplit(" | ", 1)[-1],
                "states": sum(f.states for _, f in members),
                "cells": _cells_of(members),
                "entry": known.get(first.known),
                "why": FAULTS.get(first.fault, ""),
                "example": ex,
                "bundle": os.path.relpath(first_c.run_dir / ex.bundle, base) if ex.bundle else "",
            }
        )
    return out


def _not_seen(runs: dict[Path, Summary]) -> dict[str, Any]:
    """Known failures that could have shown in these runs and did not: fixed, or
    not hit this time (worth a look before dropping the entry)."""
    docs = list(runs.values())
    lists = [set(d.totals.known_not_seen) for d in docs if d.known_failures.get("entries")]
    gone = set.intersection(*lists) if lists else set()
    entries = {e["id"]: e for d in docs for e in d.known_failures.get("entries", [])}
    return {
        "where": "this run" if len(docs) == 1 else "these runs",
        "entries": [(i, entries[i].get("reason", "")) for i in sorted(gone)],
    }


def _history(cells: list[Cell]) -> dict[str, Any]:
    """Each signature across the runs given, oldest first: states that showed it."""
    runs = sorted({c.run for c in cells})
    seen: dict[str, Counter[str]] = {}
    if len(runs) > 1:
        for c in cells:
            for f in _cell_findings(c):
                seen.setdefault(f.signature, Counter())[c.run] += f.states
    return {
        "runs": runs,
        "rows": [(sig, [counts[r] for r in runs]) for sig, counts in sorted(seen.items())],
    }


def _environment(runs: dict[Path, Summary]) -> list[dict[str, Any]]:
    """What ran, per run: kernels, images, docker, QEMU, accel, seed."""
    return [
        {
            "run": doc.run_id or run.name,
            "kernels": [
                f"{k.get('version', '?')} ({k.get('source', '')}; "
                f"build id {str(k.get('build_id', '?'))[:16]})"
                for k in doc.kernels or [doc.kernel_info]
            ],
            "manifest": ", ".join(f"{r} {m}" for r, m in doc.images.items())
            or str(doc.image_manifest.get("id", "")),
            "images": [
                f"{rel}: docker.io {p.get('docker.io', '?')}, "
                f"containerd {p.get('containerd', '?')}, runc {p.get('runc', '?')}"
                for rel, p in doc.releases.items()
            ],
            "qemu": doc.qemu_version or doc.qemu,
            "accel": ", ".join(sorted({b.accel for b in doc.backends})),
            "seed": doc.seed,
            "known": doc.known_failures.get("source") or "none",
            "fail_on": doc.fail_on,
        }
        for run, doc in runs.items()
    ]


TIMING_KEYS = ["live_cycle_wall_s", "replay_state_wall_s", "verify_boot_s", "workload_workload_s"]


def _timings(cells: list[Cell]) -> dict[str, Any]:
    return {
        "columns": TIMING_KEYS,
        "rows": [
            [c.run, c.kernel, c.backend, c.data.accel, c.data.wall_s]
            + [c.data.mean_timings_s.get(k, "") for k in TIMING_KEYS]
            for c in cells
        ],
    }


def _observed(cells: list[Cell]) -> list[dict[str, str]]:
    """What observed files (files changed without fsync) were in the crash states."""
    return [
        {
            "workload": c.workload,
            "row": c.row,
            "backend": c.backend,
            "target": target,
            "counts": ", ".join(f"{label} {n}" for label, n in counts.items()),
        }
        for c in cells
        for target, counts in c.data.observed.items()
    ]


def _headline(cells: list[Cell]) -> dict[str, Any]:
    """What is new and whose fault, in one sentence, before anything else."""
    found = [f for c in cells for f in _cell_findings(c)]
    new = [f for f in found if not f.known]
    known = [f for f in found if f.known]
    errs = sum(len(c.data.harness_errors) for c in cells)
    parts = []
    for label, group in (("new", new), ("known", known)):
        by_fault: dict[str, list[FindingGroup]] = {}
        for f in group:
            by_fault.setdefault(f.fault, []).append(f)
        for fault, fs in sorted(by_fault.items(), key=lambda kv: kv[0] == "docker"):
            n = len({f.signature for f in fs})
            parts.append(
                f"{n} {label} signature{'s' if n > 1 else ''}, {fault}'s fault "
                f"({sum(f.states for f in fs)} states in "
                f"{len({(f.workload, f.release, f.kernel, f.backend) for f in fs})} cells)"
            )
    text = (
        "; ".join(parts) if new else "Nothing new" + (": " + "; ".join(parts) if parts else "")
    ) + "."
    if errs:
        text += f" {errs} states the harness could not decide."
    return {"text": text, "red": bool(new or errs)}


def _plots(cells: list[Cell]) -> list[tuple[str, dict[str, float], str]]:
    states = Counter[str]()
    for c in cells:
        states[f"{c.kernel.split('-')[0]} {c.backend}"] += c.data.states_checked
    classes = Counter(str(v.cls) for c in cells for v in c.data.violations)
    per_state: dict[str, float] = {}
    for kind in ("live", "replay"):
        walls = [s.wall_s for c in cells for s in c.data.states if s.kind == kind]
        if walls:
            per_state[f"{kind} (mean of {len(walls)})"] = round(sum(walls) / len(walls), 1)
    return [
        ("states checked", dict(states), ""),
        (
            "violations by class",
            {k: classes.get(k, 0) for k in CLASSES if k != "harness-error"},
            "",
        ),
        ("time per state", per_state, " s"),
    ]


def write_report(dirs: list[Path], out: Path | None = None) -> Path:
    try:
        runs = find_runs(dirs)
        docs = {run: load_summary(run) for run in runs}  # each read once
        cells = load_cells(docs)
    except InputError as e:
        raise InputError(f"report: {e}") from e
    out = out or (runs[0] / "report.html" if len(runs) == 1 else dirs[0] / "report.html")
    base = out.resolve().parent
    corpora = [
        CorpusView(doc, os.path.relpath(d, base) + "/")
        for d in dirs
        if (doc := load_corpus(d)) is not None
    ]
    return write_page(
        out,
        "report.html.j2",
        title="crashtest report",
        headline=_headline(cells),
        corpora=corpora,
        runs=[r.name for r in runs],
        totals={
            "states": sum(c.data.states_checked for c in cells),
            "violations": sum(c.failing for c in cells),
            "errors": sum(len(c.data.harness_errors) for c in cells),
        },
        generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        matrix=_matrix(cells),
        findings=_findings(cells, base),
        regressions=candidates(runs),
        not_seen=_not_seen(docs),
        history=_history(cells),
        environment=_environment(docs),
        plots=_plots(cells),
        observed=_observed(cells),
        errors=[(c.run, e.state, e.error) for c in cells for e in c.data.harness_errors],
        timings=_timings(cells),
    )
