import os
import subprocess
from pathlib import Path

import pytest


def qemu_pids() -> set[str]:
    out = subprocess.run(["pgrep", "-f", "qemu-system-x86_64"], capture_output=True, text=True)
    return set(out.stdout.split())


@pytest.fixture
def no_leftovers(tmp_path: Path):
    """Asserts a test leaves no QEMU process and no crashtest temp dir behind."""
    before_pids = qemu_pids()
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    before_dirs = set(tmp.glob("crashtest-*"))
    yield
    assert qemu_pids() - before_pids == set(), "QEMU process left behind"
    assert set(tmp.glob("crashtest-*")) - before_dirs == set(), "temp dir left behind"
