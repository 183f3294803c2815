"""The known-bug corpus as data: real kernel crash-consistency fixes, each with the
smallest edit that undoes its effect in Debian's linux-source-6.12 (6.12.117),
the fstests test that reproduces it, the workload (harness/workloads/known_bugs)
and what crashtest must say. Sources: ../shared/docs/known-bugs.md.

To add an entry: write its workload in harness/workloads/known_bugs.py (the
fstests syscall sequence, ending in the call the fix makes durable, promising
what fstests checks), register it there, then add a KnownBug here with the edit
(text found exactly once in the file, and what replaces it) and run
`crashtest corpus run --only ID --tree PATH`.
"""

from __future__ import annotations

from dataclasses import dataclass

from debian.debian_support import Version

from harness.model import SourceEdit


class Kind:
    REVERT = "revert"  # the fix undone: the edited kernel must be caught, stock clean
    PRESENT = "present"  # not fixed in 6.12.117: the stock kernel is the buggy one
    CONTROL = "control"  # must be clean on every kernel


@dataclass(frozen=True)
class KnownBug:
    id: str  # also the workload's registered name
    fs: str  # the filesystem whose code is edited
    kind: str  # a Kind
    fix: str  # upstream commit id
    title: str
    landed: str  # mainline release, and the 6.12.y that carries it
    fstests: str  # the fstests test that reproduces it
    backend: str  # the crashtest backend whose test filesystem runs the workload
    expected: str  # what crashtest says on the buggy kernel
    edits: tuple[SourceEdit, ...] = ()
    mount_options: str = ""  # keep background commits out of the window, as fstests
    note: str = ""
    # (series, edits) for trees where the code the edit undoes has moved
    variants: tuple[tuple[str, tuple[SourceEdit, ...]], ...] = ()
    fixed_in: str = ""  # a bug present in 6.12: the mainline series that has its fix

    def fixed_in_series(self, series: str) -> bool:
        """A tree of `series` has this bug's fix (a bug still present in 6.12 is
        fixed in newer trees: there its workload must come out clean)."""
        return bool(self.fixed_in and series) and Version(series) >= Version(self.fixed_in)

    def edits_for(self, series: str) -> tuple[SourceEdit, ...]:
        """The edit for a tree of kernel `series` (`7.2`): its variant where the
        code moved since 6.12, else the 6.12 one (which fits there as it is)."""
        return dict(self.variants).get(series, self.edits)

    @property
    def workload(self) -> str:
        return self.id

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "fs": self.fs,
            "kind": self.kind,
            "fix": self.fix,
            "title": self.title,
            "landed": self.landed,
            "fstests": self.fstests,
            "backend": self.backend,
            "expected": self.expected,
            "mount_options": self.mount_options,
            "note": self.note,
            "edits": [{"path": e.path, "old": e.old, "new": e.new} for e in self.edits],
            "variants": {
                series: [{"path": e.path, "old": e.old, "new": e.new} for e in edits]
                for series, edits in self.variants
            },
        }


TREE_LOG = "fs/btrfs/tree-log.c"
MARK = "/* crashtest known-bug corpus: fix {} undone */"

