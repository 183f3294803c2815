"""The nightly workflow, checked as data and run: its shell steps run here with
`make`, `sudo` and the venv's tools replaced by stand-ins that exit as told, so
its handling of crashtest's exit codes is exercised, not read. (actionlint runs
on it in `make lint`.)"""

import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.report.known import load_known

REPO = Path(__file__).parents[2]
WORKFLOW = REPO / ".github/workflows/nightly.yml"


def workflow() -> dict[str, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(doc, dict)
    return doc


def step(job: str, name: str) -> str:
    steps = workflow()["jobs"][job]["steps"]
    [run] = [s["run"] for s in steps if s.get("name") == name]
    return str(run)


def expand(script: str) -> str:
    """GitHub's ${{ }} expressions, with a shard's values."""
    values = {
        "matrix.kernel": "trixie:linux-image-cloud-amd64",
        "matrix.backend": "btrfs",
        "matrix.shard": "1",
        "env.SHARDS": "2",
        "inputs.kernels": "",
    }
    return re.sub(r"\$\{\{\s*([^}]+?)\s*\}\}", lambda m: values[m.group(1)], script)


def stand_in(bindir: Path, name: str, body: str) -> None:
    path = bindir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "$CALLS"\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def run_step(tmp_path: Path, script: str, env: dict[str, str]) -> tuple[int, str]:
    """As GitHub runs a `run:` step: bash --noprofile --norc -eo pipefail."""
    calls = tmp_path / "calls"
    calls.write_text("")
    (tmp_path / "step.sh").write_text(expand(script))
    res = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(tmp_path / "step.sh")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "CALLS": str(calls),
            "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
            "CUTS": "6",
            "STATES": "48",
            "SEED": "7",
            "KNOWN": "known-failures.toml",
            "WORKLOADS": "default",
            **env,
        },
    )
    return res.returncode, calls.read_text()


def assert_make_reads(make: str) -> None:
    """Every VAR= on this make command line is a variable the Makefile reads."""
    makefile = (REPO / "Makefile").read_text()
    for var in re.findall(r"\b([A-Z_]+)=", make):
        assert re.search(rf"^{var} \?=", makefile, re.M), var
        assert f"$({var})" in makefile, var


@pytest.mark.parametrize(("rc", "job_passes"), [(0, True), (1, True), (2, False), (130, False)])
def test_a_shard_fails_only_when_crashtest_broke(tmp_path: Path, rc: int, job_passes: bool) -> None:
    """Findings (1) go to the merge job; a broken harness (2) or an interrupted
    run (130) fails the shard's job."""
    stand_in(tmp_path / "bin", "sudo", "exit 0")
    stand_in(tmp_path / "bin", "make", f"exit {rc}")
    code, calls = run_step(tmp_path, step("shard", "Run this shard"), {})
    assert (code == 0) == job_passes
    [make] = [line for line in calls.splitlines() if line.startswith("make ")]
    assert "crashtest" in make.split() and "KNOWN=known-failures.toml" in make
    assert "SHARD=1/2" in make and "KERNEL=trixie:linux-image-cloud-amd64" in make


def test_every_variable_the_shard_passes_is_one_make_crashtest_reads(tmp_path: Path) -> None:
    stand_in(tmp_path / "bin", "sudo", "exit 0")
    stand_in(tmp_path / "bin", "make", "exit 0")
    _, calls = run_step(tmp_path, step("shard", "Run this shard"), {})
    make = next(line for line in calls.splitlines() if line.startswith("make "))
    assert_make_reads(make)
    known = re.search(r"KNOWN=(\S+)", make)
    assert known and load_known(REPO / known.group(1)).entries


@pytest.mark.parametrize("rc", [0, 2])
def test_the_nightly_compare_runs_the_long_setting_and_fails_when_an_arm_did(
    tmp_path: Path, rc: int
) -> None:
    stand_in(tmp_path / "bin", "sudo", "exit 0")
    stand_in(tmp_path / "bin", "make", f"exit {rc}")
    code, calls = run_step(tmp_path, step("compare", "Compare the storage stacks"), {})
    assert (code == 0) == (rc == 0)
    make = next(line for line in calls.splitlines() if line.startswith("make "))
    assert make.split()[1] == "compare" and "SETTING=long" in make.split()
    assert_make_reads(make)


@pytest.mark.parametrize(
    ("merge_rc", "report_rc", "want"), [(0, 0, 0), (1, 0, 1), (2, 0, 2), (0, 2, 2), (1, 2, 2)]
)
def test_the_merge_job_fails_on_new_findings_or_a_broken_merge(
    tmp_path: Path, merge_rc: int, report_rc: int, want: int
) -> None:
    venv = tmp_path / ".venv" / "bin"
    stand_in(tmp_path / "bin", "python3", f"mkdir -p {venv}; exit 0")
    stand_in(venv, "pip", "exit 0")
    stand_in(
        venv,
        "crashtest",
        f'case "$1" in merge) exit {merge_rc};; report) exit {report_rc};; esac; exit 9',
    )
    code, calls = run_step(
        tmp_path, step("merge", "Merge each cell's shards and write the report"), {}
    )
    assert code == want
    assert "crashtest merge --all merged shards" in calls
    assert "crashtest report merged -o merged/report.html" in calls


