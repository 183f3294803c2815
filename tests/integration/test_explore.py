"""crashtest explore on real guests: a narrow grammar finds generic/764's bug on
Debian's 6.12.117 by itself, minimizes it, and its bundle and its standalone
reproducer (run in a guest without crashtest) both reproduce it; the fixed
7.2 passes the same reproducer. Every check of a crash state is shown catching
damage planted in each state; overlay variants and the differential check run
on every filesystem."""

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from crashtest_guest.protocol import Op, OpKind, ViolationClass
from harness.cli import main
from harness.explore.generate import Grammar
from harness.explore.guest import Guest
from harness.explore.plan import CHOICES, ExploreOptions, Plan, request
from harness.explore.results import load_summary
from harness.explore.verdicts import discrepancies, outcome_verdicts
from tests.integration.test_upstream import run_in_guest

STOCK = "trixie:linux-image-6.12.117+deb13-cloud-amd64=6.12.117-1"
SID = "sid:linux-image-cloud-amd64"
BUG_764 = "entry after fsync of a file through a kept descriptor"


def standalone(bundle: Path) -> str:
    """A shell command that writes the bundle's reproduce.py and runs it."""
    script = (bundle / "reproduce.py").read_text()
    return f"cat > /tmp/r.py <<'EOF'\n{script}EOF\npython3 /tmp/r.py"


