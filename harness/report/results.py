"""Writing a run's results: summary.json, JUnit XML, and the results/latest link."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.model import StateResult


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

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "kernel": self.kernel, "image": self.image,
            "release": self.release, "workload": self.workload, "docker": self.docker,
            "accel": self.accel, "cuts": self.cuts, "options": self.options,
            "states_checked": sum(1 for s in self.states if not s.harness_error),
            "violations": [v.to_json() for s in self.states for v in s.violations],
            "harness_errors": [{"state": s.state, "error": s.harness_error}
                               for s in self.states if s.harness_error],
            "wall_s": round(self.wall_s, 1),
            "mean_timings_s": self.mean_timings(),
            "live_cuts": sum(1 for s in self.states if s.kind == "live"),
            "replayed_states": sum(1 for s in self.states if s.kind == "replay"),
            "replay": self.replay,
            "observed": self.observed(),
            "states": [s.to_json() for s in self.states],
        }

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
    out = {k: round(sum(s.timings[k] for s in states if k in s.timings)
                    / sum(1 for s in states if k in s.timings), digits) for k in keys}
    for kind, key in (("live", "live_cycle_wall_s"), ("replay", "replay_state_wall_s")):
        walls = [s.wall_s for s in states if s.kind == kind]
        if walls:
            out[key] = round(sum(walls) / len(walls), digits)
    return out


def write_summary(run_dir: Path, meta: dict[str, Any], backends: list[BackendSummary]) -> Path:
    doc = {**meta, "backends": [b.to_json() for b in backends]}
    doc["totals"] = {
        "states_checked": sum(b["states_checked"] for b in doc["backends"]),
        "violations": sum(1 for b in doc["backends"] for v in b["violations"]
                          if v["class"] != "leak"),
        "leaks": sum(1 for b in doc["backends"] for v in b["violations"]
                     if v["class"] == "leak"),
        "harness_errors": sum(len(b["harness_errors"]) for b in doc["backends"]),
        # violations by whose fault they are (see model.FAULTS)
        "faults": dict(sorted(Counter(v["fault"] for b in doc["backends"]
                                      for v in b["violations"] if v["class"] != "leak").items())),
    }
    path = run_dir / "summary.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def write_junit(run_dir: Path, backends: list[BackendSummary]) -> Path:
    """One test case per checked state: failure = violation, error = harness error."""
    suites = ET.Element("testsuites", name="crashtest")
    for b in backends:
        suite = ET.SubElement(suites, "testsuite", name=b.backend, tests=str(len(b.states)),
                              failures=str(sum(1 for s in b.states if s.verdict == "violation")),
                              errors=str(sum(1 for s in b.states
                                             if s.verdict == "harness-error")),
                              time=f"{b.wall_s:.1f}")
        for s in b.states:
            case = ET.SubElement(suite, "testcase", classname=f"crashtest.{b.backend}",
                                 name=s.state, time=f"{s.wall_s:.1f}")
            for v in s.violations:
                if v.cls == "leak":
                    ET.SubElement(case, "system-out").text = f"leak: {v.promise}: {v.evidence}"
                    continue
                fail = ET.SubElement(case, "failure", type=v.cls,
                                     message=f"{v.promise} (fault: {v.fault})")
                fail.text = "\n\n".join(f"{k}:\n{val}" for k, val in v.evidence.items())
            if s.verdict == "harness-error":
                ET.SubElement(case, "error", type="harness-error", message=s.harness_error)
    path = run_dir / "junit.xml"
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    return path


def point_latest(results: Path, run_dir: Path) -> None:
    """Atomically repoint results/latest at the newest complete run."""
    tmp = results / ".latest.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, results / "latest")
