"""Regression candidates: a failure signature that appears on a kernel whose
predecessor ran the same cell (workload, release, backend) without it. The
predecessor is the previous night's build of the same Debian suite and flavour
(sid's 7.2.13 one night, 7.2.14 the next), or the next older kernel of the same
flavour in the same run (7.2 beside 6.17). Both versions are named: that pair is
where a bisection starts. Only failures a kernel can cause count (the filesystem's
or the kernel's fault): docker's unsynced layer files come and go with where a
cut lands, whatever the kernel."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from debian.debian_support import Version

from harness.report.summary import Example, FindingGroup, kernel_series, load_summary

Cell = tuple[str, str, str]  # workload, release, backend
KERNEL_FAULTS = ("filesystem", "kernel", "unknown")


@dataclass(frozen=True)
class Candidate:
    signature: str
    workload: str
    release: str
    backend: str
    kernel: str  # the version the signature appeared on
    predecessor: str  # the version that ran the same cell without it
    why: str
    example: Example | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["example"] = self.example.model_dump(mode="json") if self.example else {}
        return d

    def describe(self) -> str:
        cell = " ".join(x for x in (self.workload, self.release, self.backend) if x)
        return (
            f"{self.signature}  ({cell}): on {self.kernel}, not on {self.predecessor} ({self.why})"
        )


@dataclass
class KernelRuns:
    """Per kernel version: its source (`suite:package=version`), the cells it ran
    and the signatures found in each."""

    source: dict[str, str] = field(default_factory=dict)
    ran: set[tuple[str, Cell]] = field(default_factory=set)
    found: dict[tuple[str, Cell], dict[str, FindingGroup]] = field(default_factory=dict)

    @classmethod
    def of(cls, runs: list[Path]) -> KernelRuns:
        out = cls()
        for run in runs:
            doc = load_summary(run)
            for info in doc.kernels or [doc.kernel_info]:
                if info.get("version"):
                    out.source[str(info["version"])] = str(info.get("source", ""))
            for b in doc.backends:
                out.ran.add((b.kernel, (b.workload or doc.workload, b.release, b.backend)))
            for f in doc.findings:
                if f.fault not in KERNEL_FAULTS:
                    continue
                cell = (f.workload, f.release, f.backend)
                out.found.setdefault((f.kernel, cell), {})[f.signature] = f
        return out

    def versions(self) -> set[str]:
        return {k for k, _ in self.ran}


def flavour(version: str) -> str:
    """6.12.117+deb13-cloud-amd64 -> cloud-amd64 (6.1.0-28-amd64 -> amd64)."""
    return kernel_series(version).partition("-")[2]


def lineage(version: str, source: str) -> str:
    """Suite and flavour of a Debian kernel (`sid/cloud-amd64`); empty for a
    kernel that is not a Debian package (a bzImage, a source tree)."""
    suite = source.split(":", 1)[0] if ":" in source and "/" not in source else ""
    return f"{suite}/{flavour(version)}" if suite else ""


def _order(version: str) -> Version:
    return Version(version.split("-")[0])


def _predecessors(
    version: str, cell: Cell, new: KernelRuns, old: KernelRuns | None
) -> list[tuple[str, str, KernelRuns]]:
    preds = []
    line = lineage(version, new.source.get(version, ""))
    if old is not None and line:
        for v in sorted(old.versions()):
            if v != version and lineage(v, old.source.get(v, "")) == line and (v, cell) in old.ran:
                preds.append((v, "the previous night's build of the same suite and flavour", old))
    older = [
        v
        for v in new.versions()
        if flavour(v) == flavour(version) and _order(v) < _order(version) and (v, cell) in new.ran
    ]
    if older:
        preds.append((max(older, key=_order), "the next older kernel in this run", new))
    return preds


def candidates(new_runs: list[Path], old_runs: list[Path] | None = None) -> list[Candidate]:
    """Regression candidates in `new_runs`: against their own older kernels, and
    against `old_runs` (the previous night) where given."""
    new = KernelRuns.of(new_runs)
    old = KernelRuns.of(old_runs) if old_runs else None
    out = []
    for (version, cell), sigs in sorted(new.found.items()):
        for pred, why, side in _predecessors(version, cell, new, old):
            absent = side.found.get((pred, cell), {})
            for sig, f in sorted(sigs.items()):
                if sig not in absent:
                    out.append(Candidate(sig, *cell, version, pred, why, f.example))
    return out
