"""`crashtest upstream`: the report of a shipped bundle (btrfs-779 on Debian's
6.12.117), and its standalone reproducer run for real without crashtest in a guest:
it reproduces the bug on 6.12.117 (exit 1, the old name back) and passes on sid's
7.2, which has the fix."""

from pathlib import Path

import pytest

from harness.cli import main
from harness.guest.host import guest_host
from harness.images import ensure_images
from harness.repro.bundle import load_bundle
from harness.vm import accel
from harness.vm.machine import Machine
from harness.vm.qemu import Disk, MachineConfig

BUNDLES = Path(__file__).parents[2] / "bundles"
BUNDLE = BUNDLES / "btrfs-779-debian-6.12.117"


def standalone(tmp_path: Path, bundle: Path) -> str:
    out = tmp_path / "report.txt"
    assert main(["upstream", str(bundle), "-o", str(out)]) == 0
    text = out.read_text()
    assert "generic/779" in text and "953902e4fb4c" in text
    return text.split("----- reproduce.sh -----\n", 1)[1]


def run_in_guest(kernel: str, script: str, tmp_path: Path) -> tuple[int, str]:
    images = ensure_images(kernel)
    acc = accel.choose()[0]
    cfg = MachineConfig(kernel=images.kernel.vmlinuz, initrd=images.initrd, accel=acc,
                        cpus=accel.default_cpus(acc),
                        disks=(Disk(images.root.path, "root", read_only=True),))
    with Machine(cfg, tmp_path / "console.log") as vm:
        vm.wait_booted(180)
        assert guest_host(vm.agent).exists("dmsetup")
        res = vm.agent.run("cat > /tmp/reproduce.sh && bash /tmp/reproduce.sh", timeout=300,
                           stdin=script.encode())
    return res.rc, res.stdout + res.stderr


@pytest.mark.parametrize(("kernel", "reproduced"), [
    ("", True),  # the bundle's own kernel, 6.12.117
    ("sid:linux-image-cloud-amd64", False),  # 7.2: the fix is in
])
def test_the_standalone_reproducer_runs_without_crashtest(
        tmp_path: Path, kernel: str, reproduced: bool, no_leftovers: None) -> None:
    script = standalone(tmp_path, BUNDLE)
    spec = kernel or load_bundle(BUNDLE).meta["kernel"]["spec"]
    rc, out = run_in_guest(spec, script, tmp_path)
    if reproduced:
        assert rc == 1, out
        assert "FAIL: $MNT/kb/dir differs" not in out and "/kb/dir differs from what" in out
        assert "old-slink" in out  # the diff shows the old name back
    else:
        assert rc == 0, out
        assert "not reproduced: every promise held" in out
