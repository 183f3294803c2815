"""Bad input: one clear line, exit 2, nothing written, nothing left running."""

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120
    )


def assert_bad_input(res: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 2 and one line saying what was wrong."""
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crashtest: bad input:"), lines
    assert message in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backends", "zfs"], "unknown backend 'zfs'"),
        (["--backends", ","], "BACKENDS is empty"),
        (["--cuts", "0", "--states", "0"], "must be >= 0 and not both 0"),
        (["--cut-at", "after:nonsense"], "step must be one of"),
        (["--cut-at", "during:build-app:soon"], "delay must be a number"),
        (["--cut-at", "returned:start-writer"], "only a step that ends in its own sync"),
        (["--release", "sid"], "RELEASE 'sid': not a known Debian suite (one of bookworm, trixie)"),
        (["--releases", "trixie,buster"], "RELEASE 'buster'"),
        (["--releases", ","], "RELEASES is empty"),
        (
            ["--workloads", "pull,nope"],
            "WORKLOAD 'nope': not a file and not a registered workload (btrfs-302, btrfs-764, ",
        ),
        (["--workloads", "pull,load", "--cut-at", "after:pull"], "step must be one of"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    res = run_cli("run", "--out", str(tmp_path / "res"), *args)
    assert_bad_input(res, message)
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


def test_a_matrix_axis_names_each_value_once() -> None:
    from harness.campaign.plan import RunOptions, release_specs, workload_specs

    assert workload_specs(RunOptions(workloads="pull, load,pull")) == ["pull", "load"]
    assert release_specs(RunOptions(releases="trixie,bookworm")) == ["trixie", "bookworm"]
    assert release_specs(RunOptions()) == ["trixie"]


def test_non_kernel_file(tmp_path: Path, no_leftovers: None) -> None:
    bogus = tmp_path / "vmlinuz"
    bogus.write_text("hello\n" * 1000)
    res = run_cli("run", "--out", str(tmp_path / "res"), "--kernel", str(bogus))
    assert res.returncode == 2
    assert (
        res.stderr.strip() == f"crashtest: bad input: KERNEL {bogus}: not an x86 kernel "
        "image (no HdrS boot header)"
    )


def test_non_number_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "--cuts", "many"])
    assert e.value.code == 2
    assert "not a whole number: 'many'" in capsys.readouterr().err


def test_version_and_defaults_in_help() -> None:
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("crashtest 0.")
    helps = run_cli("run", "--help").stdout
    for want in (
        "(default: 500)",
        "(default: 2)",
        "(default: btrfs,ext4-overlay2)",
        "(default: results)",
        "--resume RUN_DIR",
        "--known KNOWN",
    ):
        assert want in helps, want


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--cuts", "-1"],
        ["run", "--states", "lots"],
        ["run", "--jobs", "two"],
        ["states", "x", "--budget", "-1"],
        ["repro", "x", "--runs", "-3"],
        ["run", "--fail-on", "some"],
        ["run", "--accel", "hvf"],
        ["corpus", "run", "--runs", "x"],
        ["corpus"],
        ["nonsense"],
    ],
)
def test_every_bad_option_is_a_usage_error(args: list[str]) -> None:
    """One line, naming the command and where its help is: no usage block."""
    res = run_cli(*args)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crashtest") and "bad usage" in lines[0]
    assert "--help)" in lines[0]


def test_every_help_page_says_what_and_how_it_exits() -> None:
    for args in (["run"], ["diff"], ["corpus", "run"], ["corpus", "list"], ["workloads"]):
        page = run_cli(*args, "--help").stdout
        assert "exit status: " in page, args
    nested = run_cli("corpus", "run", "--help").stdout
    assert "(default: 5)" in nested and "build each entry's kernel" in nested


def test_a_closed_pipe_is_quiet() -> None:
    """`crashtest ... | head`: the reader went away; no traceback, no error line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "workloads"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before it writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == ""


def test_report_to_a_missing_directory_is_bad_input(tmp_path: Path) -> None:
    res = run_cli("report", str(tmp_path), "-o", str(tmp_path / "nope" / "x.html"))
    assert_bad_input(res, "no such directory")
