"""Running units, one at a time or in worker processes. A unit and its config are
plain data: they travel to a worker as arguments, with no global state."""

from __future__ import annotations

import multiprocessing
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.campaign.context import CampaignConfig, Progress
from harness.campaign.live import run_live_cut
from harness.campaign.lost_cache import run_lost_cache
from harness.campaign.plan import Unit
from harness.model import StateResult, UnitKind


@dataclass
class UnitResult:
    unit: int
    states: list[StateResult]
    replay: dict[str, object] = field(default_factory=dict)
    wall_s: float = 0.0


@dataclass(frozen=True)
class UnitJob:
    unit: Unit
    cfg: CampaignConfig
    states: int  # lost-cache states to check
    label: str


def unit_dir(u: Unit, cfg: CampaignConfig) -> Path:
    return cfg.run_dir / u.backend.name / (f"cut{u.cut}" if u.kind == UnitKind.LIVE
                                           else "replay")


def run_unit(job: UnitJob) -> UnitResult:
    u, cfg = job.unit, job.cfg
    t0 = time.monotonic()
    # What an interrupted run left of this unit goes: it runs again from scratch.
    shutil.rmtree(unit_dir(u, cfg), ignore_errors=True)

    def say(msg: str) -> None:
        # One write per line: parallel workers share stdout.
        sys.stdout.write(f"[{job.label}] {msg.strip()}\n")
        sys.stdout.flush()

    if u.kind == UnitKind.LIVE:
        assert u.plan is not None
        say(f"cut {u.plan.describe()}")
        res = run_live_cut(cfg, u.backend, u.cut, u.plan, say)
        detail = res.harness_error or "; ".join(
            f"{n}x {h}" for h, n in Counter(
                f"[{v.cls}, fault: {v.fault}] {v.promise}" for v in res.violations).items())
        say(f"=> {res.verdict.upper()} in {res.wall_s:.0f}s" + (f": {detail}" if detail else ""))
        return UnitResult(u.index, [res], wall_s=time.monotonic() - t0)
    say("recording the workload's writes")
    replayed, stats = run_lost_cache(cfg, u.backend, job.states, say)
    bad = [r for r in replayed if r.verdict != "pass"]
    errors = Counter(r.harness_error for r in replayed if r.harness_error)
    say(f"=> {len(replayed) - len(bad)}/{len(replayed)} lost-cache states pass"
        + "".join(f"; {n}x {e[:400]}" for e, n in errors.most_common(3)))
    return UnitResult(u.index, replayed, stats, time.monotonic() - t0)


def run_units(jobs: list[UnitJob], parallel: int, done: Callable[[UnitResult], None]) -> None:
    if parallel == 1 or len(jobs) <= 1:
        for job in jobs:
            done(run_unit(job))
        return
    # Each worker runs its own guests; a worker that is stopped kills them (their
    # QEMU dies with it through pdeathsig), and terminate() stops every worker.
    pool = multiprocessing.get_context("fork").Pool(min(parallel, len(jobs)))
    try:
        for r in pool.imap_unordered(run_unit, jobs):
            done(r)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


# What a unit costs before any has finished, in seconds (TCG here): a live cut
# boots or resumes, runs and checks a guest; a lost-cache unit records once, then
# checks each state in about a second. Refined by what finished units took.
PRIOR_S = {UnitKind.LIVE: 100.0, UnitKind.REPLAY: 80.0}
PRIOR_STATE_S = 2.0


class ProgressBar:
    """One line per finished unit: units and states done, violations, elapsed, and
    an ETA weighted by unit kind (a live cut and a state differ a hundredfold)."""

    def __init__(self, kinds: list[str], states: int, jobs: int, say: Progress) -> None:
        self.left = Counter(kinds)
        self.total, self.jobs, self.say = len(kinds), max(1, jobs), say
        self.per_replay = PRIOR_S[UnitKind.REPLAY] + PRIOR_STATE_S * states
        self.took: dict[str, list[float]] = {}
        self.units = self.states = self.bad = 0
        self.t0 = time.monotonic()

    def cost(self, kind: str) -> float:
        """What a unit of `kind` is expected to take: the mean of those finished,
        else the prior scaled by how finished units compared with theirs."""
        if self.took.get(kind):
            return sum(self.took[kind]) / len(self.took[kind])
        prior = {UnitKind.LIVE: PRIOR_S[UnitKind.LIVE], UnitKind.REPLAY: self.per_replay}
        ratios = [sum(t) / len(t) / prior[UnitKind(k)] for k, t in self.took.items() if t]
        scale = sum(ratios) / len(ratios) if ratios else 1.0
        return prior[UnitKind(kind)] * scale

    def eta(self) -> float:
        return sum(n * self.cost(k) for k, n in self.left.items()) / self.jobs

    def advance(self, kind: str, wall_s: float, states: int, violations: int) -> None:
        self.left[kind] -= 1
        self.took.setdefault(kind, []).append(wall_s)
        self.units += 1
        self.states += states
        self.bad += violations
        elapsed = time.monotonic() - self.t0
        frac = self.units / max(self.total, 1)
        filled = int(frac * 30)
        self.say(f"[{'#' * filled}{'.' * (30 - filled)}] {self.units}/{self.total} units, "
                 f"{self.states} states, {self.bad} violations, {elapsed / 60:.1f} min "
                 f"elapsed, ~{self.eta() / 60:.1f} min left")
