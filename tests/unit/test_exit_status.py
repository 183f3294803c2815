"""The exit status is the contract: 0 pass, 1 findings, 2 harness/host/input
failure, 130 interrupted; through `make crashtest` too. Bad input is one line."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import harness.cli
from harness import rundir
from harness.cli import main
from harness.errors import HarnessError
from harness.images.rootfs import verify_root

REPO = Path(__file__).parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120
    )


def one_line(res: subprocess.CompletedProcess[str], start: str) -> str:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), res.stderr
    return lines[0]


def test_out_that_cannot_hold_results(tmp_path: Path) -> None:
    line = one_line(run_cli("run", "--out", "/proc/x"), "crashtest: bad input: OUT /proc/x")
    assert "cannot write results there" in line
    a_file = tmp_path / "file"
    a_file.write_text("x")
    line = one_line(run_cli("run", "--out", str(a_file)), "crashtest: bad input: OUT")
    assert "exists and is not a directory" in line


def test_out_on_a_nearly_full_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    free = shutil.disk_usage(tmp_path).free
    monkeypatch.setattr(rundir, "MIN_FREE_BYTES", free + (1 << 30))
    assert main(["run", "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MiB free; a campaign needs at least" in err[0]
    assert not any((tmp_path / "res").iterdir())


def test_negative_numbers_are_usage_errors() -> None:
    res = run_cli("states", "/dev/null", "--budget", "-1")
    assert res.returncode == 2 and "must not be negative: '-1'" in res.stderr
    assert "Traceback" not in res.stderr


def test_an_unexpected_exception_is_exit_2_never_a_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(opts: object, **kw: object) -> Path:
        raise KeyError("a bug in crashtest")

    monkeypatch.setattr(harness.cli, "run_campaign", broken)
    out = tmp_path / "res"
    out.mkdir()
    assert main(["run", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crashtest: internal error: KeyError")
    logs = list(out.glob("crashtest-error-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()
    assert str(logs[0]) in err[0]


def test_a_damaged_cached_root_image_says_how_to_rebuild(tmp_path: Path) -> None:
    img = tmp_path / "root.img"
    img.write_bytes(b"\0" * 4096)
    manifest: dict[str, object] = {"id": "rootfs-x"}
    verify_root(tmp_path, manifest)  # first look records the sha256 (older caches)
    assert manifest["root_sha256"] and manifest["root_stamp"]
    verify_root(tmp_path, manifest)  # unchanged: nothing read
    with img.open("r+b") as f:
        f.seek(100)
        f.write(b"\1")
    os.utime(img, ns=(0, 12345))
    with pytest.raises(HarnessError, match=r"is damaged .* rebuild it"):
        verify_root(tmp_path, manifest)
    img.unlink()
    with pytest.raises(HarnessError, match="is missing"):
        verify_root(tmp_path, manifest)


@pytest.fixture
def fake_venv(tmp_path: Path) -> Path:
    """A venv whose `crashtest` exits with $FAKE_RC, so make's handling of each
    status is tested without a campaign (the real one is tested elsewhere)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    script = venv / "bin" / "crashtest"
    script.write_text('#!/bin/sh\necho "crashtest $*"\nexit $FAKE_RC\n')
    script.chmod(0o755)
    (venv / ".installed").touch()
    return venv


@pytest.mark.parametrize("rc", [0, 1, 2, 130])
def test_make_crashtest_exits_as_crashtest_does(fake_venv: Path, rc: int) -> None:
    # make as a terminal starts it, SIGINT at its default: a suite started as a
    # background job inherits SIGINT ignored, and a make that ignores it exits 0
    res = subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(REPO),
            "crashtest",
            f"VENV={fake_venv}",
            "CUTS=1",
            "WORKLOAD=./mine.toml",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FAKE_RC": str(rc)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # a SIGINT to make (130) shows as -2 to Python, as 130 to a shell
    assert res.returncode == (-signal.SIGINT if rc == 130 else rc), res.stderr
    assert "crashtest run" in res.stdout and "--cuts '1'" not in res.stdout
    assert "--cuts 1 " in res.stdout and "--workload ./mine.toml" in res.stdout
