"""Check one crash state inside the checker guest, in one round trip.

Called in the agent's process (op "call", function `check`) or as a script (JSON
on stdin/stdout). Input: the disk's serial, mount and fsck commands ({dev} is
replaced by the device), driver, promises. Output: one record per check.
Mount runs the guest kernel's own recovery; fsck runs after unmount; then the
promises are checked offline on a read-only mount (dockerd never runs here, so
nothing rewrites the evidence).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from docker_store import DockerStore  # noqa: E402

ROOT = "/var/lib/docker"
# What docker leaves at its root: a disk with none of these never held docker.
DOCKER_TRACES = ("image", "containers", "overlay2", "btrfs", "volumes", "buildkit", "network")


def sh(cmd, timeout=300):
    try:
        p = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, timeout=timeout)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        return p.returncode, out[-4000:]
    except subprocess.TimeoutExpired:
        return 124, "timed out after %ds" % timeout


_sh = sh  # check() wraps it to time each command

# Remount, unmount and cache drop are system calls, not programs: under TCG each
# program started costs tens of milliseconds, per state.
_libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT = 1, 32
BLKFLSBUF = 0x1261


def _syscall_result(rc):
    if rc == 0:
        return 0, ""
    err = ctypes.get_errno()
    return 1, "%s: %s" % (errno.errorcode.get(err, err), os.strerror(err))


def remount_ro(target):
    return _syscall_result(_libc.mount(None, target.encode(), None,
                                       MS_REMOUNT | MS_RDONLY, None))


def umount(target):
    return _syscall_result(_libc.umount2(target.encode(), 0))


def drop_cache(dev):
    try:
        fd = os.open(dev, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, BLKFLSBUF, 0)
        finally:
            os.close(fd)
        return 0, ""
    except OSError as e:
        return 1, str(e)


def sha256(path):
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


def read(path):
    with open(path) as f:
        return f.read().strip()


class Store:
    """docker's on-disk store, read offline."""

    def __init__(self, driver):
        self.driver = driver
        self.img = os.path.join(ROOT, "image", driver)

    def image_id(self, ref):
        with open(os.path.join(self.img, "repositories.json")) as f:
            repos = json.load(f)["Repositories"]
        name = ref.rsplit(":", 1)[0]
        return repos.get(name, {}).get(ref)

    def layers(self, image_id):
        """Driver directories of the image's layers, bottom first; raises on damage."""
        digest = image_id.split(":", 1)[1]
        path = os.path.join(self.img, "imagedb/content/sha256", digest)
        with open(path, "rb") as f:
            raw = f.read()
        if hashlib.sha256(raw).hexdigest() != digest:
            raise ValueError("image config %s does not hash to its name" % path)
        diff_ids = json.loads(raw)["rootfs"]["diff_ids"]
        chain, dirs = None, []
        for diff in diff_ids:
            chain = diff if chain is None else "sha256:" + hashlib.sha256(
                (chain + " " + diff).encode()).hexdigest()
            ldir = os.path.join(self.img, "layerdb/sha256", chain.split(":", 1)[1])
            if read(os.path.join(ldir, "diff")) != diff:
                raise ValueError("layer %s: diff does not match %s" % (ldir, diff))
            cache_id = read(os.path.join(ldir, "cache-id"))
            dirs.append(self.layer_dir(cache_id))
        return dirs

    def layer_dir(self, cache_id):
        if self.driver == "btrfs":
            d = os.path.join(ROOT, "btrfs/subvolumes", cache_id)
        else:
            d = os.path.join(ROOT, "overlay2", cache_id, "diff")
        if not os.path.isdir(d):
            raise ValueError("layer directory %s is missing" % d)
        return d

    def lookup(self, dirs, path):
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

    def file_path(self, target):
        """The path on the test filesystem of a file promise's target; None when
        its container is gone."""
        if target.startswith("disk:"):
            return os.path.join(ROOT, target[len("disk:"):].lstrip("/"))
        where, name, path = target.split(":", 2)
        if where == "container":
            base = self.container_dir(name)
            if base is None:
                return None
        else:
            base = os.path.join(ROOT, "volumes", name, "_data")
        return os.path.join(base, path.lstrip("/"))

    def visible_files(self, dirs):
        """Every regular file a container of the image sees: path -> file in a layer."""
        if self.driver == "btrfs":  # each layer is a full snapshot
            dirs = dirs[-1:]
        visible, seen_dirs = {}, set()

        def drop_below(rel):
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

    def container_dir(self, name):
        cdir = os.path.join(ROOT, "containers")
        for cid in os.listdir(cdir):
            try:
                with open(os.path.join(cdir, cid, "config.v2.json")) as f:
                    if json.load(f).get("Name") == "/" + name:
                        mount = read(os.path.join(self.img, "layerdb/mounts", cid, "mount-id"))
                        return self.layer_dir(mount)
            except (OSError, ValueError):
                continue
        return None