@pytest.fixture(scope="module")
def found_764(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One blind run of a narrow grammar: its finding's bundle directory."""
    out = tmp_path_factory.mktemp("explore")
    args = ["explore", "--kernel", STOCK, "--fs", "btrfs", "--ops", "open,unlink,fsync"]
    args += ["--length", "4", "--programs", "40", "--seed", "1", "--out", str(out)]
    assert main(args) == 1  # a finding fails the run
    run_dir = (out / "latest").resolve()
    summary = load_summary(run_dir)
    [group] = [g for g in summary.findings if BUG_764 in g.signature]
    assert group.fails and group.cls == "fs-durability"
    # minimized to generic/764's calls: an open file unlinked, fsync'd through its descriptor
    # (a new file fsync'd first, so that it was on disk before the unlink)
    assert group.shape in ("open,unlink,fsync", "open,fsync,unlink,fsync")
    assert summary.programs == 40 and summary.harness_errors == 0
    return run_dir / group.bundle


def test_a_blind_narrow_search_finds_764_and_its_bundle_reproduces(
    found_764: Path, capsys: pytest.CaptureFixture[str], no_leftovers: None
) -> None:
    report = (found_764 / "report.txt").read_text()
    assert re.search(r"unlink\([AB]/foo\)", report) and "fsync(fd0)" in report
    assert main(["explore-repro", str(found_764)]) == 1
    assert "reproduced" in capsys.readouterr().out


def test_the_standalone_reproducer_runs_without_crashtest(
    found_764: Path, tmp_path: Path, no_leftovers: None
) -> None:
    rc, out = run_in_guest(STOCK, standalone(found_764), tmp_path)
    assert rc == 1, out
    unlinked = re.findall(r"unlink\(([AB]/foo)\)", (found_764 / "report.txt").read_text())
    assert "FAIL: " in out and f"entry of {unlinked[0]} is 'f'" in out


@pytest.mark.full
def test_the_standalone_reproducer_passes_on_the_fixed_kernel(
    found_764: Path, tmp_path: Path, no_leftovers: None
) -> None:
    rc, out = run_in_guest(SID, standalone(found_764), tmp_path)
    assert rc == 0, out
    assert "not reproduced: every promise held" in out


def _plan(filesystems: tuple[str, ...]) -> Plan:
    return Plan(filesystems, Grammar(), ExploreOptions(kernel=STOCK))


def test_every_check_catches_a_state_damaged_on_purpose(tmp_path: Path, no_leftovers: None) -> None:
    """Each crash state's superblocks zeroed before it mounts: every state fails
    to mount and fails fsck; the same program undamaged is clean."""
    ops = (Op(OpKind.OPEN, "B/foo", fd=0, flags=("creat",)), Op(OpKind.FSYNC, fd=0))
    guest = Guest(STOCK, None, tmp_path / "console")
    try:
        plan = _plan(("ext4",))
        clean = guest.run(request("ext4", ops, plan.options, 0))
        assert clean.states and outcome_verdicts("ext4", ops, clean) == []
        bad = guest.run(replace(request("ext4", ops, plan.options, 0), damage=True))
    finally:
        guest.stop()
    found = outcome_verdicts("ext4", ops, bad)
    checks = {v.check for v in found}
    assert {"fs.mount", "fs.fsck"} <= checks
    assert {v.state for v in found if v.check == "fs.mount"} == {f"ext4:{s.id}" for s in bad.states}


@pytest.mark.full
def test_every_filesystem_and_overlay_runs_and_compares(tmp_path: Path, no_leftovers: None) -> None:
    """One program on all six: no harness error, each state checked, and the
    differential check sees btrfs's 764 as the model's finding, not a
    discrepancy."""
    ops = (
        Op(OpKind.OPEN, "A/foo", fd=0),
        Op(OpKind.WRITE, fd=0, offset=0, length=4096, value=0x22),
        Op(OpKind.UNLINK, "A/foo"),
        Op(OpKind.FSYNC, fd=0),
    )
    guest = Guest(STOCK, None, tmp_path / "console")
    plan = _plan(CHOICES)
    try:
        outcomes = {fs: guest.run(request(fs, ops, plan.options, 0)) for fs in CHOICES}
    finally:
        guest.stop()
    diff = discrepancies(ops, outcomes)
    found = {fs: outcome_verdicts(fs, ops, outcomes[fs]) for fs in CHOICES}
    for fs, vs in found.items():
        assert outcomes[fs].states, fs
        assert not [v for v in vs if v.cls is ViolationClass.HARNESS_ERROR], (fs, vs)
    assert any(BUG_764 in v.signature() for v in found["btrfs"])
    assert not [v for v in diff if v.state.startswith("btrfs:")]  # the model's, not a discrepancy
    for fs in ("ext4", "xfs", "ext4-overlay", "xfs-overlay"):
        assert [v for v in found[fs] if v.cls.fails] == [], (fs, found[fs])


def test_ctrl_c_keeps_finished_programs_and_resume_runs_the_rest(
    tmp_path: Path, no_leftovers: None
) -> None:
    """Interrupted once a program is journaled: exit 130, every guest gone, the
    finished programs kept; --resume runs only the others."""
    out = tmp_path / "results"
    args = ["explore", "--kernel", STOCK, "--fs", "ext4", "--programs", "6", "--length", "3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args, "--no-minimize", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            journals = list(out.glob("*/programs/w*.jsonl"))
            if any(j.read_text().count("\n") >= 1 for j in journals):
                break
            time.sleep(1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
    finally:
        if proc.poll() is None:  # a failed test stops what it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    [run] = [p for p in out.iterdir() if p.is_dir() and p.name != "latest"]
    part = load_summary(run)
    assert part.meta.incomplete == "interrupted" and 1 <= part.programs < 6
    kept = part.programs
    assert main(["explore", "--resume", str(run), "--no-minimize"]) == 0
    whole = load_summary(run)
    assert whole.programs == 6 and whole.meta.incomplete == ""
    # the run's clock goes on: its rate is over both parts, not the resumed one alone
    assert whole.meta.started == part.meta.started
    assert whole.meta.elapsed_s > part.meta.elapsed_s
    lines = sum(j.read_text().count("\n") for j in (run / "programs").glob("w*.jsonl"))
    assert lines == 6 and kept < 6  # no program ran twice


@pytest.mark.full
@pytest.mark.parametrize(
    "name",
    [
        "explore-btrfs-rename-over-debian-7.2.13",
        "explore-btrfs-whiteout-lost-debian-7.2.13",
        "explore-btrfs-exchange-whiteout-debian-7.2.13",
        "explore-btrfs-unlinked-after-dir-fsync-debian-7.2.13",
    ],
)
def test_the_shipped_reports_reproduce_on_stock_7_2(
    name: str, tmp_path: Path, no_leftovers: None
) -> None:
    """docs/upstream's new btrfs reports: each bundle's standalone reproducer
    still fails on Debian's 7.2 (a fixed kernel makes this test fail: time to
    update the reports and known-failures.toml)."""
    bundle = Path(__file__).parents[2] / "bundles" / name
    rc, out = run_in_guest(SID, standalone(bundle), tmp_path)
    assert rc == 1, out
    assert "reproduced" in out