@pytest.mark.parametrize("earlier", [True, False])
def test_the_merge_job_diffs_against_the_last_nightly(tmp_path: Path, earlier: bool) -> None:
    venv = tmp_path / ".venv" / "bin"
    stand_in(
        tmp_path / "bin",
        "gh",
        'case "$2" in list) echo 41;; download) exit ' + ("0" if earlier else "1") + ";; esac",
    )
    stand_in(venv, "crashtest", 'echo "new: 1"; exit 1')
    summary = tmp_path / "step-summary"
    code, calls = run_step(
        tmp_path,
        step("merge", "What changed since the last nightly"),
        {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_REPOSITORY": "me/crashtest"},
    )
    assert code == 0  # informational: never the verdict
    assert "gh run download 41 --repo me/crashtest -n crashtest-report -D previous" in calls
    assert ("crashtest diff previous merged" in calls) == earlier
    assert ("new: 1" if earlier else "no earlier nightly") in summary.read_text()


def test_the_merge_job_runs_after_failed_shards_but_not_after_a_cancel() -> None:
    merge = workflow()["jobs"]["merge"]
    assert merge["needs"] == ["shard", "reproducers"] and "!cancelled()" in merge["if"]
    assert workflow()["permissions"] == {"contents": "read", "actions": "read"}
    shard = workflow()["jobs"]["shard"]
    assert shard["strategy"]["fail-fast"] is False


def test_the_kernel_axis_is_the_newest_debian_kernels_or_the_callers(tmp_path: Path) -> None:
    """One list for every job: sid, experimental's RC, trixie-backports, trixie
    (both flavours) and bookworm; a caller's JSON list replaces it."""
    kernels = workflow()["jobs"]["kernels"]
    [script] = [s["run"] for s in kernels["steps"]]
    for given, want in (("", None), ('["sid:linux-image-amd64"]', ["sid:linux-image-amd64"])):
        out = tmp_path / "output"
        out.write_text("")
        run_step(tmp_path, script, {"GITHUB_OUTPUT": str(out), "KERNELS": given})
        listed = json.loads(out.read_text().removeprefix("list="))
        if want is None:
            assert [k.split(":")[0] for k in listed] == [
                "sid",
                "experimental",
                "trixie-backports",
                "trixie",
                "trixie",
                "bookworm",
            ]
            assert "trixie:linux-image-amd64" in listed
        else:
            assert listed == want
    for job in ("shard", "reproducers"):
        assert workflow()["jobs"][job]["needs"] == "kernels"
        assert (
            "needs.kernels.outputs.list" in workflow()["jobs"][job]["strategy"]["matrix"]["kernel"]
        )


@pytest.mark.parametrize(("rc", "job_passes"), [(0, True), (1, True), (2, False)])
def test_the_live_bug_reproducers_run_on_every_kernel(
    tmp_path: Path, rc: int, job_passes: bool
) -> None:
    stand_in(tmp_path / "bin", "sudo", "exit 0")
    stand_in(tmp_path / "bin", "make", f"exit {rc}")
    code, calls = run_step(tmp_path, step("reproducers", "Run the live-bug reproducers"), {})
    assert (code == 0) == job_passes
    make = next(line for line in calls.splitlines() if line.startswith("make "))
    assert "WORKLOADS=btrfs-764,btrfs-779" in make and "BACKENDS=btrfs" in make
    assert "SHARD=1/1" in make  # a one-shard campaign, so `merge --all` takes it
    assert_make_reads(make)


def test_a_calling_repository_brings_its_workloads_and_known_failures(tmp_path: Path) -> None:
    on = workflow()[True]  # yaml reads the key `on` as True
    call = on["workflow_call"]["inputs"]
    assert {"crashtest_repository", "kernels", "workloads", "known"} <= set(call)
    assert call["crashtest_repository"]["required"] is True
    assert "caller/" in workflow()["env"]["KNOWN"]
    assert workflow()["jobs"]["compare"]["if"] == "${{ !inputs.crashtest_repository }}"
    stand_in(tmp_path / "bin", "sudo", "exit 0")
    stand_in(tmp_path / "bin", "make", "exit 0")
    (tmp_path / "caller").mkdir()
    _, calls = run_step(
        tmp_path, step("shard", "Run this shard"), {"WORKLOADS": "default,wl/mine.toml,btrfs-779"}
    )
    assert "WORKLOADS=default,caller/wl/mine.toml,btrfs-779" in calls


def test_the_live_bugs_are_known_on_the_kernels_without_their_fixes() -> None:
    from harness.model import Violation

    known = load_known(REPO / "known-failures.toml")
    lost = Violation("fs-durability", "s", "p", {}, "", "promise.file", "file:disk:/kb/dir")
    back = Violation("fs-durability", "s", "p", {}, "", "promise.absent-file", "file:disk:/kb/foo")
    for v, wl in ((lost, "btrfs-779"), (back, "btrfs-764")):
        for kernel, is_known in (
            ("6.12.117+deb13-cloud-amd64", True),
            ("6.1.0-28-cloud-amd64", True),
            ("7.2.13+deb14-cloud-amd64", False),
        ):
            cell = {"backend": "btrfs", "kernel": kernel, "release": "trixie", "workload": wl}
            assert (known.match(v, cell) != "") == is_known, (wl, kernel)


def test_the_nightly_runs_the_full_test_suite(tmp_path: Path) -> None:
    stand_in(tmp_path / "bin", "sudo", "exit 0")
    stand_in(tmp_path / "bin", "make", "exit 0")
    code, calls = run_step(tmp_path, step("test-full", "The full test suite"), {})
    assert code == 0
    make = next(line for line in calls.splitlines() if line.startswith("make "))
    assert make.split()[1] == "test-full"
    assert "test-full:" in (REPO / "Makefile").read_text()
