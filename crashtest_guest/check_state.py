"""Check one crash state inside the checker guest, in one round trip.

Called in the agent's process (op "call", function `check`) or as a script (JSON
on stdin/stdout): a protocol.CheckRequest in, a protocol.CheckOutcome out. Mount
runs the guest kernel's own recovery and a read-only remount flushes it; docker's
store, the promises and the workload's offline invariants are checked on the
read-only mount (dockerd never runs here, so nothing rewrites the evidence) with
fsck and scrub beside them where the tools allow; then unmount, and fsck after it
where the tool needs an unmounted disk.
"""

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, NamedTuple, TypeVar

from crashtest_guest.docker_store import HEX64, DockerStore, Finding
from crashtest_guest.protocol import (
    CheckOutcome,
    CheckRecord,
    CheckRequest,
    Derived,
    DeriveRequest,
    Fault,
    Observed,
    PromiseCheck,
    PromiseKind,
    RecordKind,
    ViolationClass,
)

ROOT = "/var/lib/docker"
LOST = ViolationClass.DOCKER_LOST
T = TypeVar("T")
# What docker leaves at its root: a disk with none of these never held docker.
DOCKER_TRACES = ("image", "containers", "overlay2", "btrfs", "volumes", "buildkit", "network")


def sh(cmd: str, timeout: float = 300) -> tuple[int, str]:
    try:
        p = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, timeout=timeout)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        return p.returncode, out[-4000:]
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f}s"


_sh = sh  # check() wraps it to time each command


class Background:
    """A command running while the check goes on; `wait` gives what `sh` would."""

    def __init__(self, cmd: str, timeout: float = 300) -> None:
        self.started = time.monotonic()
        self.timeout = timeout
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.seconds = 0.0

    def wait(self) -> tuple[int, str]:
        left = max(1.0, self.timeout - (time.monotonic() - self.started))
        try:
            out, _ = self.proc.communicate(timeout=left)
            rc = self.proc.returncode
            text = out.decode("utf-8", "replace")[-4000:]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            rc, text = 124, f"timed out after {self.timeout:.0f}s"
        self.seconds = time.monotonic() - self.started
        return rc, text


# Remount, unmount and cache drop are system calls, not programs: under TCG each
# program started costs tens of milliseconds, per state.
_libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT = 1, 32
BLKFLSBUF = 0x1261


def syscall_result(rc: int) -> tuple[int, str]:
    if rc == 0:
        return 0, ""
    err = ctypes.get_errno()
    return 1, f"{errno.errorcode.get(err, err)}: {os.strerror(err)}"


def remount_ro(target: str) -> tuple[int, str]:
    return syscall_result(_libc.mount(None, target.encode(), None, MS_REMOUNT | MS_RDONLY, None))


def umount(target: str) -> tuple[int, str]:
    return syscall_result(_libc.umount2(target.encode(), 0))


def drop_cache(dev: str) -> tuple[int, str]:
    try:
        fd = os.open(dev, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, BLKFLSBUF, 0)
        finally:
            os.close(fd)
        return 0, ""
    except OSError as e:
        return 1, str(e)


def sha256(path: str) -> str:
    # O_NOATIME: reading on a live guest must not write (a recording logs every write).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOATIME)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def listing(path: str) -> list[str]:
    return sorted(os.listdir(path))


def content(path: str) -> str:
    """What a file promise compares: a regular file's sha256; a directory's is the
    sha256 of its sorted entry names, one per line (a directory holds its names)."""
    if os.path.isdir(path) and not os.path.islink(path):
        return hashlib.sha256("".join(n + "\n" for n in listing(path)).encode()).hexdigest()
    return sha256(path)