CORPUS: tuple[KnownBug, ...] = (
    KnownBug(
        "btrfs-782",
        "btrfs",
        Kind.REVERT,
        "bfe3d755ef7c",
        "btrfs: do not update last_log_commit when logging inode due to a new name",
        "6.18-rc5; 6.12.59",
        "generic/782",
        "btrfs",
        "fs-durability: kb lacks the new directory `dir` after the directory's fsync",
        (
            SourceEdit(
                TREE_LOG,
                "\tif (!ctx->logging_new_name && inode_only != LOG_INODE_EXISTS)\n"
                "\t\tinode->last_log_commit = inode->last_sub_trans;\n",
                f"\t{MARK.format('bfe3d755ef7c')}\n"
                "\tif (inode_only != LOG_INODE_EXISTS)\n"
                "\t\tinode->last_log_commit = inode->last_sub_trans;\n",
            ),
        ),
        "commit=300",
        variants=(
            (
                "7.2",
                (
                    SourceEdit(
                        TREE_LOG,
                        "\tif (!ctx->logging_new_name && log_mode != LOG_INODE_EXISTS)\n"
                        "\t\tinode->last_log_commit = inode->last_sub_trans;\n",
                        f"\t{MARK.format('bfe3d755ef7c')}\n"
                        "\tif (log_mode != LOG_INODE_EXISTS)\n"
                        "\t\tinode->last_log_commit = inode->last_sub_trans;\n",
                    ),
                ),
            ),
        ),
    ),
    KnownBug(
        "btrfs-785",
        "btrfs",
        Kind.REVERT,
        "5630f7557de6",
        "btrfs: do not skip logging new dentries when logging a new name",
        "6.19-rc1; 6.12.64",
        "generic/785",
        "btrfs",
        "fs-durability: kb/dir (or its file foo) missing after the parent's fsync",
        (
            SourceEdit(
                TREE_LOG,
                "\tint ret = 0;\n\n\tpath = btrfs_alloc_path();\n\tif (!path)\n"
                "\t\treturn -ENOMEM;\n\n\t/* Pairs with btrfs_add_delayed_iput below. */\n",
                "\tint ret = 0;\n\n"
                f"\t{MARK.format('5630f7557de6')}\n"
                "\tif (ctx->logging_new_name)\n\t\treturn 0;\n\n"
                "\tpath = btrfs_alloc_path();\n\tif (!path)\n"
                "\t\treturn -ENOMEM;\n\n\t/* Pairs with btrfs_add_delayed_iput below. */\n",
            ),
        ),
        "commit=300",
        variants=(
            (
                "7.2",
                (
                    SourceEdit(
                        TREE_LOG,
                        "\ttrace_btrfs_log_new_dir_dentries_enter(trans, start_inode);\n\n"
                        "\tpath = btrfs_alloc_path();\n",
                        "\ttrace_btrfs_log_new_dir_dentries_enter(trans, start_inode);\n\n"
                        f"\t{MARK.format('5630f7557de6')}\n"
                        "\tif (ctx->logging_new_name)\n\t\treturn 0;\n\n"
                        "\tpath = btrfs_alloc_path();\n",
                    ),
                ),
            ),
        ),
    ),
    KnownBug(
        "btrfs-784",
        "btrfs",
        Kind.REVERT,
        "266273eaf4d9",
        "btrfs: don't log conflicting inode if it's a dir moved in the current transaction",
        "6.19-rc1; 6.12.64",
        "generic/784",
        "btrfs",
        "fs-corruption: btrfs check finds a directory with 2 links after log replay",
        (
            SourceEdit(
                TREE_LOG,
                "\tif (inode->last_unlink_trans < trans->transid)\n\t\treturn true;\n\n"
                "\t/*\n\t * If this is a directory and its unlink_trans is not from a past\n",
                f"\t{MARK.format('266273eaf4d9')}\n\treturn true;\n\n"
                "\t/*\n\t * If this is a directory and its unlink_trans is not from a "
                "past\n",
            ),
        ),
        "commit=300",
    ),
    KnownBug(
        "btrfs-788",
        "btrfs",
        Kind.REVERT,
        "5254d4181add",
        "btrfs: fix zero size inode with non-zero size after log replay",
        "2026; 6.12.114",
        "generic/788",
        "btrfs",
        "fs-durability: the file truncated to 0 and fsync'd is back with its old 64 KiB",
        (
            SourceEdit(
                TREE_LOG,
                "\t\tASSERT(data_race(BTRFS_I(inode)->logged_trans) > 0);\n"
                "\t\tif (data_race(BTRFS_I(inode)->logged_trans) < trans->transid)\n"
                "\t\t\tgen = 0;\n",
                f"\t\t{MARK.format('5254d4181add')}\n\t\tgen = 0;\n",
            ),
        ),
        "commit=300",
        variants=(
            (
                "7.2",
                (
                    SourceEdit(
                        TREE_LOG,
                        "\t\tASSERT(data_race(inode->logged_trans) > 0);\n"
                        "\t\tif (data_race(inode->logged_trans) < trans->transid)\n"
                        "\t\t\tgen = 0;\n",
                        f"\t\t{MARK.format('5254d4181add')}\n\t\tgen = 0;\n",
                    ),
                ),
            ),
        ),
        note='the fix\'s core: generation 0 ("this inode exists") only for an inode not '
        "logged before in this transaction; its size helper is left as it is",
    ),
    KnownBug(
        "btrfs-302",
        "btrfs",
        Kind.REVERT,
        "eb96e221937a",
        "btrfs: fix unwritten extent buffer after snapshotting a new subvolume",
        "6.6; 6.5.10",
        "btrfs/302",
        "btrfs",
        "fs-corruption: the snapshot refers to a tree block never written (btrfs check, "
        "and reading the snapshot fails) in every state after the commit",
        (
            SourceEdit(
                "fs/btrfs/ctree.c",
                "\tif (buf_gen == trans->transid)\n\t\treturn true;\n\n\treturn false;\n}\n",
                f"\t{MARK.format('eb96e221937a')}\n\treturn false;\n}}\n",
            ),
        ),
        note="the docker btrfs driver's own pattern: a layer's subvolume made, filled and "
        "snapshotted for the next layer within one transaction",
    ),
    KnownBug(
        "ovl-copy-up",
        "overlayfs",
        Kind.REVERT,
        "641089c1549d",
        "ovl: fsync after copy-up",
        "4.9 (synthetic revert)",
        "none",
        "ext4-overlay2",
        "fs-durability: the copied-up upper file is empty and hides the lower file's data",
        (
            SourceEdit(
                "fs/overlayfs/copy_up.c",
                "\tif (!error && ovl_should_sync(ofs) && datasync)\n"
                "\t\terror = vfs_fsync(new_file, 0);\nout_fput:\n",
                f"\t{MARK.format('641089c1549d')}\nout_fput:\n",
            ),
        ),
        "commit=60",
        note="ext4 delayed allocation leaves the copied data unallocated while the "
        "journal commits the rename into the upper directory",
    ),
    KnownBug(
        "ext4-737",
        "ext4",
        Kind.REVERT,
        "91562895f803",
        "ext4: properly sync file size update after O_SYNC direct IO",
        "6.7; 6.1.64",
        "generic/737",
        "ext4-overlay2",
        "fs-durability: the file is back to size 0 after an O_SYNC direct-IO append returned",
        (
            SourceEdit(
                "fs/ext4/file.c",
                "\t\treturn size;\n\treturn ext4_handle_inode_extension(inode, pos, size, size);\n",
                f"\t\treturn size;\n\t{MARK.format('91562895f803')}\n\treturn size;\n",
            ),
            SourceEdit(
                "fs/ext4/file.c",
                "\t\tWARN_ON_ONCE(ret == -EIOCBQUEUED);\n"
                "\t\text4_inode_extension_cleanup(inode, ret < 0);\n",
                "\t\tWARN_ON_ONCE(ret == -EIOCBQUEUED);\n"
                "\t\tif (ret > 0)\n"
                "\t\t\tret = ext4_handle_inode_extension(inode, offset, ret, count);\n"
                "\t\text4_inode_extension_cleanup(inode, ret < 0);\n",
            ),
        ),
        "commit=60",
        note="the size update goes back after iomap's O_SYNC sync, as before the fix",
        variants=(
            (
                "7.2",
                (
                    SourceEdit(
                        "fs/ext4/file.c",
                        "\t\treturn 0;\n"
                        "\terror = ext4_handle_inode_extension(inode, pos, size, size);\n"
                        "\treturn error < 0 ? error : 0;\n",
                        f"\t\treturn 0;\n\t{MARK.format('91562895f803')}\n\treturn 0;\n",
                    ),
                    SourceEdit(
                        "fs/ext4/file.c",
                        "\t\tWARN_ON_ONCE(ret == -EIOCBQUEUED);\n"
                        "\t\text4_inode_extension_cleanup(inode, ret < 0);\n",
                        "\t\tWARN_ON_ONCE(ret == -EIOCBQUEUED);\n"
                        "\t\tif (ret > 0)\n"
                        "\t\t\tret = ext4_handle_inode_extension(inode, offset, ret, count);\n"
                        "\t\text4_inode_extension_cleanup(inode, ret < 0);\n",
                    ),
                ),
            ),
        ),
    ),
    KnownBug(
        "xfs-628",
        "xfs",
        Kind.REVERT,
        "5ffce3cc22a0",
        "xfs: force the log after remapping a synchronous-writes file",
        "5.10; 5.9.2",
        "generic/628",
        "xfs-overlay2",
        "fs-durability: the reflinked data is gone from the O_SYNC destination",
        (
            SourceEdit(
                "fs/xfs/xfs_file.c",
                "\tif (xfs_file_sync_writes(file_in) || xfs_file_sync_writes(file_out))\n"
                "\t\txfs_log_force_inode(dest);\n",
                f"\t{MARK.format('5ffce3cc22a0')}\n",
            ),
        ),
    ),
    KnownBug(
        "btrfs-764",
        "btrfs",
        Kind.PRESENT,
        "5e85262e542d",
        "btrfs: fix fsync of files with no hard links not persisting deletion",
        "6.16 (and 6.15.y); not in 6.12.117",
        "generic/764",
        "btrfs",
        "fs-durability: the file unlinked and then fsync'd through its descriptor is back",
        mount_options="commit=300",
        fixed_in="6.16",
        note="a discrepancy with ext4, xfs and f2fs rather than data loss; no fix is "
        "applied forward here",
    ),
    KnownBug(
        "btrfs-779",
        "btrfs",
        Kind.PRESENT,
        "953902e4fb4c",
        "btrfs: set inode flag BTRFS_INODE_COPY_EVERYTHING when logging new name",
        "6.18 (and 6.17.y); not in 6.12.117",
        "generic/779",
        "btrfs",
        "fs-durability: the renamed symlink has its old name after the directory's fsync",
        mount_options="commit=300",
        fixed_in="6.18",
    ),
    KnownBug(
        "ovl-metacopy",
        "overlayfs",
        Kind.CONTROL,
        "1f6ee9be92f8",
        "ovl: make fsync after metadata copy-up opt-in mount option",
        "2026; 6.12.80",
        "none",
        "ext4-overlay2",
        "clean: ext4 commits the metadata copy-up with the next fsync (overlayfs.rst)",
        mount_options="commit=60",
    ),
)


def by_id() -> dict[str, KnownBug]:
    return {b.id: b for b in CORPUS}
