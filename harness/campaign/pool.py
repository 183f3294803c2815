"""Running units, one at a time or in worker processes. A unit and its config are
plain data: they travel to a worker as arguments, with no global state."""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

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


def run_unit(job: UnitJob) -> UnitResult:
    u, cfg = job.unit, job.cfg
    t0 = time.monotonic()

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


class ProgressBar:
    """One line per finished unit: states done of the total, violations, elapsed, ETA."""

    def __init__(self, total: int, say: Progress) -> None:
        self.total, self.done, self.bad, self.say = max(total, 1), 0, 0, say
        self.t0 = time.monotonic()

    def advance(self, states: int, violations: int) -> None:
        self.done += states
        self.bad += violations
        frac = min(1.0, self.done / self.total)
        elapsed = time.monotonic() - self.t0
        eta = elapsed / frac - elapsed if frac else 0.0
        filled = int(frac * 30)
        self.say(f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} states, "
                 f"{self.bad} violations, {elapsed / 60:.1f} min elapsed, "
                 f"~{eta / 60:.1f} min left")
