import os
import subprocess
import tempfile
from pathlib import Path

import pytest


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def qemu_pids() -> set[int]:
    """QEMU processes started by this test process or its children (other QEMU
    processes on the machine are not ours to count)."""
    out = subprocess.run(["pgrep", "-f", "qemu-system-x86_64"], capture_output=True, text=True)
    me, mine = os.getpid(), set()
    for pid in map(int, out.stdout.split()):
        p = pid
        while p > 1:
            p = _ppid(p)
            if p == me:
                mine.add(pid)
                break
    return mine


@pytest.fixture(scope="session", autouse=True)
def private_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Temp files of this test run, and of the crashtest processes it starts, go to
    a directory of its own: another crashtest on the machine (a campaign, a second
    test run) makes its own temp dirs, which are not this run's leftovers."""
    tmp = tmp_path_factory.mktemp("tmpdir")
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = str(tmp)
    return tmp


@pytest.fixture
def no_leftovers(tmp_path: Path):
    """Asserts a test leaves no QEMU process and no crashtest temp dir behind."""
    before_pids = qemu_pids()
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    before_dirs = set(tmp.glob("crashtest-*"))
    yield
    assert qemu_pids() - before_pids == set(), "QEMU process left behind"
    assert set(tmp.glob("crashtest-*")) - before_dirs == set(), "temp dir left behind"
