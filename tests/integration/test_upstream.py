"""`crashtest upstream`: the reports of the shipped bundles (btrfs-779 and
btrfs-764 on Debian's 6.12.117), and their standalone reproducers run for real
without crashtest in a guest: each reproduces its bug on 6.12.117 (exit 1) and
passes on sid's 7.2, which has the fix."""

from pathlib import Path

import pytest

from harness.cli import main
from harness.guest.host import guest_host
from harness.images.guest import ensure_images
from harness.repro.bundle import load_bundle
from harness.vm import accel
from harness.vm.machine import Machine
from harness.vm.qemu import Disk, MachineConfig

BUNDLES = Path(__file__).parents[2] / "bundles"
FIXES = {
    "btrfs-779": ("generic/779", "953902e4fb4c", "/kb/dir differs from what", "old-slink"),
    "btrfs-764": ("generic/764", "5e85262e542d", "/kb/foo is back", "FAIL: "),
}
SID = "sid:linux-image-cloud-amd64"


def standalone(tmp_path: Path, bundle: Path, bug: str) -> str:
    out = tmp_path / "report.txt"
    assert main(["upstream", str(bundle), "-o", str(out)]) == 0
    text = out.read_text()
    fstests, fix, _, _ = FIXES[bug]
    assert fstests in text and fix in text
    return text.split("----- reproduce.sh -----\n", 1)[1]


def run_in_guest(kernel: str, script: str, tmp_path: Path) -> tuple[int, str]:
    images = ensure_images(kernel)
    acc = accel.choose()[0]
    cfg = MachineConfig(
        kernel=images.kernel.vmlinuz,
        initrd=images.initrd,
        accel=acc,
        cpus=accel.default_cpus(acc),
        disks=(Disk(images.root.path, "root", read_only=True),),
    )
    with Machine(cfg, tmp_path / "console.log") as vm:
        vm.wait_booted(180)
        assert guest_host(vm.agent).exists("dmsetup")
        res = vm.agent.run(
            "cat > /tmp/reproduce.sh && bash /tmp/reproduce.sh", timeout=300, stdin=script.encode()
        )
    return res.rc, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("bug", "kernel", "reproduced"),
    [
        ("btrfs-779", "", True),  # the bundle's own kernel, 6.12.117
        ("btrfs-779", SID, False),  # 7.2: the fix is in
        pytest.param("btrfs-764", "", True, marks=pytest.mark.full),
        pytest.param("btrfs-764", SID, False, marks=pytest.mark.full),
    ],
)
def test_the_standalone_reproducer_runs_without_crashtest(
    tmp_path: Path, bug: str, kernel: str, reproduced: bool, no_leftovers: None
) -> None:
    bundle = BUNDLES / f"{bug}-debian-6.12.117"
    script = standalone(tmp_path, bundle, bug)
    spec = kernel or load_bundle(bundle).meta["kernel"]["spec"]
    rc, out = run_in_guest(spec, script, tmp_path)
    _, _, failed, shows = FIXES[bug]
    if reproduced:
        assert rc == 1, out
        assert failed in out and shows in out, out  # the diff shows the old name back
    else:
        assert rc == 0, out
        assert "not reproduced: every promise held" in out
