"""Generated programs in the guest (crashtest explore): run one on a scratch
device under dm-log-writes, then rebuild each of its crash states from the log
and check it, all in this one booted guest.

Devices, all on a tmpfs: per filesystem a base image holding the initial tree
(made once per boot); the program runs on a dm-snapshot of it (its writes go to
a throwaway exception store) under dm-log-writes; each crash state is a fresh
snapshot of the base with the log's chosen writes replayed into it. A mark
after every operation ties the log to the program: the writes logged before
operation i's mark were flushed (or FUA) before it returned. Standard library
only: it runs on the guest's python3.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import random
import stat
import struct
import subprocess
import time
from dataclasses import dataclass

from crashtest_guest.check_state import syscall_result
from crashtest_guest.protocol import (
    DIR_MODE,
    FILE_MODE,
    INITIAL_TREE,
    CrashState,
    ExploreOutcome,
    ExploreRequest,
    Node,
    Op,
    OpKind,
)

WORK = "/run/crashtest-explore"
MNT = "/mnt/explore"
DEV_SECTORS = 320 * 2048  # 320 MiB: mkfs.xfs's smallest filesystem
MKFS = {
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
}
FSCK = {
    "btrfs": ["btrfs", "check", "--readonly"],
    "ext4": ["e2fsck", "-fn"],
    "xfs": ["xfs_repair", "-n"],
}
LOG_MAGIC = 0x6A736677736872
FLUSH, FUA, DISCARD, MARK = 1, 2, 4, 8
_SUPER = struct.Struct("<QQQI")
_ENTRY = struct.Struct("<QQQQ")

# device-mapper's ioctls: devices made and removed per crash state, a mark per
# operation, without a process for each
_DM_IOCTL = struct.Struct("<3IIIIiIIIQ128s129s7s")
_DM_TARGET = struct.Struct("<QQiI16s")  # struct dm_target_spec, its parameters after it
# _IOWR(0xfd, cmd, struct dm_ioctl): create, remove, suspend/resume, table load, message
_DM_DEV_CREATE, _DM_DEV_REMOVE, _DM_DEV_SUSPEND = 0xC138FD03, 0xC138FD04, 0xC138FD06
_DM_TABLE_LOAD, _DM_TARGET_MSG = 0xC138FD09, 0xC138FD0E
_OPEN_FLAGS = {
    "creat": os.O_CREAT,
    "trunc": os.O_TRUNC,
    "append": os.O_APPEND,
    "sync": os.O_SYNC,
    "direct": getattr(os, "O_DIRECT", 0),
}
_RENAME_FLAGS = {"noreplace": 1, "exchange": 2, "whiteout": 4}
_FALLOC_FLAGS = {"keep": 1, "punch": 2 | 1, "zero": 0x10}
_FICLONE = 0x40049409
_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


def sh(argv: list[str], timeout: float = 120) -> tuple[int, str]:
    p = subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False
    )
    return p.returncode, p.stdout.decode(errors="replace")


def must(argv: list[str]) -> str:
    rc, out = sh(argv)
    if rc != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {rc}: {out.strip()[-400:]}")
    return out


def dm_ioctl(request: int, name: str, data: bytes = b"", targets: int = 0) -> None:
    """One device-mapper ioctl, as dmsetup makes it: per crash state, dmsetup's
    and mount's start-up under TCG cost more than the check itself."""
    size = _DM_IOCTL.size + len(data)
    head = _DM_IOCTL.pack(
        4, 0, 0, size, _DM_IOCTL.size, targets, 0, 0, 0, 0, 0, name.encode(), b"", b""
    )
    buf = bytearray(head + data)
    fd = os.open("/dev/mapper/control", os.O_RDWR)
    try:
        fcntl.ioctl(fd, request, buf)
    finally:
        os.close(fd)


def dm_message(name: str, message: str) -> None:
    dm_ioctl(_DM_TARGET_MSG, name, struct.pack("<Q", 0) + message.encode() + b"\0")


def loop(path: str, size: int, read_only: bool = False) -> str:
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.truncate(size)
    return must(["losetup", "-f", "--show", *(["-r"] if read_only else []), path]).strip()


def dm_names() -> dict[str, str]:
    """device-mapper devices by name, as "major:minor" (sysfs: no udev here)."""
    found = {}
    for block in os.listdir("/sys/block"):
        if block.startswith("dm-"):
            with open(f"/sys/block/{block}/dm/name") as f, open(f"/sys/block/{block}/dev") as d:
                found[f.read().strip()] = d.read().strip()
    return found