def check_promise(store, p):
    kind, target = p["kind"], p["target"]
    if kind == "image":
        image_id = store.image_id(target)
        if image_id is None:
            return "docker-lost", "repositories.json has no %s" % target
        if p.get("image_id") and image_id != p["image_id"]:
            return "fs-durability", "%s names %s, not %s" % (target, image_id, p["image_id"])
        dirs = store.layers(image_id)
        bad = []
        for line in p.get("manifest", "").splitlines():
            want, path = line.split("  ", 1)
            f = store.lookup(dirs, path)
            got = sha256(f) if f and os.path.isfile(f) else "(missing)"
            if got != want:
                bad.append("%s: want %s got %s" % (path, want[:16], got[:16]))
        if bad:
            return "docker-corruption", "\n".join(bad)
        return None, "image %s: %d layers intact" % (target, len(dirs))
    if kind == "container":
        return (None, "found") if store.container_dir(target) else (
            "docker-lost", "no container named %s" % target)
    if kind == "file":
        f = store.file_path(target)
        if f is None:
            return "docker-lost", "no container named %s" % target.split(":", 2)[1]
        got = sha256(f) if os.path.isfile(f) else "(missing)"
        if got != p["sha256"]:
            return "fs-durability", "%s: want %s got %s" % (f, p["sha256"], got)
        return None, "%s intact" % f
    if kind in ("absent-image", "absent-container"):
        present = (store.image_id(target) if kind == "absent-image"
                   else store.container_dir(target))
        return ("fs-durability", "%s is back" % target) if present else (None, "still gone")
    return "harness-error", "unknown promise kind %s" % kind


def _derive_one(store, p):
    kind, target = p["kind"], p["target"]
    if kind == "file":
        f = store.file_path(target)
        if f is None:
            return {"error": "no container named %s" % target.split(":", 2)[1]}
        if not os.path.isfile(f):
            return {"error": "%s is not a regular file on the live guest" % f}
        return {"sha256": sha256(f)}
    if kind == "image":
        image_id = store.image_id(target)
        if image_id is None:
            return {"error": "repositories.json has no %s on the live guest" % target}
        if p.get("manifest"):
            return {"image_id": image_id}
        files = store.visible_files(store.layers(image_id))
        paths = [x.rstrip("/") for x in p.get("paths") or ()]
        lines = ["%s  %s" % (sha256(full), path) for path, full in sorted(files.items())
                 if not paths or any(path == x or path.startswith(x + "/") for x in paths)]
        return {"image_id": image_id, "manifest": "".join(line + "\n" for line in lines)}
    return {}


def derive(req):
    """What each promise expects, read from the live guest's store (read-only)."""
    store = Store(req["driver"])
    out = []
    for p in req["promises"]:
        try:
            out.append(_derive_one(store, p))
        except (OSError, ValueError, KeyError) as e:
            out.append({"error": "%s: %s" % (type(e).__name__, e)})
    return out


