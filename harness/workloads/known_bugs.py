"""The known-bug corpus's workloads: the syscall sequences of the fstests
reproducers of real kernel crash-consistency fixes (harness/corpus), run with
xfs_io as fstests runs them, on the test filesystem beside docker's store
(`disk:/kb`), and one inside an overlay mount as docker's overlay2 makes them.

Each ends in the fsync, O_SYNC write or reflink the fixed kernel makes durable,
and promises what fstests checks after `_flakey_drop_and_remount`: a file's
content, or a directory's list of names (`ls -1`). A kernel with the fix undone
breaks that promise in the crash state taken right after the call returned
(the flush-boundary state of its epoch), or fails fsck or the mount.
"""

from __future__ import annotations

from harness.model import Barrier
from harness.workloads.api import GuestFile, Step, Workload, absent_file, file

DIR = "/var/lib/docker/kb"  # on the test filesystem, beside docker's store
IO = "xfs_io"


def disk(path: str = "") -> str:
    return "disk:/kb" + (f"/{path}" if path else "")


# The parent directory of the btrfs reproducers is a subvolume, as fstests' is (the
# mount's top subvolume) and as every layer and container is under docker's btrfs
# driver: a plain directory there takes other logging paths (generic/782 is not
# reproduced in one).
BTRFS_DIR = f"btrfs -q subvolume create {DIR}"


def _workload(name: str, description: str, steps: list[Step]) -> Workload:
    # No docker invariants: these judge the filesystem (promises, mount, fsck).
    return Workload(
        name, steps, invariants=(), description=description, cuts=[f"after:{steps[-1].name}"]
    )


def btrfs_782(seed: int = 0) -> Workload:
    """generic/782: a directory fsync'd after a link into a new subdirectory."""
    return _workload(
        "btrfs-782",
        btrfs_782.__doc__ or "",
        [
            Step("setup", (BTRFS_DIR, f"touch {DIR}/foo"), Barrier.SYNC),
            Step(
                "fsync-dir",
                (
                    f"mkdir {DIR}/dir",
                    f"{IO} -c 'pwrite -S 0xab 0 64K' -c fsync {DIR}/foo >/dev/null",
                    f"ln {DIR}/foo {DIR}/dir/bar",
                    f"{IO} -c fsync {DIR}",
                ),
                Barrier.FSYNC,
                promises=[file(disk()), file(disk("foo"))],
            ),
        ],
    )


def btrfs_785(seed: int = 0) -> Workload:
    """generic/785: new directory and file, a rename, then the parent fsync'd."""
    return _workload(
        "btrfs-785",
        btrfs_785.__doc__ or "",
        [
            Step("setup", (BTRFS_DIR, f": > {DIR}/file1"), Barrier.SYNC),
            Step(
                "fsync-dir",
                (
                    f"{IO} -c 'pwrite -S 0xab 0 1000' -c fsync {DIR}/file1 >/dev/null",
                    f"mkdir {DIR}/dir",
                    f": > {DIR}/dir/foo",
                    f"mv {DIR}/file1 {DIR}/file2",
                    f"{IO} -c fsync {DIR}",
                ),
                Barrier.FSYNC,
                promises=[file(disk()), file(disk("dir")), file(disk("file2"))],
            ),
        ],
    )


def btrfs_784(seed: int = 0) -> Workload:
    """generic/784: a directory moved, a file made under its old name and fsync'd,
    moved away and fsync'd again: the mount must succeed with the same tree."""
    return _workload(
        "btrfs-784",
        btrfs_784.__doc__ or "",
        [
            Step("setup", (BTRFS_DIR, f"mkdir {DIR}/dir1 {DIR}/dir2"), Barrier.SYNC),
            Step(
                "fsync-moved",
                (
                    f"mv {DIR}/dir1 {DIR}/dir2",
                    f"{IO} -f -c fsync {DIR}/dir1",
                    f"mv {DIR}/dir1 {DIR}/dir2/foo",
                    f"{IO} -c fsync {DIR}/dir2/foo",
                ),
                Barrier.FSYNC,
                promises=[file(disk()), file(disk("dir2"))],
            ),
        ],
    )