def dm_create(name: str, table: str) -> str:
    """Create a one-target device and its node, outside /dev/mapper: with no udev
    running, nothing makes a node there."""
    start, length, kind, params = table.split(" ", 3)
    spec = params.encode() + b"\0"
    spec += bytes(-(_DM_TARGET.size + len(spec)) % 8)
    target = _DM_TARGET.pack(int(start), int(length), 0, _DM_TARGET.size + len(spec), kind.encode())
    try:
        dm_ioctl(_DM_DEV_CREATE, name)
        try:
            dm_ioctl(_DM_TABLE_LOAD, name, target + spec, targets=1)
            dm_ioctl(_DM_DEV_SUSPEND, name)  # no suspend flag: resume, the loaded table live
        except OSError:
            dm_ioctl(_DM_DEV_REMOVE, name)
            raise
    except OSError as e:
        raise RuntimeError(f"device-mapper {name} ({table}): {e.strerror}") from e
    node = f"/dev/crashtest-{name}"
    if os.path.exists(node):
        os.unlink(node)
    major, minor = dm_names()[name].split(":")
    os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(int(major), int(minor)))
    return node


def dm_remove(name: str) -> None:
    if name in dm_names():
        for attempt in range(50):  # a device an umount has just let go of may still be busy
            try:
                dm_ioctl(_DM_DEV_REMOVE, name)
                break
            except OSError as e:
                if e.errno != errno.EBUSY or attempt == 49:
                    raise RuntimeError(f"device-mapper {name}: remove: {e.strerror}") from e
                time.sleep(0.1)
    if os.path.exists(f"/dev/crashtest-{name}"):
        os.unlink(f"/dev/crashtest-{name}")


def umount_all(mnt: str) -> None:
    while os.path.ismount(mnt):
        if _libc.umount2(mnt.encode(), 0) != 0 and os.path.ismount(mnt):
            rc, why = syscall_result(_libc.umount2(mnt.encode(), _MNT_DETACH))
            if rc:
                raise RuntimeError(f"umount {mnt}: {why}")


@dataclass
class Devices:
    """The loop devices of one filesystem's base and of the scratch stores."""

    base: str
    cow: str
    log: str
    log_path: str


_devices: dict[str, Devices] = {}


def _populate(root: str) -> None:
    for path, kind, size, byte in INITIAL_TREE:
        full = os.path.join(root, path)
        if kind == "d":
            os.mkdir(full, DIR_MODE)
        else:
            with open(full, "wb") as f:
                f.write(bytes([byte]) * size)
            os.chmod(full, FILE_MODE)


def devices(fs: str, overlay: bool, options: str) -> Devices:
    """The base image of `fs` (made at the first call), and the scratch stores."""
    key = f"{fs}-overlay" if overlay else fs
    if key in _devices:
        return _devices[key]
    os.makedirs(WORK, exist_ok=True)
    if not os.path.ismount(WORK):
        must(["mount", "-t", "tmpfs", "-o", "size=90%", "tmpfs", WORK])
    base_img = f"{WORK}/base-{key}.img"
    with open(base_img, "wb") as f:
        f.truncate(DEV_SECTORS * 512)
    must([*MKFS[fs], base_img])
    os.makedirs(MNT, exist_ok=True)
    must(["mount", "-o", ",".join(filter(None, ["loop", options])), base_img, MNT])
    os.umask(0)
    if overlay:
        for d in ("lower", "upper", "work", "merged"):
            os.mkdir(f"{MNT}/{d}", DIR_MODE)
        _populate(f"{MNT}/lower")
    else:
        _populate(MNT)
    os.sync()
    umount_all(MNT)
    devs = Devices(
        loop(base_img, 0, read_only=True),
        loop(f"{WORK}/cow-{key}.img", 1 << 30),
        loop(f"{WORK}/log-{key}.img", 1 << 30),
        f"{WORK}/log-{key}.img",
    )
    _devices[key] = devs
    return devs


def snapshot(name: str, devs: Devices) -> str:
    return dm_create(name, f"0 {DEV_SECTORS} snapshot {devs.base} {devs.cow} N 8")


def mount(dev: str, req: ExploreRequest) -> tuple[str, str]:
    """Mount the filesystem (and the overlay over it): the program's root, or
    ("", why) when it does not mount (the kernel's own words are in its log)."""
    rc, why = syscall_result(
        _libc.mount(dev.encode(), MNT.encode(), req.fs.encode(), 0, req.mount_options.encode())
    )
    if rc:
        return "", f"mount -t {req.fs} {dev} {MNT}: {why}"
    if not req.overlay:
        return MNT, ""
    merged = f"{MNT}/merged"
    layers = f"lowerdir={MNT}/lower,upperdir={MNT}/upper,workdir={MNT}/work"
    rc, why = syscall_result(
        _libc.mount(b"overlay", merged.encode(), b"overlay", 0, layers.encode())
    )
    if rc:
        return "", f"mount -t overlay overlay {merged}: {why}"
    return merged, ""


