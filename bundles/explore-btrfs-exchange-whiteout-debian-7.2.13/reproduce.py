#!/usr/bin/env python3
"""Crash-consistency reproducer written by crashtest explore.

btrfs;
promise: sync() returned: entry of B/C is directory or directory

The program:
    #0 mkdir(B/C)
    #1 sync()
    #2 rename(A, B/bar, whiteout)
    #3 rename(B/C, B/bar, exchange)
    #4 fsync(B/bar (fresh fd))

Run as root on a kernel with dm-log-writes (CONFIG_DM_LOG_WRITES) and the
btrfs tools installed. Exit 1: reproduced; 0: every promise held.
"""
import ctypes
import fcntl
import hashlib
import json
import mmap
import os
import stat
import struct
import subprocess
import sys
import tempfile

FS = "btrfs"
OVERLAY = False
MOUNT_OPTIONS = "commit=300"
MKFS = {"btrfs": ["mkfs.btrfs", "-q", "-f"], "ext4": ["mkfs.ext4", "-q", "-F"],
        "xfs": ["mkfs.xfs", "-q", "-f"]}[FS]
INITIAL = [["A", "d", 0, 0], ["A/foo", "f", 16384, 17], ["B", "d", 0, 0]]
OPS = json.loads(r"""[
 {
  "kind": "mkdir",
  "path": "B/C",
  "dest": "",
  "fd": -1,
  "flags": [],
  "offset": 0,
  "length": 0,
  "value": 0,
  "name": ""
 },
 {
  "kind": "sync",
  "path": "",
  "dest": "",
  "fd": -1,
  "flags": [],
  "offset": 0,
  "length": 0,
  "value": 0,
  "name": ""
 },
 {
  "kind": "rename",
  "path": "A",
  "dest": "B/bar",
  "fd": -1,
  "flags": [
   "whiteout"
  ],
  "offset": 0,
  "length": 0,
  "value": 0,
  "name": ""
 },
 {
  "kind": "rename",
  "path": "B/C",
  "dest": "B/bar",
  "fd": -1,
  "flags": [
   "exchange"
  ],
  "offset": 0,
  "length": 0,
  "value": 0,
  "name": ""
 },
 {
  "kind": "fsync",
  "path": "B/bar",
  "dest": "",
  "fd": -1,
  "flags": [],
  "offset": 0,
  "length": 0,
  "value": 0,
  "name": ""
 }
]""")
EXPECT = json.loads(r"""[
 {
  "op": 1,
  "call": "sync()",
  "fact": "entry",
  "path": "B/C",
  "allowed": [
   "d"
  ],
  "not_sha": []
 },
 {
  "op": 4,
  "call": "fsync(B/bar (fresh fd))",
  "fact": "entry",
  "path": "B/C",
  "allowed": [
   "d"
  ],
  "not_sha": []
 }
]""")
libc = ctypes.CDLL(None, use_errno=True)


