"""Writing a run's results: summary.json (report.summary) and JUnit XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.model import StateResult, UnitKind, Violation
from harness.report.known import KnownList
from harness.report.summary import (
    BackendRecord,
    HarnessErrorRecord,
    RecordedViolation,
    RunMeta,
    StateRecord,
    Summary,
    Totals,
    findings,
    kernel_series,
)


@dataclass
class BackendSummary:
    backend: str
    kernel: str
    image: str
    accel: str
    cuts: int
    options: dict[str, str]
    states: list[StateResult] = field(default_factory=list)
    wall_s: float = 0.0
    replay: dict[str, Any] = field(default_factory=dict)
    release: str = ""
    workload: str = ""
    docker: dict[str, str] = field(default_factory=dict)  # driver and versions dockerd reported

    @property
    def cell(self) -> dict[str, str]:
        return {
            "backend": self.backend,
            "kernel": self.kernel,
            "release": self.release,
            "workload": self.workload,
        }

    def record(self, known: KnownList | None = None) -> BackendRecord:
        known = known or KnownList()

        def recorded(v: Violation) -> RecordedViolation:
            return RecordedViolation.of(v, known.match(v, self.cell))

        return BackendRecord(
            backend=self.backend,
            kernel=self.kernel,
            image=self.image,
            release=self.release,
            workload=self.workload,
            docker=self.docker,
            accel=self.accel,
            cuts=self.cuts,
            options=self.options,
            states_checked=sum(1 for s in self.states if not s.harness_error),
            violations=[recorded(v) for s in self.states for v in s.violations],
            harness_errors=[
                HarnessErrorRecord(state=s.state, error=s.harness_error)
                for s in self.states
                if s.harness_error
            ],
            wall_s=round(self.wall_s, 1),
            mean_timings_s=self.mean_timings(),
            live_cuts=sum(1 for s in self.states if s.kind == UnitKind.LIVE),
            replayed_states=sum(1 for s in self.states if s.kind == UnitKind.REPLAY),
            replay=self.replay,
            observed=self.observed(),
            states=[
                StateRecord.model_validate(
                    {**s.to_json(), "violations": [recorded(v) for v in s.violations]}
                )
                for s in self.states
            ],
        )

    def observed(self) -> dict[str, dict[str, int]]:
        """For each observed file: in how many states it was each outcome."""
        out: dict[str, Counter[str]] = {}
        for s in self.states:
            for target, label in s.observed.items():
                out.setdefault(target, Counter())[label] += 1
        return {t: dict(sorted(c.items())) for t, c in sorted(out.items())}

    def mean_timings(self) -> dict[str, float]:
        return mean_timings(self.states)


def mean_timings(states: list[StateResult], digits: int = 2) -> dict[str, float]:
    """Mean of each timing over the states that have it, plus the cycle wall time."""
    keys = sorted({k for s in states for k in s.timings})
    out = {
        k: round(
            sum(s.timings[k] for s in states if k in s.timings)
            / sum(1 for s in states if k in s.timings),
            digits,
        )
        for k in keys
    }
    for kind, key in (("live", "live_cycle_wall_s"), ("replay", "replay_state_wall_s")):
        walls = [s.wall_s for s in states if s.kind == kind]
        if walls:
            out[key] = round(sum(walls) / len(walls), digits)
    return out


FAIL_ON = ("new", "any")


def write_results(
    run_dir: Path,
    meta: RunMeta,
    backends: list[BackendSummary],
    known: KnownList | None = None,
    fail_on: str = "",
) -> Summary:
    """summary.json and junit.xml; the summary returned. With a known-failures
    list, findings are new or known, and `fail_on` (new by default then, else
    any) says which of them fail the run."""
    known = known or KnownList()
    fail_on = fail_on or ("new" if known.entries else "any")
    records = [b.record(known) for b in backends]
    found = findings(records)
    real = [v for b in records for v in b.violations if v.fails]
    seen = Counter(v.known for v in real if v.known)
    could = [e.id for e in known.entries if any(e.applies_to(b.cell) for b in backends)]
    new = sum(1 for v in real if not v.known)
    totals = Totals(
        states_checked=sum(b.states_checked for b in records),
        violations=len(real),
        new=new,
        known=len(real) - new,
        new_signatures=sorted({f.signature for f in found if not f.known}),
        known_seen=dict(sorted(seen.items())),
        known_not_seen=[i for i in could if i not in seen],
        failing=new if fail_on == "new" else len(real),
        leaks=sum(1 for b in records for v in b.violations if not v.fails),
        harness_errors=sum(len(b.harness_errors) for b in records),
        faults=dict(sorted(Counter(str(v.fault) for v in real).items())),
    )
    summary = Summary(
        **meta.model_dump(by_alias=False),
        known_failures=known.to_json(),
        fail_on=fail_on,
        backends=records,
        findings=found,
        totals=totals,
    )
    write_junit(run_dir, summary)
    summary.write(run_dir)
    return summary


def _junit_part(text: str) -> str:
    return text.replace(".", "_").replace(" ", "_") or "-"


def junit_names(b: BackendRecord, full_kernel: bool = False) -> tuple[str, list[str]]:
    """A backend's classname and its states' test names, the same in every run of
    the same campaign: cell axes in the classname (the kernel by series, so a
    nightly's moving point release keeps the names; by version when a run has
    two of one series); live cuts by number and cut point (not the seeded delay),
    lost-cache states by position (their ids carry the write log's digest, which
    differs per run)."""
    kernel = b.kernel if full_kernel else kernel_series(b.kernel)
    parts = [b.workload, b.release, kernel, b.backend]
    cls = ".".join(["crashtest", *(_junit_part(p) for p in parts if p)])
    names, replayed = [], 0
    for s in b.states:
        if s.kind == UnitKind.REPLAY:
            names.append(f"replay {replayed:03d}")
            replayed += 1
        else:
            cut = s.state.split("/", 1)[-1]
            names.append(re.sub(r"-[0-9.]+s$", "", cut).replace("/", " "))
    return cls, names


def write_junit(run_dir: Path, summary: Summary) -> Path:
    """One test case per checked state: a new violation is a failure, a known one
    is skipped (with why) unless the run fails on any, a harness error is an
    error. Each failure says where its reproducer bundle is and how to run it."""
    fail_on = summary.fail_on
    suites = ET.Element("testsuites", name="crashtest")
    series = Counter(kernel_series(k) for k in {b.kernel for b in summary.backends})
    for b in summary.backends:
        cls, names = junit_names(b, full_kernel=series[kernel_series(b.kernel)] > 1)
        suite = ET.SubElement(
            suites, "testsuite", name=cls, tests=str(len(b.states)), time=f"{b.wall_s:.1f}"
        )
        counts = Counter[str]()
        for s, name in zip(b.states, names, strict=True):
            case = ET.SubElement(
                suite, "testcase", classname=cls, name=name, time=f"{s.wall_s:.1f}"
            )
            out = [f"state {s.state}: {s.plan}"]
            real = [v for v in s.violations if v.fails]
            new = [v for v in real if fail_on == "any" or not v.known]
            where = (
                f"\nbundle: {s.bundle} (in the run directory); reproduce: "
                f"crashtest repro {s.bundle}"
                if s.bundle
                else ""
            )
            out += [f"leak: {v.promise}: {v.evidence}" for v in s.violations if not v.fails]
            if new:
                v = new[0]
                fail = ET.SubElement(
                    case,
                    "failure",
                    type=v.cls,
                    message=f"{v.signature}: {v.promise}"
                    + (f" (known: {v.known})" if v.known else "")
                    + (f"; bundle {s.bundle}" if s.bundle else ""),
                )
                fail.text = (
                    "\n\n".join(
                        f"[{v.cls}, {v.fault}'s fault] {v.promise}\n"
                        + "\n".join(f"{k}:\n{val}" for k, val in v.evidence.items())
                        for v in new
                    )
                    + where
                )
                counts["failures"] += 1
            elif real:
                ET.SubElement(
                    case,
                    "skipped",
                    message="known failure: " + ", ".join(sorted({v.known for v in real})),
                )
                out += [f"known ({v.known}): {v.signature}: {v.promise}" for v in real]
                counts["skipped"] += 1
            elif s.harness_error:
                ET.SubElement(case, "error", type="harness-error", message=s.harness_error)
                counts["errors"] += 1
            ET.SubElement(case, "system-out").text = "\n".join(out)
        for k in ("failures", "errors", "skipped"):
            suite.set(k, str(counts[k]))
    path = run_dir / "junit.xml"
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    return path
