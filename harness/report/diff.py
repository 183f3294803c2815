"""`crashtest diff OLD NEW`: which failure signatures are new, gone and still
failing between two runs (or two sets of runs: each side is every run under
the directories given). A finding is a signature in a cell (workload, release,
kernel series, backend): a known bug showing up on another backend is new."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.model import StateResult
from harness.report.results import BackendSummary, findings

Key = tuple[str, str, str, str, str]


def find_runs(dirs: list[Path]) -> list[Path]:
    """Result directories holding a summary.json: the ones given, or the runs under them."""
    runs: list[Path] = []
    for d in dirs:
        if (d / "summary.json").is_file():
            runs.append(d)
            continue
        if not d.is_dir():
            raise InputError(f"{d} is not a directory")
        # A corpus run holds its campaigns as ENTRY/KERNEL/RUN_ID.
        pattern = "*/*/*/summary.json" if (d / "corpus.json").is_file() else "*/summary.json"
        found = sorted(p.parent for p in d.glob(pattern) if not p.parent.is_symlink())
        if not found:
            raise InputError(f"no summary.json in {d} or its subdirectories")
        runs.extend(found)
    return list(dict.fromkeys(r.resolve() for r in runs))


def load_summary(run: Path) -> dict[str, Any]:
    try:
        doc = json.loads((run / "summary.json").read_text())
        if not isinstance(doc, dict) or "backends" not in doc:
            raise ValueError("no backends")
    except (OSError, ValueError) as e:
        raise InputError(f"{run}/summary.json is not a crashtest summary ({e})") from e
    if "findings" not in doc:  # written before signatures: derive them
        backends = []
        for b in doc["backends"]:
            s = BackendSummary(
                b["backend"],
                b["kernel"],
                b.get("image", ""),
                b.get("accel", ""),
                b.get("cuts", 0),
                b.get("options", {}),
                release=b.get("release", ""),
                workload=b.get("workload") or doc.get("workload", ""),
            )
            s.states = [StateResult.from_json(x) for x in b.get("states", [])]
            backends.append(s.to_json())
        doc["findings"] = findings(backends)
    return dict(doc)


def key(f: dict[str, Any]) -> Key:
    return (f["workload"], f["release"], f["kernel_series"], f["backend"], f["signature"])


@dataclass
class Diff:
    old: list[str]
    new: list[str]
    appeared: list[dict[str, Any]]
    gone: list[dict[str, Any]]
    still: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "new_findings": self.appeared,
            "gone": self.gone,
            "still_failing": self.still,
        }


def side(runs: list[Path]) -> dict[Key, dict[str, Any]]:
    out: dict[Key, dict[str, Any]] = {}
    for run in runs:
        for f in load_summary(run)["findings"]:
            k = key(f)
            if k in out:
                out[k] = {
                    **out[k],
                    "count": out[k]["count"] + f["count"],
                    "states": out[k]["states"] + f["states"],
                }
            else:
                out[k] = {**f, "run": str(run)}
    return out


def diff(old: list[Path], new: list[Path]) -> Diff:
    a, b = side(find_runs(old)), side(find_runs(new))
    return Diff(
        [str(p) for p in old],
        [str(p) for p in new],
        [b[k] for k in sorted(b.keys() - a.keys())],
        [a[k] for k in sorted(a.keys() - b.keys())],
        [b[k] for k in sorted(a.keys() & b.keys())],
    )


def describe(f: dict[str, Any]) -> str:
    cell = " ".join(x for x in (f["workload"], f["release"], f["kernel_series"], f["backend"]) if x)
    known = f" [known: {f['known']}]" if f.get("known") else ""
    return f"{f['signature']}  ({cell}; {f['states']} states){known}"