def unmount(req: ExploreRequest) -> None:
    if req.overlay:
        umount_all(f"{MNT}/merged")
    umount_all(MNT)


class Runner:
    """Runs a program's operations with real descriptors, a mark after each."""

    def __init__(self, root: str, mark: str) -> None:
        self.root = root
        self.mark = mark
        self.fds: dict[int, int] = {}

    def p(self, path: str) -> str:
        return os.path.join(self.root, path) if path else self.root

    def fd(self, n: int) -> int:
        """Descriptor `n`; one whose open failed (overlayfs refuses some renames
        the model allows, so a later open may fail) is EBADF, as for a program."""
        if n not in self.fds:
            raise OSError(errno.EBADF, f"fd{n} is not open")
        return self.fds[n]

    def run(self, ops: tuple[Op, ...]) -> list[int]:
        errnos = []
        for i, op in enumerate(ops):
            try:
                self.one(op)
                errnos.append(0)
            except OSError as e:
                errnos.append(e.errno or errno.EIO)
            dm_message(self.mark, f"mark op{i}")
        for fd in self.fds.values():
            os.close(fd)
        return errnos

    def write(self, fd: int, op: Op) -> None:
        data = bytes([op.value]) * op.length
        if "direct" in op.flags:  # O_DIRECT wants an aligned buffer: mmap's is
            buf = mmap.mmap(-1, max(op.length, 4096))
            buf.write(data)
            os.pwritev(fd, [memoryview(buf)[: op.length]], op.offset)
            buf.close()
        else:
            os.pwrite(fd, data, op.offset)

    def persist(self, op: Op, how: str) -> None:
        fd = self.fd(op.fd) if op.fd >= 0 else os.open(self.p(op.path), os.O_RDONLY)
        try:
            if how == "fsync":
                os.fsync(fd)
            elif how == "fdatasync":
                os.fdatasync(fd)
            elif _libc.syncfs(fd) != 0:
                raise OSError(ctypes.get_errno(), "syncfs")
        finally:
            if op.fd < 0:
                os.close(fd)

    def one(self, op: Op) -> None:
        k = op.kind
        if k is OpKind.OPEN:
            flags = os.O_RDWR
            for f in op.flags:
                flags |= _OPEN_FLAGS[f]
            self.fds[op.fd] = os.open(self.p(op.path), flags, FILE_MODE)
        elif k is OpKind.OPENDIR:
            self.fds[op.fd] = os.open(self.p(op.path), os.O_RDONLY | os.O_DIRECTORY)
        elif k is OpKind.CLOSE:
            fd = self.fd(op.fd)
            del self.fds[op.fd]
            os.close(fd)
        elif k is OpKind.WRITE:
            self.write(self.fd(op.fd), op)
        elif k is OpKind.TRUNCATE:
            os.truncate(self.p(op.path), op.length)
        elif k is OpKind.FALLOCATE:
            mode = 0
            for f in op.flags:
                mode |= _FALLOC_FLAGS[f]
            fd = self.fd(op.fd)
            if _libc.fallocate(fd, mode, ctypes.c_long(op.offset), ctypes.c_long(op.length)):
                raise OSError(ctypes.get_errno(), "fallocate")
        elif k is OpKind.LINK:
            os.link(self.p(op.path), self.p(op.dest))
        elif k is OpKind.SYMLINK:
            os.symlink(op.name, self.p(op.dest))
        elif k is OpKind.UNLINK:
            os.unlink(self.p(op.path))
        elif k is OpKind.RENAME:
            flags = 0
            for f in op.flags:
                flags |= _RENAME_FLAGS[f]
            if not flags:
                os.rename(self.p(op.path), self.p(op.dest))
            elif _libc.renameat2(
                -100, self.p(op.path).encode(), -100, self.p(op.dest).encode(), flags
            ):
                raise OSError(ctypes.get_errno(), "renameat2")
        elif k is OpKind.MKDIR:
            os.mkdir(self.p(op.path), DIR_MODE)
        elif k is OpKind.RMDIR:
            os.rmdir(self.p(op.path))
        elif k is OpKind.SETXATTR:
            os.setxattr(self.p(op.path), op.name, bytes([op.value]) * 8)
        elif k is OpKind.REMOVEXATTR:
            os.removexattr(self.p(op.path), op.name)
        elif k is OpKind.CHMOD:
            os.chmod(self.p(op.path), op.value)
        elif k in (OpKind.REFLINK, OpKind.COPY_RANGE):
            src = os.open(self.p(op.path), os.O_RDONLY)
            try:
                if k is OpKind.REFLINK:
                    fcntl.ioctl(self.fd(op.fd), _FICLONE, src)
                else:
                    os.copy_file_range(src, self.fd(op.fd), op.length, 0, op.offset)
            finally:
                os.close(src)
        elif k in (OpKind.FSYNC, OpKind.FDATASYNC, OpKind.SYNCFS):
            self.persist(op, k.value)
        elif k is OpKind.SYNC:
            os.sync()