def btrfs_788(seed: int = 0) -> Workload:
    """generic/788: a file truncated to 0 and fsync'd, then linked and its directory
    fsync'd: it must stay empty (not come back with its old 64 KiB)."""
    return _workload(
        "btrfs-788",
        btrfs_788.__doc__ or "",
        [
            Step(
                "setup",
                (
                    BTRFS_DIR,
                    f"mkdir {DIR}/dir",
                    f"{IO} -f -c 'pwrite -S 0xab 0 64K' {DIR}/dir/foo >/dev/null",
                ),
                Barrier.SYNC,
            ),
            Step(
                "fsync-link",
                (
                    f"{IO} -c 'truncate 0' -c fsync {DIR}/dir/foo",
                    f"ln {DIR}/dir/foo {DIR}/dir/bar",
                    f"{IO} -c fsync {DIR}/dir",
                ),
                Barrier.FSYNC,
                promises=[file(disk("dir")), file(disk("dir/foo"))],
            ),
        ],
    )


def btrfs_302(seed: int = 0) -> Workload:
    """btrfs/302: a new subvolume of 300 files snapshotted in the transaction that
    created it; the snapshot must read back after the commit."""
    sub = f"{DIR}/subvol"
    return _workload(
        "btrfs-302",
        btrfs_302.__doc__ or "",
        [
            Step(
                "snapshot",
                (
                    f"mkdir -p {DIR}",
                    f"btrfs -q subvolume create {sub}",
                    f"cd {sub} && seq -f f%g 1 300 | xargs touch",
                    f"btrfs -q subvolume snapshot -r {sub} {sub}/snap",
                ),
                Barrier.SYNC,
                promises=[file(disk("subvol/snap")), file(disk("subvol"))],
            ),
        ],
    )


def btrfs_764(seed: int = 0) -> Workload:
    """generic/764: a file unlinked while open, then fsync'd through its descriptor,
    must stay deleted (ext4, xfs and f2fs keep it deleted)."""
    unlink_fsync = (
        "import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.unlink(sys.argv[1]); os.fsync(fd)"
    )
    return _workload(
        "btrfs-764",
        btrfs_764.__doc__ or "",
        [
            Step(
                "setup",
                (BTRFS_DIR, f"{IO} -f -c 'pwrite -S 0xab 0 64K' {DIR}/foo >/dev/null"),
                Barrier.SYNC,
            ),
            Step(
                "unlink-fsync",
                (f"python3 -c '{unlink_fsync}' {DIR}/foo",),
                Barrier.FSYNC,
                promises=[absent_file(disk("foo"))],
            ),
        ],
    )


def btrfs_779(seed: int = 0) -> Workload:
    """generic/779: a symlink renamed after its directory was fsync'd, then the
    directory fsync'd again: the symlink must have its new name."""
    return _workload(
        "btrfs-779",
        btrfs_779.__doc__ or "",
        [
            Step("setup", (BTRFS_DIR,), Barrier.SYNC),
            Step(
                "fsync-dir",
                (
                    f"mkdir {DIR}/dir",
                    f"ln -s foobar {DIR}/dir/old-slink",
                    f"{IO} -c fsync {DIR}/dir",
                    f"mv {DIR}/dir/old-slink {DIR}/dir/new-slink",
                    f"{IO} -c fsync {DIR}/dir",
                ),
                Barrier.FSYNC,
                promises=[file(disk("dir"))],
            ),
        ],
    )


def ext4_737(seed: int = 0) -> Workload:
    """generic/737: an O_SYNC direct-IO write that extends a file: its new size is
    durable when the write returns."""
    return _workload(
        "ext4-737",
        ext4_737.__doc__ or "",
        [
            Step("setup", (f"mkdir -p {DIR}", f"touch {DIR}/foo"), Barrier.SYNC),
            Step(
                "osync-dio-append",
                (f"{IO} -s -d -c 'pwrite -S 0xcd 0 64K' {DIR}/foo >/dev/null",),
                Barrier.FSYNC,
                promises=[file(disk("foo"))],
            ),
        ],
    )


