"""What a saved guest is keyed by: a change to anything it depends on makes a new one."""

from dataclasses import replace
from pathlib import Path

from harness.campaign.snapshots import saved_key
from harness.storage.backends import BACKENDS
from harness.vm.qemu import Disk, MachineConfig


def machine(tmp: Path) -> MachineConfig:
    for name in ("vmlinuz", "initrd", "root.img"):
        if not (tmp / name).exists():
            (tmp / name).write_bytes(name.encode() * 100)
    return MachineConfig(
        kernel=tmp / "vmlinuz",
        initrd=tmp / "initrd",
        disks=(Disk(tmp / "root.img", "root", read_only=True),),
    )


def test_saved_guest_key_follows_what_the_guest_depends_on(tmp_path: Path) -> None:
    config = machine(tmp_path)
    idle = saved_key(config, None)
    assert saved_key(config, None) == idle  # stable
    btrfs, ext4 = saved_key(config, BACKENDS["btrfs"]), saved_key(config, BACKENDS["ext4-overlay2"])
    assert len({idle, btrfs, ext4}) == 3
    mounted = replace(BACKENDS["ext4-overlay2"], mount_options="data=journal")
    assert saved_key(config, mounted) != ext4
    assert saved_key(replace(config, memory_mb=1024), None) != idle
    assert saved_key(replace(config, cpus=config.cpus + 1), None) != idle
    # the kernel's content, not its path, counts
    (tmp_path / "vmlinuz").write_bytes(b"another kernel")
    assert saved_key(config, None) != idle
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "vmlinuz").write_bytes(b"another kernel")
    assert saved_key(replace(config, kernel=moved / "vmlinuz"), None) == saved_key(config, None)