@dataclass(frozen=True)
class Entry:
    sector: int
    nr: int
    flags: int
    data: bytes
    mark: str


def read_log(path: str) -> tuple[int, list[Entry]]:
    with open(path, "rb") as f:
        raw = f.read(_SUPER.size)
        magic, _version, count, sectorsize = _SUPER.unpack(raw)
        if magic != LOG_MAGIC:
            raise RuntimeError("the write log has no dm-log-writes superblock")
        entries = []
        pos = sectorsize
        for _ in range(count):
            f.seek(pos)
            head = f.read(sectorsize)
            sector, nr, flags, data_len = _ENTRY.unpack_from(head)
            mark = ""
            data = b""
            if flags & MARK:
                mark = head[_ENTRY.size : _ENTRY.size + data_len].decode(errors="replace")
            elif nr and not flags & DISCARD:
                data = f.read(nr * sectorsize)
            entries.append(Entry(sector, nr, flags, data, mark))
            pos += sectorsize * (1 + (nr if not flags & DISCARD else 0))
    return sectorsize, entries


@dataclass(frozen=True)
class Point:
    id: str
    entries: int
    durable_through: int
    issued_through: int
    dropped: tuple[int, ...] = ()


def program_log(entries: list[Entry]) -> list[Entry]:
    """The log up to the program's end: its last mark, and the writes the
    unmount's flush would have made durable (a crash may keep any of them)."""
    last = max((i for i, e in enumerate(entries) if e.mark.startswith("op")), default=-1)
    end = last + 1
    while end < len(entries) and not entries[end].flags & (FLUSH | MARK):
        end += 1
    return entries[:end]


def crash_points(entries: list[Entry], ops: int, lost: int, seed: int) -> list[Point]:
    """The crash states of a program's log: after each flush and each mark (the
    latest of any run that holds the same writes), and `lost` random subsets of
    each epoch's writes (a volatile cache losing some of them)."""
    marks = [i for i, e in enumerate(entries) if e.mark.startswith("op")]

    def op_at(i: int) -> int:
        return int(entries[i].mark[2:])

    def durable(upto: int) -> int:
        return max((op_at(m) for m in marks if m < upto), default=-1)

    def issued(upto: int) -> int:
        return min((op_at(m) for m in marks if m >= upto), default=ops - 1)

    points: list[Point] = []
    last_writes = -1
    writes = 0
    for i, e in enumerate(entries):
        writes += 1 if e.nr else 0
        if not (e.flags & (FLUSH | FUA) or e.mark):
            continue
        upto = i + 1
        if points and writes == last_writes:
            points[-1] = Point(points[-1].id, upto, durable(upto), issued(upto))
        else:
            points.append(Point(f"s{len(points)}", upto, durable(upto), issued(upto)))
        last_writes = writes
    if writes != last_writes:  # the tail: written, never flushed, all kept
        end = len(entries)
        points.append(Point(f"s{len(points)}", end, durable(end), issued(end)))
    rng = random.Random(seed)
    start = 0
    for i in [*(i for i, e in enumerate(entries) if e.flags & FLUSH), len(entries)]:
        epoch = [j for j in range(start, i) if entries[j].nr and not entries[j].flags & FUA]
        start = i + 1
        if len(epoch) < 2:
            continue
        seen: set[tuple[int, ...]] = set()
        for n in range(lost):
            drop = tuple(sorted(rng.sample(epoch, rng.randrange(1, len(epoch)))))
            if drop not in seen:
                seen.add(drop)
                points.append(Point(f"l{i}.{n}", i, durable(i), issued(i), drop))
    return points