def xfs_628(seed: int = 0) -> Workload:
    """generic/628: a reflink into a file opened O_SYNC is durable when it returns."""
    return _workload(
        "xfs-628",
        xfs_628.__doc__ or "",
        [
            Step(
                "setup",
                (
                    f"mkdir -p {DIR}",
                    f"{IO} -f -c 'pwrite -S 0x61 0 1M' {DIR}/a >/dev/null",
                    f"touch {DIR}/b",
                ),
                Barrier.SYNC,
            ),
            Step(
                "osync-reflink",
                (f"{IO} -s -c 'reflink {DIR}/a' {DIR}/b >/dev/null",),
                Barrier.FSYNC,
                promises=[file(disk("b"))],
            ),
        ],
    )


LOWER_SIZE = 1 << 20


def _overlay(name: str, doc: str, options: str, change: str) -> Workload:
    """A file of an overlay's lower layer changed through the overlay (a copy-up
    into the upper layer, as in a container of an overlay2 image), then an
    unrelated file fsync'd. The upper copy must hold the lower file's data: an
    empty one hides it (the container sees an empty file)."""
    from crashtest_guest.seeded import seeded_bytes

    ovl = f"{DIR}/ovl"
    return _workload(
        name,
        doc,
        [
            Step(
                "setup",
                (f"mkdir -p {ovl}/lower {ovl}/upper {ovl}/work {ovl}/merged",),
                Barrier.SYNC,
                files=[GuestFile(f"{ovl}/lower/big", seeded_bytes(f"{name}/big", LOWER_SIZE))],
            ),
            Step(
                "copy-up",
                (
                    f"mount -t overlay overlay -o lowerdir={ovl}/lower,upperdir={ovl}/upper,"
                    f"workdir={ovl}/work{options} {ovl}/merged",
                    change,
                ),
            ),
            Step(
                "fsync-other",
                (f"{IO} -f -c 'pwrite -S 0x5a 0 4K' -c fsync {DIR}/other >/dev/null",),
                Barrier.FSYNC,
                needs="copy-up",
                promises=[file(disk("ovl/upper/big"), metadata=True)],
            ),
        ],
    )


def ovl_copy_up(seed: int = 0) -> Workload:
    """overlayfs copy-up (641089c1549d): a chmod copies a lower file up, then
    another file is fsync'd: the copied-up file must hold its data."""
    return _overlay("ovl-copy-up", ovl_copy_up.__doc__ or "", "", f"chmod 600 {DIR}/ovl/merged/big")


def ovl_metacopy(seed: int = 0) -> Workload:
    """Control: metadata-only copy-up (metacopy=on, fsync=auto: no fsync since
    6.12.80) of a chmod, then another file fsync'd: ext4 commits the parent's
    change with it, as overlayfs.rst says, so the upper copy stays right."""
    return _overlay(
        "ovl-metacopy",
        ovl_metacopy.__doc__ or "",
        ",metacopy=on,redirect_dir=on",
        f"chmod 600 {DIR}/ovl/merged/big",
    )


WORKLOADS: dict[str, str] = {
    "btrfs-782": "harness.workloads.known_bugs:btrfs_782",
    "btrfs-785": "harness.workloads.known_bugs:btrfs_785",
    "btrfs-784": "harness.workloads.known_bugs:btrfs_784",
    "btrfs-788": "harness.workloads.known_bugs:btrfs_788",
    "btrfs-302": "harness.workloads.known_bugs:btrfs_302",
    "btrfs-764": "harness.workloads.known_bugs:btrfs_764",
    "btrfs-779": "harness.workloads.known_bugs:btrfs_779",
    "ext4-737": "harness.workloads.known_bugs:ext4_737",
    "xfs-628": "harness.workloads.known_bugs:xfs_628",
    "ovl-copy-up": "harness.workloads.known_bugs:ovl_copy_up",
    "ovl-metacopy": "harness.workloads.known_bugs:ovl_metacopy",
}
