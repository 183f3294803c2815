import threading
import time

from harness.errors import PowerCut
from harness.guest.agent import Result
from harness.power.cut import CutPlan, plan_cuts, run_until_cut
from harness.workloads.default import Step, Workload
from harness.workloads.promises import Promise


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
    def __init__(self) -> None:
        self.cut = threading.Event()
        self.commands: list[str] = []

    def run(self, cmd: str, timeout: float = 0) -> Result:
        self.commands.append(cmd)
        return Result(cmd, 0, "", "", 0.0)


class FakeVM:
    """Stands in for a Machine: a power cut makes the running step raise PowerCut."""

    def __init__(self) -> None:
        self.agent = FakeAgent()
        self.cuts = 0

    def power_cut(self) -> float:
        self.cuts += 1
        self.agent.cut.set()
        return time.monotonic()


def make_workload() -> Workload:
    def quick(agent: FakeAgent) -> None:
        return None

    def slow(agent: FakeAgent) -> None:
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            if agent.cut.is_set():
                raise PowerCut("cut")
            time.sleep(0.01)

    def p(name: str) -> list[Promise]:
        return [Promise("image", name, name, "sync", check="true")]

    steps = [Step("one", quick, p("one")), Step("two", slow, p("two")),  # type: ignore[arg-type]
             Step("three", quick, p("three"))]  # type: ignore[arg-type]
    return Workload(1, steps, {})


def test_cut_after_step_grants_exactly_its_promises() -> None:
    vm = FakeVM()
    out = run_until_cut(vm, make_workload(), CutPlan("after", "two"))  # type: ignore[arg-type]
    assert vm.cuts == 1 and out.actual == "after two"
    assert [p.target for p in out.ledger.in_force()] == ["one", "two"]


def test_cut_during_step_withholds_its_promises() -> None:
    vm = FakeVM()
    out = run_until_cut(vm, make_workload(), CutPlan("during", "two", 0.2))  # type: ignore[arg-type]
    assert vm.cuts == 1 and out.cut_in == "two" and out.actual.startswith("during two")
    assert [p.target for p in out.ledger.in_force()] == ["one"]
    assert out.ledger.last_point == "one"


def test_during_cut_on_fast_step_lands_right_after_it() -> None:
    vm = FakeVM()
    out = run_until_cut(vm, make_workload(), CutPlan("during", "one", 3.0))  # type: ignore[arg-type]
    assert vm.cuts == 1 and out.actual == "after one"


def test_inventory_at_the_last_durability_point_only() -> None:
    calls: list[int] = []

    def inventory() -> dict[str, list[str]]:
        calls.append(1)
        return {"images": [f"i{len(calls)}"], "containers": []}

    vm = FakeVM()
    out = run_until_cut(vm, make_workload(), CutPlan("during", "two", 0.2),  # type: ignore[arg-type]
                        inventory)
    # "one" may be the last durability point before a cut during "two": taken there
    assert out.inventory == {"images": ["i1"], "containers": []} and len(calls) == 1


def test_a_removing_step_withdraws_promises_and_the_inventory_while_it_runs() -> None:
    wl = make_workload()
    # "two" removes image "one": while it runs, "one" may or may not be there.
    wl.steps[1].promises = [Promise("absent-image", "one", "two", "sync")]
    out = run_until_cut(FakeVM(), wl, CutPlan("during", "two", 0.2),  # type: ignore[arg-type]
                        lambda: {"images": ["x"], "containers": []})
    assert out.inventory is None
    assert out.ledger.in_force() == []
    done = run_until_cut(FakeVM(), wl, CutPlan("after", "two"))  # type: ignore[arg-type]
    assert [p.kind for p in done.ledger.in_force()] == ["absent-image"]


def test_returned_cuts_after_dockers_command_before_the_sync() -> None:
    ran: list[str] = []
    steps = [Step("one", lambda a: ran.append("one"), [Promise("image", "one", "one", "sync")],
                  sync=True),
             Step("two", lambda a: ran.append("two"), [Promise("image", "two", "two", "sync")],
                  sync=True)]
    vm = FakeVM()
    out = run_until_cut(vm, Workload(1, steps, {}), CutPlan("returned", "two"))  # type: ignore[arg-type]
    assert ran == ["one", "two"] and vm.agent.commands == ["sync"]  # only step one synced
    assert [p.target for p in out.ledger.in_force()] == ["one"]  # two's sync never ran
    assert vm.cuts == 1 and "before its sync" in out.actual