def replay(dev: str, sectorsize: int, entries: list[Entry], point: Point) -> None:
    dropped = set(point.dropped)
    fd = os.open(dev, os.O_RDWR)
    try:
        for j, e in enumerate(entries[: point.entries]):
            if j in dropped or not e.nr:
                continue
            if e.flags & DISCARD:
                os.pwrite(fd, bytes(e.nr * sectorsize), e.sector * sectorsize)
            elif e.data:
                os.pwrite(fd, e.data, e.sector * sectorsize)
        os.fsync(fd)
    finally:
        os.close(fd)


def observe(root: str) -> tuple[Node, ...]:
    nodes = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel == "lost+found":  # ext4's, not the program's
                continue
            try:
                st = os.lstat(full)
            except OSError:
                continue
            kind = "?"
            size, digest, target = st.st_size, "", ""
            if os.path.islink(full):
                kind, target = "l", os.readlink(full)
            elif os.path.isdir(full):
                kind, size = "d", 0
            elif os.path.isfile(full):
                kind = "f"
                try:
                    with open(full, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                except OSError as e:
                    digest = f"unreadable: {e.strerror}"
            xattrs = []
            if kind in ("f", "d"):
                try:
                    for x in sorted(os.listxattr(full, follow_symlinks=False)):
                        if x.startswith("user."):
                            xattrs.append((x, os.getxattr(full, x).hex()))
                except OSError:
                    pass
            nodes.append(
                Node(rel, kind, size, digest, st.st_mode & 0o7777, target, tuple(xattrs), st.st_ino)
            )
    return tuple(nodes)


class Console:
    """New kernel log records since the last read (the guest's own /dev/kmsg)."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def read(self) -> str:
        lines = []
        while True:
            try:
                rec = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except OSError:  # a record overwritten before it was read
                continue
            text = rec.partition(";")[2]
            lines.append(text.split("\n", 1)[0])
        return "\n".join(lines)

    def close(self) -> None:
        os.close(self.fd)


def check_point(
    req: ExploreRequest, devs: Devices, sectorsize: int, entries: list[Entry], point: Point
) -> CrashState:
    dev = snapshot("ex-state", devs)
    console = Console()
    try:
        replay(dev, sectorsize, entries, point)
        if req.damage:  # ext4's superblock at 1 KiB, xfs's at 0, btrfs's at 64 KiB
            with open(dev, "r+b") as f:
                f.write(bytes(128 << 10))
        root, out = mount(dev, req)
        tree: tuple[Node, ...] = ()
        if root:
            tree = observe(root)
            unmount(req)
        rc, fsck_out = sh([*FSCK[req.fs], dev]) if req.fsck else (0, "")
        return CrashState(
            point.id,
            point.entries,
            point.durable_through,
            point.issued_through,
            point.dropped,
            bool(root),
            out.strip()[-2000:],
            rc,
            fsck_out.strip()[-4000:] if rc else "",
            console.read(),
            tree,
        )
    finally:
        console.close()
        unmount(req)
        dm_remove("ex-state")


def cleanup() -> None:
    umount_all(f"{MNT}/merged")
    umount_all(MNT)
    for name in ("ex-lw", "ex-work", "ex-state"):
        dm_remove(name)


def run(arg: dict[str, object]) -> dict[str, object]:
    """One program on one filesystem: its errnos and its checked crash states."""
    req = ExploreRequest.from_json(arg)
    started = time.monotonic()
    try:
        cleanup()
        devs = devices(req.fs, req.overlay, req.mount_options)
        snapshot("ex-work", devs)
        with open(devs.log_path, "r+b") as f:  # no stale superblock from the last program
            f.write(bytes(4096))
        # by number: the kernel finds a /dev/mapper node made by hand only through udev
        work = dm_names()["ex-work"]
        dev = dm_create("ex-lw", f"0 {DEV_SECTORS} log-writes {work} {devs.log}")
        root, out = mount(dev, req)
        if not root:
            raise RuntimeError(f"the fresh filesystem does not mount: {out.strip()}")
        os.umask(0)
        errnos = Runner(root, "ex-lw").run(req.ops)
        unmount(req)
        dm_remove("ex-lw")
        dm_remove("ex-work")
        ran = time.monotonic()
        sectorsize, logged = read_log(devs.log_path)
        entries = program_log(logged)
        points = crash_points(entries, len(req.ops), req.lost, req.seed)
        states = tuple(check_point(req, devs, sectorsize, entries, p) for p in points)
        return ExploreOutcome(
            req.fs,
            req.overlay,
            tuple(errnos),
            states,
            len(entries),
            ran - started,
            time.monotonic() - ran,
        ).to_json()
    except Exception as e:  # the host decides: a harness error, never a finding
        cleanup()
        why = f"{type(e).__name__}: {e}"
        return ExploreOutcome(req.fs, req.overlay, (), (), error=why).to_json()
