"""`crashtest diff OLD NEW`: which failure signatures are new, gone and still
failing between two runs (or two sets of runs: each side is every run under
the directories given). A finding is a signature in a cell (workload, release,
kernel series, backend): a known bug showing up on another backend is new."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.report.summary import SUMMARY_JSON, FindingGroup, load_summary

Key = tuple[str, str, str, str, str]


def find_runs(dirs: list[Path]) -> list[Path]:
    """Result directories holding a summary.json: the ones given, or the runs under them."""
    runs: list[Path] = []
    for d in dirs:
        if (d / SUMMARY_JSON).is_file():
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


def key(f: FindingGroup) -> Key:
    return (f.workload, f.release, f.kernel_series, f.backend, f.signature)


@dataclass
class Seen:
    """A finding on one side of a diff: counts summed over that side's runs."""

    finding: FindingGroup
    run: str

    def to_json(self) -> dict[str, Any]:
        return {**self.finding.model_dump(mode="json"), "run": self.run}


@dataclass
class Diff:
    old: list[str]
    new: list[str]
    appeared: list[Seen]
    gone: list[Seen]
    still: list[Seen]

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "new_findings": [f.to_json() for f in self.appeared],
            "gone": [f.to_json() for f in self.gone],
            "still_failing": [f.to_json() for f in self.still],
        }


def side(runs: list[Path]) -> dict[Key, Seen]:
    out: dict[Key, Seen] = {}
    for run in runs:
        for f in load_summary(run).findings:
            k = key(f)
            if k in out:
                was = out[k].finding
                out[k].finding = was.model_copy(
                    update={"count": was.count + f.count, "states": was.states + f.states}
                )
            else:
                out[k] = Seen(f, str(run))
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


def describe(f: FindingGroup) -> str:
    cell = " ".join(x for x in (f.workload, f.release, f.kernel_series, f.backend) if x)
    known = f" [known: {f.known}]" if f.known else ""
    return f"{f.signature}  ({cell}; {f.states} states){known}"
