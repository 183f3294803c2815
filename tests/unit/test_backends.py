"""Backends, with real mkfs and real fsck on the host (image files, never mounted)."""

import subprocess
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.storage.backends import BACKENDS, make_test_disk, parse_backends


def test_default_and_options() -> None:
    names = [b.name for b in parse_backends(None)]
    assert names == ["btrfs", "ext4-overlay2"]
    b = parse_backends("ext4-overlay2", "-O ^has_journal", "data=writeback")[0]
    assert b.mount_cmd("/dev/vdb") == "mount -t ext4 -o data=writeback /dev/vdb /var/lib/docker"
    assert b.mkfs_argv(Path("/x"))[-3:] == ["-O", "^has_journal", "/x"]


def test_unknown_backend() -> None:
    with pytest.raises(InputError, match="unknown backend"):
        parse_backends("btrfs,nilfs")


HOST_FSCK = {
    "ext4": ["e2fsck", "-fn"],
    "btrfs": ["btrfs", "check", "--readonly"],
    "xfs": ["xfs_repair", "-n"],
}


@pytest.mark.parametrize("name", list(BACKENDS))
def test_real_mkfs_gives_a_clean_filesystem(tmp_path: Path, name: str) -> None:
    b = BACKENDS[name]
    img = make_test_disk(b, tmp_path / "disk.img")
    assert img.stat().st_size == 4 << 30
    assert img.stat().st_blocks * 512 < 200 << 20  # sparse
    res = subprocess.run([*HOST_FSCK[b.fs], str(img)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_fsck_catches_a_damaged_filesystem(tmp_path: Path) -> None:
    """The fsck the oracle relies on does fail on damage (so "clean" means something)."""
    img = make_test_disk(BACKENDS["ext4-overlay2"], tmp_path / "disk.img")
    with img.open("r+b") as f:  # zero the first inode table blocks
        f.seek(1 << 20)
        f.write(b"\xff" * (256 << 10))
    res = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    assert res.returncode != 0