def find_device(serial, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        for name in os.listdir("/sys/block"):
            try:
                with open("/sys/block/%s/serial" % name) as f:
                    if f.read().strip() == serial:
                        return "/dev/" + name
            except OSError:
                continue
        if time.monotonic() > deadline:
            raise RuntimeError("no disk with serial %r appeared" % serial)
        time.sleep(0.02)


def check_store(req, results, times):
    """Promises and docker's store, offline, on the recovered tree (dockerd not
    running, so nothing has rewritten the evidence). A workload promise was made by
    sync/fsync: breaking it is the filesystem's fault. Docker's own promise (an image
    it restores is intact) is docker's."""
    t_store = time.monotonic()
    try:
        store = Store(req["driver"] or DockerStore(ROOT).driver)
    except ValueError as e:
        traces = [n for n in DOCKER_TRACES if os.path.lexists(os.path.join(ROOT, n))]
        results.append({"check": "store", "ok": False, "class": "docker-lost",
                        "command": "detect docker's store", "output": str(e),
                        "no_trace": not traces})
        return
    for p in req["promises"]:
        try:
            cls, msg = check_promise(store, p)
        except (OSError, ValueError, KeyError) as e:
            cls, msg = "docker-corruption", "%s: %s" % (type(e).__name__, e)
        results.append({"check": "promise", "ok": cls is None, "class": cls,
                        "fault": "filesystem", "promise": p["describe"],
                        "subject": p["key"], "kind": p["kind"],
                        "command": "offline check", "output": msg})
    # Structure and content of every promised image and container, then of every
    # other image docker would restore.
    refs = {p["target"] for p in req["promises"] if p["kind"] == "image"}
    names = {p["target"] for p in req["promises"] if p["kind"] == "container"}
    full = req.get("full")
    try:
        ds = DockerStore(ROOT, store.driver)
        if refs or names or full:
            for f in ds.check(True, None if full else refs, names):
                f["fault"] = "unknown" if full else "filesystem"
        if req.get("registered") and not full:
            promised = set()
            for ref in refs | set(req.get("skip_refs", ())):
                try:
                    promised.add(store.image_id(ref))
                except (OSError, ValueError, KeyError):
                    pass
            ds.check_registered(promised - {None})
        findings = ds.findings
    except (OSError, ValueError) as e:
        findings = [{"cls": "docker-corruption", "what": "docker's store is readable",
                     "path": ROOT, "detail": str(e), "fault": ""}]
    for f in findings:
        results.append({"check": "store", "ok": False, "class": f["cls"],
                        "fault": "docker" if f["cls"] == "leak" else f["fault"],
                        "promise": f["what"], "command": "offline store check",
                        "output": "%s: %s" % (f["path"], f["detail"]),
                        "image": f.get("image", "")})
    times["store"] = time.monotonic() - t_store


def check_commands(req, results, times):
    """The workload's offline invariants: commands that must succeed on any
    recovered disk, run with the store mounted read-only at /var/lib/docker."""
    t = time.monotonic()
    for c in req.get("commands", ()):
        rc, out = sh(c["command"], timeout=c.get("timeout", 300))
        results.append({"check": "invariant", "id": c["id"], "ok": rc == 0,
                        "class": c["class"], "promise": c["promise"],
                        "command": c["command"], "output": "(exit %d)\n%s" % (rc, out)})
    times["commands"] = time.monotonic() - t


def check(req):
    """One state, all oracles. `req` names the disk by serial; commands may use
    {dev}. Returns the list of check records."""
    t0 = time.monotonic()
    dev = find_device(req["serial"])
    req = {k: v.replace("{dev}", dev) if isinstance(v, str) else v for k, v in req.items()}
    results = []
    times = {"find_device": time.monotonic() - t0}

    def timed(key, fn, *args):
        start = time.monotonic()
        try:
            return fn(*args)
        finally:
            times[key] = times.get(key, 0.0) + time.monotonic() - start

    def sh(cmd, timeout=300):
        return timed(cmd.split()[0], _sh, cmd, timeout)
    # The checker swaps the disk's content under the same device between states.
    # The kernel drops a block device's cache at its last close; drop it here too,
    # in case anything (udev, blkid) still holds the device open.
    rc, out = timed("drop_cache", drop_cache, dev)
    if rc != 0:
        raise RuntimeError("dropping the cache of %s failed: %s" % (dev, out))
    if req.get("before"):
        rc, out = sh(req["before"])
        if rc != 0:
            raise RuntimeError("preparing the state failed (exit %d): %s" % (rc, out))

    def record(check, rc, cmd, out, cls="fs-corruption"):
        results.append({"check": check, "ok": rc == 0, "class": cls, "command": cmd,
                        "output": out})
        return rc == 0

    # Recovery runs at the first mount; a read-only remount then flushes what it
    # wrote, the read-only checks look at the recovered tree, and fsck checks the
    # unmounted result. (One mount instead of mount, umount, fsck, mount again.)
    os.makedirs(ROOT, exist_ok=True)
    rc, out = sh(req["mount"])
    if not record("mount", rc, req["mount"], out):
        return results
    if req.get("after_mount"):  # self-tests damage the recovered tree here
        rc, out = sh(req["after_mount"])
        if rc != 0:
            raise RuntimeError("damaging the state failed (exit %d): %s" % (rc, out))
    rc, out = timed("remount", remount_ro, ROOT)
    if record("remount", rc, "mount -o remount,ro " + ROOT, out):
        if req.get("scrub"):
            rc, out = sh(req["scrub"], timeout=600)
            record("scrub", rc, req["scrub"], out)
        check_store(req, results, times)
        check_commands(req, results, times)
    rc, out = timed("umount", umount, ROOT)
    if record("umount", rc, "umount " + ROOT, out):
        rc, out = sh(req["fsck"])
        record("fsck", rc, req["fsck"], out)
    results.append({"check": "timings", "ok": True, "times": times})
    return results


if __name__ == "__main__":
    print(json.dumps(check(json.load(sys.stdin))))
