"""Runs that lose nothing: each finished unit is kept as it ends, an interrupted
run leaves a summary marked incomplete, and --resume finishes the same plan.
Units are faked here (the real-VM test is test_campaign's Ctrl-C test)."""

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import harness.campaign.run as campaign
from harness.campaign.pool import UnitJob, UnitResult
from harness.campaign.progress import Display
from harness.cli import main
from harness.model import StateResult, UnitKind


def fake_images(spec: str | None, modules: str | None, release: str) -> Any:
    kernel = SimpleNamespace(
        version="6.12.117+deb13-cloud-amd64",
        info={"version": "6.12.117+deb13-cloud-amd64"},
        vmlinuz=Path("/nonexistent/vmlinuz"),
    )
    root = SimpleNamespace(
        manifest_id="rootfs-1",
        manifest={"id": "rootfs-1"},
        key_packages=lambda: {"docker.io": "26.1.5"},
    )
    return SimpleNamespace(kernel=kernel, root=root)


class Units:
    """run_units that finishes `stop_after` units, then is interrupted."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after, self.ran = stop_after, []  # type: ignore[var-annotated]

    def __call__(
        self,
        jobs: list[UnitJob],
        parallel: int,
        done: Callable[[UnitResult], None],
        say: object = None,
    ) -> None:
        for job in jobs:
            if self.stop_after is not None and len(self.ran) == self.stop_after:
                raise KeyboardInterrupt
            u = job.unit
            n = 1 if u.kind == UnitKind.LIVE else job.states
            self.ran.append(u.index)
            done(
                UnitResult(
                    u.index,
                    [
                        StateResult(
                            f"{u.backend.name}/{u.kind}{u.index}/{i}",
                            u.backend.name,
                            "p",
                            kind=u.kind,
                            wall_s=1,
                        )
                        for i in range(n)
                    ],
                    wall_s=2.0,
                )
            )


ARGS = ["run", "--backends", "btrfs,ext4-overlay2", "--cuts", "2", "--states", "3", "--jobs", "1"]


@pytest.fixture(autouse=True)
def no_vms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(campaign, "ensure_images", fake_images)


def test_interrupted_then_resumed_gives_the_uninterrupted_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = Units()
    monkeypatch.setattr(campaign, "run_units", whole)
    assert main([*ARGS, "--out", str(tmp_path / "whole")]) == 0
    want = json.loads((tmp_path / "whole" / "latest" / "summary.json").read_text())

    cut = Units(stop_after=2)
    monkeypatch.setattr(campaign, "run_units", cut)
    out = tmp_path / "res"
    assert main([*ARGS, "--out", str(out)]) == 130
    [run] = list(out.iterdir())
    part = json.loads((run / "summary.json").read_text())
    assert part["incomplete"] == "interrupted"
    assert part["units_done"] == sorted(cut.ran) and len(cut.ran) == 2
    assert part["resume"] == f"crashtest run --resume {run}"
    assert not (out / "latest").exists()  # latest names complete runs only
    assert "finish with: crashtest run --resume" in capsys.readouterr().out

    rest = Units()
    monkeypatch.setattr(campaign, "run_units", rest)
    assert main(["run", "--resume", str(run)]) == 0
    assert sorted(cut.ran + rest.ran) == sorted(whole.ran) and not set(cut.ran) & set(rest.ran)
    doc = json.loads((run / "summary.json").read_text())
    assert "incomplete" not in doc and (out / "latest").resolve() == run.resolve()
    assert doc["totals"] == want["totals"]
    assert doc["totals"]["states_checked"] == 2 * (2 + 3)
    assert sorted(s["state"] for b in doc["backends"] for s in b["states"]) == sorted(
        s["state"] for b in want["backends"] for s in b["states"]
    )
    # a complete run has nothing to resume
    assert main(["run", "--resume", str(run)]) == 2


def test_a_crash_of_the_harness_keeps_finished_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(
        jobs: list[UnitJob], parallel: int, done: Callable[[UnitResult], None], say: object = None
    ) -> None:
        Units()(jobs[:1], parallel, done)
        raise KeyError("a bug")

    monkeypatch.setattr(campaign, "run_units", crash)
    assert main([*ARGS, "--out", str(tmp_path)]) == 2
    [run] = [p for p in tmp_path.iterdir() if p.is_dir()]
    doc = json.loads((run / "summary.json").read_text())
    assert doc["incomplete"].startswith("KeyError") and len(doc["units_done"]) == 1
    assert doc["totals"]["states_checked"] == 3  # the replay unit runs first


def test_resume_refuses_a_changed_campaign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(campaign, "run_units", Units(stop_after=1))
    assert main([*ARGS, "--out", str(tmp_path)]) == 130
    [run] = list(tmp_path.iterdir())
    plan = json.loads((run / "plan.json").read_text())
    plan["campaign"]["kernels"] = ["6.12.116+deb13-cloud-amd64"]
    (run / "plan.json").write_text(json.dumps(plan))
    capsys.readouterr()
    assert main(["run", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "planned with other kernels" in err[0]
    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2


def test_the_eta_weighs_units_by_kind() -> None:
    """A live cut and a lost-cache unit differ: after one live cut, the ETA counts
    what is left by kind, not by states."""
    lines: list[str] = []
    shown = Display(["replay", "live", "live", "live"], 500, 1, plain=lines.append)
    eta = shown.eta
    assert eta.seconds_left() == pytest.approx(80 + 2 * 500 + 3 * 100)
    shown.finished("btrfs cut 1", "live", 50.0, 1, 0)  # live cuts run at half the prior
    assert eta.cost("live") == 50.0
    assert eta.cost("replay") == pytest.approx((80 + 2 * 500) * 0.5)
    assert eta.seconds_left() == pytest.approx(2 * 50 + 540)
    shown.finished("btrfs lost cache", "replay", 700.0, 500, 3)
    assert eta.seconds_left() == pytest.approx(100)
    assert "2/4 units, 501 states, 3 violations" in lines[-1]


def test_plain_lines_when_not_a_terminal_a_live_display_on_one() -> None:
    """CI logs get one line per unit message; a terminal gets rich's live view, with
    each unit's verdict kept on screen and the running units listed with their phase."""
    import io

    lines: list[str] = []
    with Display(["live"], 0, 1, plain=lines.append) as shown:
        shown.unit("btrfs cut 1", "cut after commit")
        shown.finished("btrfs cut 1", "live", 10.0, 1, 0)
    assert lines[0] == "[btrfs cut 1] cut after commit" and "1/1 units" in lines[1]

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Tty()
    with Display(["live", "live"], 0, 2, out=term) as shown:
        assert shown.live_on
        shown.unit("ext4-overlay2 cut 1", "checking the cut disk")
        shown.unit("btrfs cut 1", "=> PASS in 60s")
        text = "".join(str(c) for c in shown._render().renderables)
    assert "=> PASS in 60s" in term.getvalue()
    assert "checking the cut disk" in str(shown._render().renderables[0].columns[2]._cells)
    assert "0/2 units" in text
