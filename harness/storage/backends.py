"""Storage backends: the filesystem on the test disk and docker's storage driver on it.

The test disk is formatted on the host (native speed, real mkfs) and mounted by
the guest at /var/lib/docker, so the guest kernel runs every byte of recovery.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from harness import hosttools
from harness.errors import HarnessError, InputError

DISK_SIZE = 4 << 30  # sparse; btrfs wants room for its chunks under layer churn
DATA_SERIAL = "data"
DOCKER_ROOT = "/var/lib/docker"


@dataclass(frozen=True)
class Backend:
    name: str
    fs: str
    driver: str
    mkfs_options: tuple[str, ...] = ()
    mount_options: str = ""

    def mkfs_argv(self, image: Path) -> list[str]:
        tool = {
            "ext4": ["mkfs.ext4", "-q", "-F"],
            "btrfs": ["mkfs.btrfs", "-q", "-f"],
            "xfs": ["mkfs.xfs", "-q", "-f"],
        }[self.fs]
        return [*tool, "-L", "crashtest", *self.mkfs_options, str(image)]

    def kernel_modules(self) -> tuple[str, ...]:
        """What the guest kernel needs for this backend: its filesystem, and
        overlayfs for the overlay2 driver."""
        return (self.fs, "overlay") if self.driver == "overlay2" else (self.fs,)

    def mount_cmd(self, device: str, target: str = DOCKER_ROOT, read_only: bool = False) -> str:
        options = ",".join(o for o in (self.mount_options, "ro" if read_only else "") if o)
        opts = f"-o {shlex.quote(options)} " if options else ""
        return f"mount -t {self.fs} {opts}{device} {target}"

    def fsck_cmd(self, device: str, mounted_ro: bool = False) -> str:
        """Read-only check of the filesystem; exit 0 means clean. `mounted_ro`: the
        filesystem is mounted read-only meanwhile (nothing writes it, so the check
        sees what it would see unmounted); "" where the tool cannot do that."""
        if mounted_ro:
            return {
                "ext4": f"e2fsck -fn {device}",
                "btrfs": f"btrfs check --readonly --force {device}",
            }.get(self.fs, "")
        return {
            "ext4": f"e2fsck -fn {device}",
            "btrfs": f"btrfs check --readonly {device}",
            "xfs": f"xfs_repair -n {device}",
        }[self.fs]

    def scrub_cmd(self, target: str = DOCKER_ROOT) -> str:
        """Verify every checksum of a mounted filesystem (btrfs only); "" if none.
        Its error summary decides too, not only its exit status: on 6.1 a read-only
        scrub that found a data checksum error exits 0 (tests/golden/console/6.1).
        A summary of stale mirror superblocks alone (`super=N`) is by design: they
        are written without FUA."""
        if self.fs != "btrfs":
            return ""
        return (
            f'out=$(btrfs scrub start -B -r {target} 2>&1); rc=$?; echo "$out"; '
            "[ $rc = 0 ] && ! echo \"$out\" | grep 'Error summary:' | "
            "grep -qvE 'no errors found|summary:[[:space:]]*super=[0-9]+[[:space:]]*$'"
        )

    def flushes_off(self) -> str:
        """The mount option that stops the filesystem flushing the disk cache, if any."""
        for o in self.mount_options.split(","):
            if o.strip() in ("barrier=0", "nobarrier", "barrier=off"):
                return o.strip()
        return ""

    def describe(self) -> dict[str, str]:
        return {
            "name": self.name,
            "fs": self.fs,
            "storage_driver": self.driver,
            "mkfs_options": " ".join(self.mkfs_options),
            "mount_options": self.mount_options,
        }


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("btrfs", "btrfs", "btrfs"),
        Backend("ext4-overlay2", "ext4", "overlay2"),
        Backend("xfs-overlay2", "xfs", "overlay2", mkfs_options=("-n", "ftype=1")),
        Backend("btrfs-overlay2", "btrfs", "overlay2"),
    )
}
DEFAULT_BACKENDS = ("btrfs", "ext4-overlay2")
# For a disk of unknown origin: the backend to assume for each filesystem type.
BY_FS = {"btrfs": "btrfs", "ext4": "ext4-overlay2", "xfs": "xfs-overlay2"}


def parse_backends(
    spec: str | None, mkfs_options: str = "", mount_options: str = ""
) -> list[Backend]:
    """`btrfs,ext4-overlay2` → backends, with user mkfs/mount options applied to each."""
    names = [n.strip() for n in (spec or ",".join(DEFAULT_BACKENDS)).split(",") if n.strip()]
    if not names:
        raise InputError("BACKENDS is empty")
    out = []
    for n in names:
        if n not in BACKENDS:
            raise InputError(f"unknown backend {n!r}: choose from {', '.join(BACKENDS)}")
        b = BACKENDS[n]
        if mkfs_options:
            b = replace(b, mkfs_options=(*b.mkfs_options, *shlex.split(mkfs_options)))
        if mount_options:
            b = replace(b, mount_options=mount_options)
        out.append(b)
    return out


def make_test_disk(backend: Backend, image: Path, size: int = DISK_SIZE) -> Path:
    """A fresh sparse image of `size` bytes formatted on the host."""
    hosttools.require(backend.mkfs_argv(image)[0])
    image.parent.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as f:
        f.truncate(size)
    try:
        hosttools.run(backend.mkfs_argv(image), f"{backend.mkfs_argv(image)[0]} of the test disk")
    except HarnessError:
        image.unlink(missing_ok=True)
        raise
    return image
