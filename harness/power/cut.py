"""Power cuts: where to cut (a seeded plan) and the cut itself, through QMP with
no help from the guest, while the workload runs."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.errors import PowerCut
from harness.model import CutKind, Ledger, Observation
from harness.vm.machine import Machine
from harness.workloads.api import Workload
from harness.workloads.runner import StepRunner

MAX_DELAY_S = 4.0


@dataclass(frozen=True)
class CutPlan:
    """Cut right after `step` returns ("after"), `delay_s` into it ("during"), or
    right after its docker command returned and before its own `sync` ("returned":
    what docker alone made durable, the moment users lose images in)."""

    kind: str  # a CutKind
    step: str
    delay_s: float = 0.0

    def describe(self) -> str:
        if self.kind == CutKind.AFTER:
            return f"after {self.step}"
        if self.kind == CutKind.RETURNED:
            return f"after {self.step}'s docker command returned, before its sync"
        return f"during {self.step} +{self.delay_s:.2f}s"

    def slug(self) -> str:
        return f"{self.kind}-{self.step}" + (
            f"-{self.delay_s:.2f}s" if self.kind == CutKind.DURING else ""
        )


def plan_cuts(
    seed: int, backend: str, count: int, steps: list[str], synced: list[str] | None = None
) -> list[CutPlan]:
    """The same seed, backend and steps always give the same plans. `synced`: the
    steps that end in a sync of their own (they may be cut before it)."""
    rng = random.Random(f"crashtest-cuts:{seed}:{backend}")
    plans = []
    for i in range(count):
        step = rng.choice(steps)
        # Rotate the kinds so even a small campaign has each.
        kind = (CutKind.DURING, CutKind.AFTER, CutKind.RETURNED)[i % 3]
        if kind == CutKind.RETURNED and synced:
            plans.append(CutPlan(str(CutKind.RETURNED), rng.choice(synced)))
        elif kind == CutKind.DURING:
            plans.append(
                CutPlan(str(CutKind.DURING), step, round(rng.uniform(0.0, MAX_DELAY_S), 2))
            )
        else:
            plans.append(CutPlan(str(CutKind.AFTER), step))
    return plans


@dataclass
class CutOutcome:
    plan: CutPlan
    ledger: Ledger
    steps_done: list[str] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    cut_in: str = ""  # the step that was running (or had just returned) at the cut
    actual: str = ""
    # docker's inventory at the last durability point, if taken and nothing was
    # deleted since (then every object in it must survive the cut)
    inventory: dict[str, list[str]] | None = None
    # observed files: from their step's start until a promise covers them
    observing: dict[str, Observation] = field(default_factory=dict)


def _may_be_last_point(workload: Workload, plan: CutPlan) -> set[str]:
    """Durability points that can be the last one before this cut: the planned step
    and the last one before it."""
    names = workload.step_names
    upto = names.index(plan.step) if plan.step in names else len(names) - 1
    points = [s.name for s in workload.steps[:upto] if s.promises]
    return set(points[-1:]) | {plan.step}


def run_until_cut(
    vm: Machine,
    workload: Workload,
    plan: CutPlan,
    driver: str,
    inventory: Callable[[], dict[str, list[str]]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CutOutcome:
    """Run steps in order, granting each step's promises (with the values derived
    on the live guest) when its barrier has returned, and cut the power as planned.
    The VM is stopped (vCPUs frozen) on return. `inventory` is called at the
    durability points that may be the last before the cut; `progress` hears of
    each step as it starts."""
    out = CutOutcome(plan, Ledger())
    wanted = _may_be_last_point(workload, plan) if inventory else set()
    runner = StepRunner(vm.agent, driver)
    fired = threading.Event()

    def cut() -> None:
        if not fired.is_set():
            fired.set()
            vm.power_cut()

    for n, step in enumerate(workload.steps, 1):
        if progress:
            progress(f"  step {n}/{len(workload.steps)}: {step.name}")
        timer = None
        if step.removes:  # docker rmi also drops untagged parents: the inventory may shrink
            out.inventory = None
        out.ledger.revoke(step.withdraws)
        out.observing.update((o.key(), o) for o in step.observes)
        if plan.kind == CutKind.DURING and step.name == plan.step:
            timer = threading.Timer(plan.delay_s, cut)
            timer.start()
        started = time.monotonic()
        try:
            runner.run(step)
            if plan.kind == CutKind.RETURNED and step.name == plan.step:
                cut()
                out.cut_in = step.name
                out.actual = plan.describe()
                return out
            runner.finish(step)
        except PowerCut:
            out.cut_in = step.name
            out.actual = f"during {step.name} +{time.monotonic() - started:.2f}s"
            return out
        finally:
            if timer is not None:
                timer.cancel()
        out.step_seconds[step.name] = round(time.monotonic() - started, 2)
        if fired.is_set():  # a "during" cut that landed as the step returned
            out.cut_in = step.name
            out.actual = f"during {step.name} +{time.monotonic() - started:.2f}s"
            return out
        promises = runner.settle(step)
        out.steps_done.append(step.name)
        out.ledger.grant(step.name, promises)
        for p in promises:
            out.observing.pop(p.key(), None)
        if promises:
            out.inventory = inventory() if inventory and step.name in wanted else None
        if step.name == plan.step:
            # "after", or a "during" whose step finished before its delay: cut now.
            cut()
            out.cut_in = step.name
            out.actual = f"after {step.name}"
            return out
    cut()
    out.actual = "after the last step"
    return out
