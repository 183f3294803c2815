"""Running units, one at a time or in worker processes. A unit and its config are
plain data: they travel to a worker as arguments. Their progress lines go to the
campaign's display through `Say` (a queue across processes)."""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.campaign.context import CampaignConfig
from harness.campaign.live import run_live_cut
from harness.campaign.lost_cache import run_lost_cache
from harness.campaign.plan import Unit
from harness.model import StateResult, UnitKind
from harness.workers import run_jobs

log = logging.getLogger(__name__)


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
    return cfg.run_dir / u.backend.name / (f"cut{u.cut}" if u.kind == UnitKind.LIVE else "replay")


# Where a unit's progress lines go: (label, line). In a worker process, a queue the
# campaign's display reads (set before the workers fork); else the display itself.
UnitSay = Callable[[str, str], None]
_say_to: UnitSay | None = None


def _print(label: str, msg: str) -> None:
    log.info("[%s] %s", label, msg)


def run_unit(job: UnitJob) -> UnitResult:
    u, cfg = job.unit, job.cfg
    t0 = time.monotonic()
    # What an interrupted run left of this unit goes: it runs again from scratch.
    shutil.rmtree(unit_dir(u, cfg), ignore_errors=True)
    to = _say_to or _print

    def say(msg: str) -> None:
        to(job.label, msg.strip())

    if u.kind == UnitKind.LIVE:
        assert u.plan is not None
        say(f"cut {u.plan.describe()}")
        res = run_live_cut(cfg, u.backend, u.cut, u.plan, say)
        detail = res.harness_error or "; ".join(
            f"{n}x {h}"
            for h, n in Counter(
                f"[{v.cls}, fault: {v.fault}] {v.promise}" for v in res.violations
            ).items()
        )
        say(f"=> {res.verdict.upper()} in {res.wall_s:.0f}s" + (f": {detail}" if detail else ""))
        return UnitResult(u.index, [res], wall_s=time.monotonic() - t0)
    say("recording the workload's writes")
    replayed, stats = run_lost_cache(cfg, u.backend, job.states, say)
    bad = [r for r in replayed if r.verdict != "pass"]
    errors = Counter(r.harness_error for r in replayed if r.harness_error)
    say(
        f"=> {len(replayed) - len(bad)}/{len(replayed)} lost-cache states pass"
        + "".join(f"; {n}x {e[:400]}" for e, n in errors.most_common(3))
    )
    return UnitResult(u.index, replayed, stats, time.monotonic() - t0)


def run_units(
    jobs: list[UnitJob],
    parallel: int,
    done: Callable[[UnitResult], None],
    say: UnitSay | None = None,
) -> None:
    """Run the jobs, `parallel` at a time; `done` gets each result as it ends (in
    this process), `say` each unit's progress lines (default: printed)."""
    global _say_to
    if parallel <= 1 or len(jobs) <= 1:
        _say_to = say
        try:
            run_jobs(run_unit, jobs, 1, done)
        finally:
            _say_to = None
        return
    queue = multiprocessing.get_context("fork").SimpleQueue() if say else None
    reader = None
    if queue is not None and say is not None:
        reader = threading.Thread(target=_relay, args=(queue, say), daemon=True)
        reader.start()

    def inherit() -> None:
        global _say_to
        if queue is not None:
            _say_to = lambda label, msg: queue.put((label, msg))  # noqa: E731

    def forget() -> None:
        global _say_to
        _say_to = None

    try:
        run_jobs(run_unit, jobs, parallel, done, inherit, forget)
    finally:
        if queue is not None and reader is not None:
            queue.put(None)
            reader.join(timeout=5)


def _relay(queue: Any, say: UnitSay) -> None:
    while (item := queue.get()) is not None:
        say(*item)
