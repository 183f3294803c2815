"""Where a live cut lands, and which promises it grants, against a scripted guest."""

import threading
import time
from typing import Any

from harness.errors import PowerCut
from harness.guest.agent import Result
from harness.model import Barrier, Promise
from harness.power.cut import CutPlan, plan_cuts, run_until_cut
from harness.workloads.api import Step, Workload, container, file


def test_plans_are_seeded_and_mixed() -> None:
    steps = ["a", "b", "c"]
    p1 = plan_cuts(5, "btrfs", 6, steps)
    assert p1 == plan_cuts(5, "btrfs", 6, steps)
    assert p1 != plan_cuts(6, "btrfs", 6, steps)
    assert {p.kind for p in p1} == {"during", "after"}
    with_synced = plan_cuts(5, "btrfs", 6, steps, ["b"])
    assert {p.kind for p in with_synced} == {"during", "after", "returned"}
    assert {p.step for p in with_synced if p.kind == "returned"} == {"b"}


class FakeAgent:
    """Runs step commands: `slow` takes a second unless the power is cut under it."""

    def __init__(self) -> None:
        self.cut = threading.Event()
        self.commands: list[str] = []
        self.derived: list[dict[str, Any]] = []

    def run(self, cmd: str, timeout: float = 0) -> Result:
        self.commands.append(cmd)
        if cmd == "slow":
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                if self.cut.is_set():
                    raise PowerCut("cut")
                time.sleep(0.01)
        return Result(cmd, 0, "", "", 0.0)

    def put(self, path: str, data: bytes, mode: int = 0o644, timeout: float = 0) -> None:
        self.commands.append(f"put {path}")

    def call(self, module: str, func: str, arg: Any, timeout: float = 0) -> object:
        assert (module, func) == ("crashtest_guest.check_state", "derive")
        self.derived.append(arg)
        return [{"sha256": "f" * 64} for _ in arg["promises"]]


class FakeVM:
    """Stands in for a Machine: a power cut makes the running step raise PowerCut."""

    def __init__(self) -> None:
        self.agent = FakeAgent()
        self.cuts = 0

    def power_cut(self) -> float:
        self.cuts += 1
        self.agent.cut.set()
        return time.monotonic()


def make_workload(removing: bool = False) -> Workload:
    def p(name: str) -> list[Promise]:
        return [container(name)]

    two = [Promise("absent-container", "one")] if removing else p("two")
    return Workload(
        "t",
        [
            Step("one", "quick", Barrier.SYNC, promises=p("one")),
            Step("two", "slow", Barrier.SYNC, promises=two),
            Step("three", "quick", Barrier.SYNC, promises=p("three")),
        ],
        1,
    )


def cut(vm: FakeVM, wl: Workload, plan: CutPlan, inventory: Any = None) -> Any:
    return run_until_cut(vm, wl, plan, "overlay2", inventory)  # type: ignore[arg-type]


def test_cut_after_step_grants_exactly_its_promises() -> None:
    vm = FakeVM()
    out = cut(vm, make_workload(), CutPlan("after", "two"))
    assert vm.cuts == 1 and out.actual == "after two"
    assert [p.target for p in out.ledger.in_force()] == ["one", "two"]
    assert [p.step for p in out.ledger.in_force()] == ["one", "two"]


def test_cut_during_step_withholds_its_promises() -> None:
    vm = FakeVM()
    out = cut(vm, make_workload(), CutPlan("during", "two", 0.2))
    assert vm.cuts == 1 and out.cut_in == "two" and out.actual.startswith("during two")
    assert [p.target for p in out.ledger.in_force()] == ["one"]
    assert out.ledger.last_point == "one"


def test_during_cut_on_fast_step_lands_right_after_it() -> None:
    vm = FakeVM()
    out = cut(vm, make_workload(), CutPlan("during", "one", 3.0))
    assert vm.cuts == 1 and out.actual == "after one"


def test_inventory_at_the_last_durability_point_only() -> None:
    calls: list[int] = []

    def inventory() -> dict[str, list[str]]:
        calls.append(1)
        return {"images": [f"i{len(calls)}"], "containers": []}

    out = cut(FakeVM(), make_workload(), CutPlan("during", "two", 0.2), inventory)
    # "one" may be the last durability point before a cut during "two": taken there
    assert out.inventory == {"images": ["i1"], "containers": []} and len(calls) == 1


def test_a_removing_step_withdraws_promises_and_the_inventory_while_it_runs() -> None:
    wl = make_workload(removing=True)
    # "two" removes container "one": while it runs, "one" may or may not be there.
    out = cut(
        FakeVM(), wl, CutPlan("during", "two", 0.2), lambda: {"images": ["x"], "containers": []}
    )
    assert out.inventory is None
    assert out.ledger.in_force() == []
    done = cut(FakeVM(), wl, CutPlan("after", "two"))
    assert [p.kind for p in done.ledger.in_force()] == ["absent-container"]


def test_returned_cuts_after_the_command_before_the_sync() -> None:
    vm = FakeVM()
    out = cut(vm, make_workload(), CutPlan("returned", "two"))
    assert vm.agent.commands == ["quick", "sync", "slow"]  # only step one synced
    assert [p.target for p in out.ledger.in_force()] == ["one"]  # two's sync never ran
    assert vm.cuts == 1 and "before its sync" in out.actual


def test_expected_values_are_derived_on_the_live_guest_after_the_barrier() -> None:
    vm = FakeVM()
    wl = Workload(
        "t",
        [
            Step(
                "w",
                ("put-data", "fsync-it"),
                Barrier.FSYNC,
                promises=[file("volume:v:/f"), file("volume:v:/g", "a" * 64)],
            )
        ],
    )
    out = cut(vm, wl, CutPlan("after", "w"))
    # only the promise without a hash was asked for, after the step's commands ran
    assert vm.agent.commands == ["put-data", "fsync-it"]
    assert [p["target"] for p in vm.agent.derived[0]["promises"]] == ["volume:v:/f"]
    assert {p.target: p.sha256 for p in out.ledger.in_force()} == {
        "volume:v:/f": "f" * 64,
        "volume:v:/g": "a" * 64,
    }
