import pytest

from harness import hosttools
from harness.errors import HarnessError


def test_missing_tool_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HarnessError) as e:
        hosttools.require("qemu-system-x86_64", "mkfs.btrfs")
    assert str(e.value) == (
        "missing host tool(s) qemu-system-x86_64, mkfs.btrfs: "
        "apt-get install btrfs-progs qemu-system-x86"
    )


def test_failed_command_reports_its_last_line() -> None:
    with pytest.raises(HarnessError, match=r"listing failed \(exit 2\): .*nonexistent"):
        hosttools.run(["ls", "/nonexistent"], "listing")