def file_meta(path: str) -> str:
    """ "MODE UID GID" (permission bits in octal): what a metadata promise compares."""
    st = os.lstat(path)
    return f"{stat.S_IMODE(st.st_mode):o} {st.st_uid} {st.st_gid}"


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class Store:
    """docker's on-disk store, read offline."""

    def __init__(self, driver: str) -> None:
        self.driver = driver
        self.img = os.path.join(ROOT, "image", driver)

    def image_id(self, ref: str) -> str | None:
        with open(os.path.join(self.img, "repositories.json")) as f:
            repos = json.load(f)["Repositories"]
        name = ref.rsplit(":", 1)[0]
        found = repos.get(name, {}).get(ref)
        return str(found) if found is not None else None

    def layers(self, image_id: str) -> list[str]:
        """Driver directories of the image's layers, bottom first; raises on damage."""
        digest = image_id.split(":", 1)[1]
        path = os.path.join(self.img, "imagedb/content/sha256", digest)
        with open(path, "rb") as f:
            raw = f.read()
        if hashlib.sha256(raw).hexdigest() != digest:
            raise ValueError(f"image config {path} does not hash to its name")
        diff_ids = json.loads(raw)["rootfs"]["diff_ids"]
        chain, dirs = None, []
        for diff in diff_ids:
            chain = (
                diff
                if chain is None
                else "sha256:" + hashlib.sha256((chain + " " + diff).encode()).hexdigest()
            )
            ldir = os.path.join(self.img, "layerdb/sha256", chain.split(":", 1)[1])
            if read(os.path.join(ldir, "diff")) != diff:
                raise ValueError(f"layer {ldir}: diff does not match {diff}")
            cache_id = read(os.path.join(ldir, "cache-id"))
            dirs.append(self.layer_dir(cache_id))
        return dirs

    def layer_dir(self, cache_id: str) -> str:
        if self.driver == "btrfs":
            d = os.path.join(ROOT, "btrfs/subvolumes", cache_id)
        else:
            d = os.path.join(ROOT, "overlay2", cache_id, "diff")
        if not os.path.isdir(d):
            raise ValueError(f"layer directory {d} is missing")
        return d

    def lookup(self, dirs: list[str], path: str) -> str | None:
        """The file a container would see at `path`, or None if absent/deleted."""
        rel = path.lstrip("/")
        if self.driver == "btrfs":  # each layer is a full snapshot
            p = os.path.join(dirs[-1], rel)
            return p if os.path.lexists(p) else None
        for d in reversed(dirs):
            p = os.path.join(d, rel)
            if os.path.lexists(p):
                st = os.lstat(p)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    return None  # overlay whiteout
                return p
            parent = os.path.dirname(p)
            if os.path.lexists(os.path.join(parent, ".wh..wh..opq")):
                return None
        return None

    def file_path(self, target: str) -> str | None:
        """The file on the test filesystem behind a file promise's target, as its
        reader sees it (a container: its writable layer over its image's layers);
        None when absent or deleted. KeyError when its container is gone."""
        if target.startswith("disk:"):
            p = os.path.join(ROOT, target[len("disk:") :].lstrip("/"))
            return p if os.path.lexists(p) else None
        where, name, path = target.split(":", 2)
        if where == "container":
            dirs = self.container_view(name)
            if dirs is None:
                raise KeyError(name)
            return self.lookup(dirs, path)
        p = os.path.join(ROOT, "volumes", name, "_data", path.lstrip("/"))
        return p if os.path.lexists(p) else None

    def visible_files(self, dirs: list[str]) -> dict[str, str]:
        """Every regular file a container of the image sees: path -> file in a layer."""
        if self.driver == "btrfs":  # each layer is a full snapshot
            dirs = dirs[-1:]
        visible: dict[str, str] = {}
        seen_dirs: set[str] = set()

        def drop_below(rel: str) -> None:
            for k in [k for k in visible if k.startswith(rel + "/")]:
                del visible[k]

        for d in dirs:
            for top, subdirs, names in os.walk(d):
                rel_top = "" if top == d else "/" + os.path.relpath(top, d)
                if os.path.lexists(os.path.join(top, ".wh..wh..opq")):
                    drop_below(rel_top)
                for n in subdirs + names:
                    rel, full = rel_top + "/" + n, os.path.join(top, n)
                    st = os.lstat(full)
                    if stat.S_ISDIR(st.st_mode):
                        seen_dirs.add(rel)
                        continue
                    if rel in seen_dirs:  # a file or whiteout hides a directory below
                        drop_below(rel)
                        seen_dirs.discard(rel)
                    visible.pop(rel, None)  # whiteout, or a newer copy
                    if stat.S_ISREG(st.st_mode) and n != ".wh..wh..opq":
                        visible[rel] = full
        return visible

    def _container(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """The id and config of the container named `name`, if any."""
        cdir = os.path.join(ROOT, "containers")
        for cid in sorted(os.listdir(cdir)):
            try:
                with open(os.path.join(cdir, cid, "config.v2.json")) as f:
                    config = json.load(f)
            except (OSError, ValueError):
                continue
            if config.get("Name") == "/" + name:
                return cid, config
        return None

    def _layer_of(self, name: str, cid: str) -> str:
        """The writable layer of container `cid`; ValueError when it cannot be found."""
        path = os.path.join(self.img, "layerdb/mounts", cid, "mount-id")
        try:
            mount = read(path)
        except OSError as e:
            raise ValueError(f"container {name}: {path} is unreadable ({e.strerror})") from e
        if not HEX64.match(mount):
            raise ValueError(f"container {name}: {path} holds {mount!r}, not a layer id")
        return self.layer_dir(mount)

    def container_dir(self, name: str) -> str | None:
        """The writable layer of the container named `name`; None when no container
        has that name; ValueError when one has it but its layer cannot be found."""
        found = self._container(name)
        return None if found is None else self._layer_of(name, found[0])

    def container_view(self, name: str) -> list[str] | None:
        """The layer directories a container sees, bottom first: its image's layers
        and its writable layer (under btrfs, the writable snapshot alone)."""
        found = self._container(name)
        if found is None:
            return None
        upper = self._layer_of(name, found[0])
        if self.driver == "btrfs":
            return [upper]
        image = str(found[1].get("Image", ""))
        return [*(self.layers(image) if image else []), upper]


class Kept(NamedTuple):
    """A promise's verdict: `cls` None when it held; `fault` None for the class's
    usual one."""

    cls: ViolationClass | None
    evidence: str
    fault: Fault | None = None


def _container_lost(name: str, promises: tuple[PromiseCheck, ...], why: str) -> Kept:
    """A container (or its writable layer) is not there: the filesystem's fault when
    a sync had made the container durable (a container promise is in force),
    docker's when only a file in it was fsync'd: docker writes a container's
    metadata without fsync, so the file is durable and docker cannot find it."""
    if any(q.kind == PromiseKind.CONTAINER and q.target == name for q in promises):
        return Kept(LOST, why, Fault.FILESYSTEM)
    return Kept(
        LOST,
        why + " (nothing had synced the container; docker writes its metadata without fsync)",
        Fault.DOCKER,
    )


def _back(present: object, target: str) -> Kept:
    """An absent-* promise: what was removed must stay removed."""
    if present:
        return Kept(ViolationClass.FS_DURABILITY, f"{target} is back", Fault.FILESYSTEM)
    return Kept(None, "still gone")


def _check_image(store: Store, p: PromiseCheck) -> Kept:
    image_id = store.image_id(p.target)
    if image_id is None:
        return Kept(LOST, f"repositories.json has no {p.target}", Fault.FILESYSTEM)
    if p.image_id and image_id != p.image_id:
        return Kept(
            ViolationClass.FS_DURABILITY,
            f"{p.target} names {image_id}, not {p.image_id}",
            Fault.FILESYSTEM,
        )
    dirs = store.layers(image_id)
    bad = []
    for line in p.manifest.splitlines():
        want, path = line.split("  ", 1)
        f = store.lookup(dirs, path)
        got = sha256(f) if f and os.path.isfile(f) else "(missing)"
        if got != want:
            bad.append(f"{path}: want {want[:16]} got {got[:16]}")
    if bad:
        return Kept(ViolationClass.DOCKER_CORRUPTION, "\n".join(bad), Fault.FILESYSTEM)
    return Kept(None, f"image {p.target}: {len(dirs)} layers intact")


def _check_file(store: Store, p: PromiseCheck, promises: tuple[PromiseCheck, ...]) -> Kept:
    target = p.target
    name = target.split(":", 2)[1] if target.startswith("container:") else ""
    try:
        f = store.file_path(target)
    except KeyError:
        return _container_lost(name, promises, f"no container named {name}")
    except ValueError as e:
        return _container_lost(name, promises, str(e))
    if p.kind == PromiseKind.ABSENT_FILE:
        return _back(f, f or target)
    try:
        got = content(f) if f and (os.path.isfile(f) or os.path.isdir(f)) else "(missing)"
    except OSError as e:  # a recovered tree that cannot be read broke the promise
        got = f"(unreadable: {e})"
    if got != p.sha256:
        names = ""
        if f and os.path.isdir(f):
            try:
                names = f"; it holds {', '.join(listing(f)) or 'nothing'}"
            except OSError as e:
                names = f"; unreadable: {e}"
        return Kept(
            ViolationClass.FS_DURABILITY,
            f"{f or target}: want {p.sha256} got {got}{names}",
            Fault.FILESYSTEM,
        )
    if p.meta and f:
        meta = file_meta(f)
        if meta != p.meta:
            return Kept(
                ViolationClass.FS_DURABILITY,
                f"{f}: mode/owner want {p.meta} got {meta}",
                Fault.FILESYSTEM,
            )
    return Kept(None, f"{f} intact")


def check_promise(store: Store, p: PromiseCheck, promises: tuple[PromiseCheck, ...]) -> Kept:
    if p.kind == PromiseKind.IMAGE:
        return _check_image(store, p)
    if p.kind == PromiseKind.CONTAINER:
        try:
            found = store.container_dir(p.target)
        except ValueError as e:
            return _container_lost(p.target, promises, str(e))
        if found:
            return Kept(None, "found")
        return _container_lost(p.target, promises, f"no container named {p.target}")
    if p.kind in (PromiseKind.FILE, PromiseKind.ABSENT_FILE):
        return _check_file(store, p, promises)
    try:
        if p.kind == PromiseKind.ABSENT_IMAGE:
            present: object = store.image_id(p.target)
        else:
            present = store.container_dir(p.target)
    except ValueError:
        present = p.target  # its config is there: it is back, if half-made
    return _back(present, p.target)


def _derive_one(store: Store, p: PromiseCheck) -> Derived:
    target = p.target
    if p.kind == PromiseKind.FILE:
        try:
            f = store.file_path(target)
        except KeyError:
            return Derived(error="no container named {}".format(target.split(":", 2)[1]))
        if f is None or not (os.path.isfile(f) or os.path.isdir(f)):
            return Derived(error=f"{target} is not a regular file or directory on the live guest")
        if os.path.isdir(f) and target.startswith("container:"):
            return Derived(
                error=f"{target} is a directory: a container's directory merges its "
                "layers, so only disk: and volume: directories can be promised"
            )
        return Derived(sha256=content(f), meta=file_meta(f))
    if p.kind == PromiseKind.IMAGE:
        image_id = store.image_id(target)
        if image_id is None:
            return Derived(error=f"repositories.json has no {target} on the live guest")
        if p.manifest:
            return Derived(image_id=image_id)
        files = store.visible_files(store.layers(image_id))
        paths = [x.rstrip("/") for x in p.paths]
        lines = [
            f"{sha256(full)}  {path}"
            for path, full in sorted(files.items())
            if not paths or any(path == x or path.startswith(x + "/") for x in paths)
        ]
        return Derived(image_id=image_id, manifest="".join(line + "\n" for line in lines))
    return Derived()


def derive(arg: dict[str, Any]) -> list[dict[str, Any]]:
    """What each promise expects, read from the live guest's store (read-only)."""
    req = DeriveRequest.from_json(arg)
    store = Store(req.driver)
    out = []
    for p in req.promises:
        try:
            out.append(_derive_one(store, p))
        except (OSError, ValueError, KeyError) as e:
            out.append(Derived(error=f"{type(e).__name__}: {e}"))
    return [asdict(d) for d in out]


def find_device(serial: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for name in os.listdir("/sys/block"):
            try:
                with open(f"/sys/block/{name}/serial") as f:
                    if f.read().strip() == serial:
                        return "/dev/" + name
            except OSError:
                continue
        if time.monotonic() > deadline:
            raise RuntimeError(f"no disk with serial {serial!r} appeared")
        time.sleep(0.02)


def check_store(req: CheckRequest, out: CheckOutcome) -> None:
    """Promises and docker's store, offline, on the recovered tree (dockerd not
    running, so nothing has rewritten the evidence). A workload promise was made by
    sync/fsync: breaking it is the filesystem's fault. Docker's own promise (an image
    it restores is intact) is docker's."""
    t_store = time.monotonic()
    try:
        store = Store(req.driver or DockerStore(ROOT).driver)
    except ValueError as e:
        traces = [n for n in DOCKER_TRACES if os.path.lexists(os.path.join(ROOT, n))]
        out.records.append(
            CheckRecord(
                RecordKind.STORE,
                False,
                "detect docker's store",
                str(e),
                LOST,
                no_trace=not traces,
            )
        )
        return
    check_observations(store, req, out)
    for p in req.promises:
        try:
            kept = check_promise(store, p, req.promises)
        except (OSError, ValueError, KeyError) as e:
            kept = Kept(
                ViolationClass.DOCKER_CORRUPTION, f"{type(e).__name__}: {e}", Fault.FILESYSTEM
            )
        out.records.append(
            CheckRecord(
                RecordKind.PROMISE,
                kept.cls is None,
                "offline check",
                kept.evidence,
                kept.cls,
                kept.fault,
                promise=p.describe,
                subject=p.key,
                kind=p.kind,
            )
        )
    # Structure and content of every promised image and container, then of every
    # other image docker would restore.
    refs = {p.target for p in req.promises if p.kind == PromiseKind.IMAGE}
    names = {p.target for p in req.promises if p.kind == PromiseKind.CONTAINER}
    try:
        ds = DockerStore(ROOT, store.driver)
        if refs or names or req.full:
            for f in ds.check(True, None if req.full else refs, names):
                f.fault = Fault.UNKNOWN if req.full else Fault.FILESYSTEM
        if req.registered and not req.full:
            promised: set[str] = set()
            for ref in refs:
                try:
                    image_id = store.image_id(ref)
                except (OSError, ValueError, KeyError):
                    continue
                if image_id is not None:
                    promised.add(image_id)
            ds.check_registered(promised)
        findings = ds.findings
    except (OSError, ValueError) as e:
        findings = [
            Finding(ViolationClass.DOCKER_CORRUPTION, "docker's store is readable", ROOT, str(e))
        ]
    for f in findings:
        out.records.append(
            CheckRecord(
                RecordKind.STORE,
                False,
                "offline store check",
                f"{f.path}: {f.detail}",
                f.cls,
                Fault.DOCKER if f.cls == ViolationClass.LEAK else f.fault,
                promise=f.what,
                image=f.image,
            )
        )
    out.times["store"] = time.monotonic() - t_store


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def fingerprint(store: Store, target: str) -> str:
    """ "absent", or "SHA256 MODE UID GID" of the file a target names (what an
    observation compares)."""
    f = store.file_path(target)
    if f is None:
        return "absent"
    if not os.path.isfile(f):
        return "not a regular file"
    return f"{sha256(f)} {file_meta(f)}"


def check_observations(store: Store, req: CheckRequest, out: CheckOutcome) -> None:
    """What each observed file is: the first outcome it matches, else empty or other."""
    for o in req.observe:
        try:
            got = fingerprint(store, o.target)
        except (OSError, ValueError, KeyError) as e:
            got = f"unreadable: {type(e).__name__}: {e}"
        label = next((k for k, v in o.outcomes.items() if v == got), "")
        if not label:
            label = "empty" if got.startswith(EMPTY_SHA256) else "other"
        out.observed.append(Observed(o.target, label, got))


def check_commands(req: CheckRequest, out: CheckOutcome) -> None:
    """The workload's offline invariants: commands that must succeed on any
    recovered disk, run with the store mounted read-only at /var/lib/docker."""
    t = time.monotonic()
    for c in req.commands:
        rc, text = sh(c.command, timeout=c.timeout)
        out.records.append(
            CheckRecord(
                RecordKind.INVARIANT,
                rc == 0,
                c.command,
                f"(exit {rc})\n{text}",
                c.cls,
                promise=c.promise,
                id=c.id,
            )
        )
    out.times["commands"] = time.monotonic() - t


def check(arg: dict[str, Any]) -> dict[str, Any]:
    """One state, all oracles: a CheckRequest in, a CheckOutcome out (as JSON)."""
    return run_check(CheckRequest.from_json(arg)).to_json()


def run_check(req: CheckRequest) -> CheckOutcome:
    t0 = time.monotonic()
    dev = find_device(req.serial)
    req = req.with_device(dev)
    out = CheckOutcome()
    times = out.times
    times["find_device"] = time.monotonic() - t0

    def timed(key: str, fn: Callable[..., T], *args: Any) -> T:
        start = time.monotonic()
        try:
            return fn(*args)
        finally:
            times[key] = times.get(key, 0.0) + time.monotonic() - start

    def sh(cmd: str, timeout: float = 300) -> tuple[int, str]:
        return timed(cmd.split()[0], _sh, cmd, timeout)

    # The checker swaps the disk's content under the same device between states.
    # The kernel drops a block device's cache at its last close; drop it here too,
    # in case anything (udev, blkid) still holds the device open.
    rc, text = timed("drop_cache", drop_cache, dev)
    if rc != 0:
        raise RuntimeError(f"dropping the cache of {dev} failed: {text}")
    if req.before:
        rc, text = sh(req.before)
        if rc != 0:
            raise RuntimeError(f"preparing the state failed (exit {rc}): {text}")

    def record(kind: RecordKind, rc: int, cmd: str, text: str) -> bool:
        cls = None if rc == 0 else ViolationClass.FS_CORRUPTION
        out.records.append(CheckRecord(kind, rc == 0, cmd, text, cls))
        return rc == 0

    # Recovery runs at the first mount; a read-only remount then flushes what it
    # wrote, the read-only checks look at the recovered tree, and fsck checks the
    # unmounted result. (One mount instead of mount, umount, fsck, mount again.)
    os.makedirs(ROOT, exist_ok=True)
    rc, text = sh(req.mount)
    if not record(RecordKind.MOUNT, rc, req.mount, text):
        return out
    if req.after_mount:  # self-tests damage the recovered tree here
        rc, text = sh(req.after_mount)
        if rc != 0:
            raise RuntimeError(f"damaging the state failed (exit {rc}): {text}")
    rc, text = timed("remount", remount_ro, ROOT)
    fsck: Background | None = None
    if record(RecordKind.REMOUNT, rc, "mount -o remount,ro " + ROOT, text):
        # Nothing writes a read-only mount: fsck and scrub run beside the store
        # checks (one's disk reads overlap the others' work) and fsck sees what it
        # would see after the umount.
        if req.fsck_mounted:
            fsck = Background(req.fsck_mounted)
        scrub = Background(req.scrub, timeout=600) if req.scrub else None
        check_store(req, out)
        check_commands(req, out)
        if scrub is not None:
            rc, text = timed("scrub_wait", scrub.wait)
            times["scrub"] = scrub.seconds
            record(RecordKind.SCRUB, rc, req.scrub, text)
    if fsck is not None:
        rc, text = timed("fsck_wait", fsck.wait)
        times["fsck"] = fsck.seconds
        record(RecordKind.FSCK, rc, req.fsck_mounted, text)
    rc, text = timed("umount", umount, ROOT)
    if record(RecordKind.UMOUNT, rc, "umount " + ROOT, text) and fsck is None:
        rc, text = timed("fsck", _sh, req.fsck)
        record(RecordKind.FSCK, rc, req.fsck, text)
    return out


if __name__ == "__main__":
    print(json.dumps(check(json.load(sys.stdin))))
