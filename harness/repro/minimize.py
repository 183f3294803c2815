"""Minimization: shrink a failing state to what matters.

A lost-cache state keeps some writes of one epoch and drops the rest. Delta
debugging (Zeller's ddmin) over the dropped writes finds a smaller set whose loss
still breaks the same promise: usually one or two journal or metadata blocks.
A live cut is shrunk over the workload steps before the cut instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.workloads.api import Workload
from harness.writelog.states import CrashState, Epoch


@dataclass
class Minimized:
    state: CrashState
    dropped: list[int]  # entry indices (in the log) the minimal state drops
    original_dropped: int
    tests: int
    complete: bool  # False when the test budget ran out before 1-minimality


def ddmin(
    items: Sequence[int], fails: Callable[[list[int]], bool], budget: int
) -> tuple[list[int], int, bool]:
    """A 1-minimal failing subset of `items` (which must fail), testing each
    candidate with `fails`. Returns (subset, tests run, finished within budget)."""
    current, n, tests = list(items), 2, 0
    seen: dict[tuple[int, ...], bool] = {}

    def test(cand: list[int]) -> bool:
        nonlocal tests
        key = tuple(cand)
        if key not in seen:
            tests += 1
            seen[key] = fails(cand)
        return seen[key]

    while len(current) >= 2:
        chunks = [current[i * len(current) // n : (i + 1) * len(current) // n] for i in range(n)]
        chunks = [c for c in chunks if c]
        reduced = False
        for c in chunks:
            if tests >= budget:
                return current, tests, False
            if test(c):
                current, n, reduced = c, 2, True
                break
        if not reduced and n > 2:
            for c in chunks:
                if tests >= budget:
                    return current, tests, False
                drop = set(c)
                rest = [x for x in current if x not in drop]
                if test(rest):
                    current, n, reduced = rest, max(n - 1, 2), True
                    break
        if not reduced:
            if n >= len(current):
                break
            n = min(len(current), n * 2)
    return current, tests, True


def dropped_positions(state: CrashState, epoch: Epoch) -> list[int] | None:
    """Positions in the epoch of the writes the state drops; None for a torn state
    (its torn write is a different kind of loss, kept as it is)."""
    if state.subset.startswith("t"):
        return None
    kept = {e.index for e, _ in state.kept(epoch)}
    return [i for i, e in enumerate(epoch.entries) if e.index not in kept]


def state_dropping(state: CrashState, epoch: Epoch, positions: list[int]) -> CrashState:
    """The state keeping every write of the epoch but those at `positions`, with the
    shortest id: `all`, `none`, `d<i>`, `x<i>.<j>...` or a bit mask."""
    drop = sorted(set(positions))
    n = len(epoch.entries)
    if not drop:
        subset = "all"
    elif len(drop) == n:
        subset = "none"
    elif len(drop) == 1:
        subset = f"d{drop[0]}"
    else:
        listed = "x" + ".".join(map(str, drop))
        mask = "s" + format(sum(1 << i for i in range(n) if i not in set(drop)), "x")
        subset = min(listed, mask, key=len)
    return CrashState(state.log_digest, state.epoch, subset)


def minimize(
    state: CrashState, epoch: Epoch, fails: Callable[[CrashState], bool], budget: int = 40
) -> Minimized | None:
    """`fails(candidate)` rebuilds and checks a candidate state: True when it breaks
    the same promise as the original. None when the state cannot be minimized."""
    positions = dropped_positions(state, epoch)
    if not positions:
        return None
    subset, tests, complete = ddmin(
        positions, lambda cand: fails(state_dropping(state, epoch, cand)), budget
    )
    return Minimized(
        state_dropping(state, epoch, subset),
        [epoch.entries[i].index for i in subset],
        len(positions),
        tests,
        complete,
    )


@dataclass
class MinimalSteps:
    steps: list[str]  # the workload steps the minimal reproducer runs, in order
    original: list[str]
    tests: int
    complete: bool


def minimize_steps(
    workload: Workload, cut_step: str, fails: Callable[[Workload], bool], budget: int = 8
) -> MinimalSteps:
    """The fewest workload steps before `cut_step` (plus what they need) with which
    a live cut at the same point still breaks the same promise. Each test is a
    whole live cycle, so the budget is small."""
    names = workload.step_names
    before = names[: names.index(cut_step)]
    tests = 0

    def run(keep: list[str]) -> bool:
        nonlocal tests
        tests += 1
        return fails(workload.keeping({*keep, cut_step}))

    if run([]):
        kept: list[str] = []
        complete = True
    else:
        # ddmin counts its own tests; `run` counts every one, including the first.
        idx, _, complete = ddmin(
            list(range(len(before))), lambda i: run([before[j] for j in i]), budget - 1
        )
        kept = [before[i] for i in idx]
    minimal = workload.keeping({*kept, cut_step}).step_names
    return MinimalSteps(minimal, names[: names.index(cut_step) + 1], tests, complete)