def sh(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def mount(dev, mnt):
    sh("mount", *(["-o", MOUNT_OPTIONS] if MOUNT_OPTIONS else []), dev, mnt)
    if not OVERLAY:
        return mnt
    sh("mount", "-t", "overlay", "overlay", "-o",
       f"lowerdir={mnt}/lower,upperdir={mnt}/upper,workdir={mnt}/work", f"{mnt}/merged")
    return f"{mnt}/merged"


def umount(mnt):
    if OVERLAY:
        sh("umount", f"{mnt}/merged")
    sh("umount", mnt)


def populate(root):
    os.umask(0)
    for path, kind, size, byte in INITIAL:
        p = os.path.join(root, path)
        if kind == "d":
            os.mkdir(p, 0o755)
        else:
            with open(p, "wb") as f:
                f.write(bytes([byte]) * size)
            os.chmod(p, 0o644)


def run(root, lw):
    fds = {}

    def p(path):
        return os.path.join(root, path) if path else root

    for i, op in enumerate(OPS):
        k = op["kind"]
        try:
            if k == "open":
                flags = os.O_RDWR
                for f in op["flags"]:
                    flags |= {"creat": os.O_CREAT, "trunc": os.O_TRUNC, "append": os.O_APPEND,
                              "sync": os.O_SYNC, "direct": os.O_DIRECT}[f]
                fds[op["fd"]] = os.open(p(op["path"]), flags, 0o644)
            elif k == "opendir":
                fds[op["fd"]] = os.open(p(op["path"]), os.O_RDONLY | os.O_DIRECTORY)
            elif k == "close":
                os.close(fds.pop(op["fd"]))
            elif k == "write":
                buf = mmap.mmap(-1, max(op["length"], 4096))
                buf.write(bytes([op["value"]]) * op["length"])
                os.pwritev(fds[op["fd"]], [memoryview(buf)[: op["length"]]], op["offset"])
            elif k == "truncate":
                os.truncate(p(op["path"]), op["length"])
            elif k == "fallocate":
                mode = sum({"keep": 1, "punch": 3, "zero": 0x10}[f] for f in op["flags"])
                if libc.fallocate(fds[op["fd"]], mode, ctypes.c_long(op["offset"]),
                                  ctypes.c_long(op["length"])):
                    raise OSError(ctypes.get_errno(), "fallocate")
            elif k == "link":
                os.link(p(op["path"]), p(op["dest"]))
            elif k == "symlink":
                os.symlink(op["name"], p(op["dest"]))
            elif k == "unlink":
                os.unlink(p(op["path"]))
            elif k == "rename":
                flags = sum({"noreplace": 1, "exchange": 2, "whiteout": 4}[f] for f in op["flags"])
                old, new = p(op["path"]).encode(), p(op["dest"]).encode()
                if libc.renameat2(-100, old, -100, new, flags):
                    raise OSError(ctypes.get_errno(), "renameat2")
            elif k == "mkdir":
                os.mkdir(p(op["path"]), 0o755)
            elif k == "rmdir":
                os.rmdir(p(op["path"]))
            elif k == "setxattr":
                os.setxattr(p(op["path"]), op["name"], bytes([op["value"]]) * 8)
            elif k == "removexattr":
                os.removexattr(p(op["path"]), op["name"])
            elif k == "chmod":
                os.chmod(p(op["path"]), op["value"])
            elif k in ("reflink", "copy_range"):
                src = os.open(p(op["path"]), os.O_RDONLY)
                if k == "reflink":
                    fcntl.ioctl(fds[op["fd"]], 0x40049409, src)  # FICLONE
                else:
                    os.copy_file_range(src, fds[op["fd"]], op["length"], 0, op["offset"])
                os.close(src)
            elif k == "sync":
                os.sync()
            else:  # fsync, fdatasync, syncfs: a kept descriptor, or a fresh one
                fd = fds[op["fd"]] if op["fd"] >= 0 else os.open(p(op["path"]), os.O_RDONLY)
                {"fsync": os.fsync, "fdatasync": os.fdatasync,
                 "syncfs": lambda fd: libc.syncfs(fd)}[k](fd)
                if op["fd"] < 0:
                    os.close(fd)
        except OSError as e:
            print(f"#{i} {k}: {e}")
        sh("dmsetup", "message", lw, "0", "mark", f"op{i}")
    for fd in fds.values():
        os.close(fd)


def replay(log, dev, mark):
    """Every write logged before `mark`: what a power cut right then keeps
    when the disk loses all it was not told to flush."""
    with open(log, "rb") as f, open(dev, "r+b") as out:
        magic, _, count, ss = struct.unpack("<QQQI", f.read(28))
        assert magic == 0x6A736677736872, "not a dm-log-writes log"
        pos = ss
        for _ in range(count):
            f.seek(pos)
            head = f.read(ss)
            sector, nr, flags, dlen = struct.unpack_from("<QQQQ", head)
            if flags & 8 and head[32 : 32 + dlen].decode() == mark:
                return  # the writes logged before the mark: flushed before it returned
            if nr and not flags & 12:
                out.seek(sector * ss)
                out.write(f.read(nr * ss))
            elif nr and flags & 4:
                out.seek(sector * ss)
                out.write(bytes(nr * ss))
            pos += ss * (1 + (nr if not flags & 4 else 0))
    raise SystemExit(f"mark {mark} not in the log")


def fact(root, path, what):
    full = os.path.join(root, path)
    if not os.path.lexists(full):
        return None
    st = os.lstat(full)
    if what == "entry":  # "?": anything else (a whiteout is a character device)
        kinds = {stat.S_IFLNK: "l", stat.S_IFDIR: "d", stat.S_IFREG: "f"}
        return kinds.get(stat.S_IFMT(st.st_mode), "?")
    if what == "size":
        return st.st_size
    if what == "data":
        with open(full, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    if what == "mode":
        return st.st_mode & 0o7777
    if what == "target":
        return os.readlink(full)
    names = [x for x in sorted(os.listxattr(full)) if x.startswith("user.")]
    return [[x, os.getxattr(full, x).hex()] for x in names]


def main():
    work = tempfile.mkdtemp(prefix="crashtest-repro-")
    img, base, log, mnt = (os.path.join(work, n) for n in ("dev.img", "base.img", "log.img", "mnt"))
    os.mkdir(mnt)
    for path in (img, log):
        with open(path, "wb") as f:
            f.truncate(320 << 20)
    sh(*MKFS, img)
    sh("mount", "-o", "loop", img, mnt)
    os.umask(0)
    if OVERLAY:
        for d in ("lower", "upper", "work", "merged"):
            os.mkdir(f"{mnt}/{d}", 0o755)
    populate(f"{mnt}/lower" if OVERLAY else mnt)
    sh("umount", mnt)
    sh("cp", "--sparse=always", img, base)
    dev, logdev = sh("losetup", "-f", "--show", img), sh("losetup", "-f", "--show", log)
    lw = f"crashtest-repro-{os.getpid()}"
    table = f"0 {320 << 11} log-writes {dev} {logdev}"
    sh("dmsetup", "create", "--noudevsync", lw, "--table", table)
    sh("dmsetup", "mknodes", lw)  # /dev/mapper/ without udev too
    try:
        root = mount(f"/dev/mapper/{lw}", mnt)
        run(root, lw)
        umount(mnt)
    finally:
        sh("dmsetup", "remove", "--noudevsync", lw)
        sh("losetup", "-d", dev)
        sh("losetup", "-d", logdev)
    failed = 0
    for e in EXPECT:
        state = os.path.join(work, "state.img")
        sh("cp", "--sparse=always", base, state)
        replay(log, state, f"op{e['op']}")
        loopdev = sh("losetup", "-f", "--show", state)
        try:
            root = mount(loopdev, mnt)
            got = fact(root, e["path"], e["fact"])
            data = fact(root, e["path"], "data") if got == "f" else None
            umount(mnt)
        finally:
            sh("losetup", "-d", loopdev)
        ok = not e["allowed"] or got in e["allowed"]
        said = f"expected one of {e['allowed']!r}" if e["allowed"] else ""
        if e["not_sha"] and got == "f":  # the object a fsync took this name from?
            ok = ok and data not in e["not_sha"]
            said += " and not the file the fsync'd object was"
        failed += not ok
        print(("ok:   " if ok else "FAIL: ") + f"after #{e['op']} {e['call']}: {e['fact']} of "
              f"{e['path']} is {got!r}, {said.strip()}")
    print("reproduced" if failed else "not reproduced: every promise held")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"could not run: {e}", getattr(e, "stderr", "") or "", file=sys.stderr)
        sys.exit(2)
