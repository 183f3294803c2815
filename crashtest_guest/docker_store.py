"""Offline oracle for docker's classic image store (/var/lib/docker, dockerd stopped).

Structure: repositories.json, imagedb configs (hash = name), layerdb chain IDs,
parents, cache IDs, tar-split readability, overlay2 link/lower/l/ symlinks, btrfs
subvolumes, container configs and mount ids. Content: each layer's tar stream
rebuilt from tar-split.json.gz and the layer's files must hash to its diffID; on a
mismatch, per-file CRC64 (ISO, as Go computes it) names the first damaged file.
Leftovers (orphan driver dirs, write-sets, -removing dirs, .tmp- files) are leaks.

Standard library only: it runs on the guest's python3.
"""

import base64
import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from crashtest_guest.protocol import Fault, ViolationClass

LINK_RE = re.compile(r"^[A-Z2-7]{26}$")
HEX64 = re.compile(r"^[a-f0-9]{64}$")
Layer = tuple[str, str, str]  # chain id, diff id, cache id
CORRUPT, LOST = ViolationClass.DOCKER_CORRUPTION, ViolationClass.DOCKER_LOST

_CRC_TABLE: list[int] = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0xD800000000000000 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc64_iso(data: bytes, crc: int = 0) -> int:
    crc = ~crc & 0xFFFFFFFFFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return ~crc & 0xFFFFFFFFFFFFFFFF


# BTRFS_IOC_GET_SUBVOL_INFO: _IOR(0x94, 60, struct btrfs_ioctl_get_subvol_info_args),
# 504 bytes; uuid at offset 296, parent_uuid at 312 (linux/btrfs.h). Unprivileged,
# and one system call instead of a `btrfs subvolume show` per layer.
BTRFS_IOC_GET_SUBVOL_INFO = (2 << 30) | (504 << 16) | (0x94 << 8) | 60


def subvolume_uuids(path: str) -> tuple[str, str]:
    """(uuid, parent_uuid) of the btrfs subvolume at `path`, as hex; raises OSError
    when it is not a subvolume."""
    buf = bytearray(504)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, BTRFS_IOC_GET_SUBVOL_INFO, buf)
    finally:
        os.close(fd)
    return bytes(buf[296:312]).hex(), bytes(buf[312:328]).hex()


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@dataclass
class Finding:
    """One thing wrong with the store: what should hold, where, and why not.
    `fault` None: the caller decides whose fault it is."""

    cls: ViolationClass
    what: str
    path: str
    detail: str = ""
    fault: Fault | None = None
    image: str = ""  # the image a restored-image finding is about


class DockerStore:
    def __init__(self, root: str, driver: str | None = None) -> None:
        self.root = root
        self.driver = driver or self._detect_driver()
        self.img = os.path.join(root, "image", self.driver)
        self.findings: list[Finding] = []
        self.layers: dict[str, str] = {}  # chain id -> cache id
        self.checked: dict[str, bool] = {}  # chain id -> its content is intact
        self.uuids: dict[str, str] = {}  # btrfs: cache id -> subvolume uuid
        self._refs: dict[str, str] | None = None
        self.stats = {"images": 0, "layers": 0, "containers": 0, "bytes_hashed": 0}

    def _detect_driver(self) -> str:
        for drv in ("overlay2", "btrfs"):
            if os.path.isdir(os.path.join(self.root, "image", drv)):
                return drv
        raise ValueError("no docker image store (image/overlay2 or image/btrfs) under " + self.root)

    def add(self, cls: ViolationClass, what: str, path: str, detail: object = "") -> None:
        self.findings.append(Finding(cls, what, path, str(detail)[:2000]))

    # -------------------------------------------------------------- paths

    def driver_dir(self, cache_id: str) -> str:
        if self.driver == "btrfs":
            return os.path.join(self.root, "btrfs/subvolumes", cache_id)
        return os.path.join(self.root, "overlay2", cache_id)

    def diff_dir(self, cache_id: str) -> str:
        d = self.driver_dir(cache_id)
        return d if self.driver == "btrfs" else os.path.join(d, "diff")

    # -------------------------------------------------------------- structure

    def repositories(self) -> dict[str, str]:
        """Tag -> image id (read once: a damaged file is one finding)."""
        if self._refs is None:
            self._refs = self._read_repositories()
        refs: dict[str, str] = self._refs
        return refs

    def _read_repositories(self) -> dict[str, str]:
        path = os.path.join(self.img, "repositories.json")
        try:
            with open(path) as f:
                repos = json.load(f)["Repositories"]
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError) as e:
            self.add(
                CORRUPT,
                "repositories.json parses (dockerd refuses to start otherwise)",
                path,
                e,
            )
            return {}
        refs = {}
        for _name, tags in repos.items():
            for ref, image_id in tags.items():
                refs[ref] = image_id
        return refs

    def image_config(self, image_id: str) -> dict[str, Any] | None:
        digest = image_id.split(":", 1)[-1]
        path = os.path.join(self.img, "imagedb/content/sha256", digest)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            self.add(LOST, f"image config of {image_id} exists", path, e)
            return None
        if hashlib.sha256(raw).hexdigest() != digest:
            self.add(
                CORRUPT,
                "image config hashes to its name",
                path,
                f"{len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}",
            )
            return None
        try:
            config: dict[str, Any] = json.loads(raw)
            return config
        except ValueError as e:
            self.add(CORRUPT, "image config parses", path, e)
            return None

    def check_layer_chain(self, image_id: str, config: dict[str, Any]) -> list[Layer]:
        """Walk the image's layers; returns [(chain, diff_id, cache_id)] bottom first."""
        chain: str | None = None
        parent: str | None = None
        out: list[Layer] = []
        for diff in config.get("rootfs", {}).get("diff_ids", []):
            chain = (
                diff
                if chain is None
                else "sha256:" + hashlib.sha256((chain + " " + diff).encode()).hexdigest()
            )
            ldir = os.path.join(self.img, "layerdb/sha256", chain.split(":", 1)[1])
            if not os.path.isdir(ldir):
                self.add(LOST, f"layer {chain} of image {image_id} exists", ldir)
                return out
            try:
                if _read(os.path.join(ldir, "diff")) != diff:
                    self.add(CORRUPT, "layer diff matches its diffID", ldir, "want " + diff)
                got_parent = (
                    _read(os.path.join(ldir, "parent"))
                    if os.path.exists(os.path.join(ldir, "parent"))
                    else None
                )
                if got_parent != parent:
                    self.add(
                        CORRUPT,
                        "layer parent is the previous chain ID",
                        ldir,
                        f"want {parent} got {got_parent}",
                    )
                cache_id = _read(os.path.join(ldir, "cache-id"))
            except OSError as e:
                self.add(CORRUPT, "layer metadata is readable", ldir, e)
                return out
            if not HEX64.match(cache_id):
                self.add(CORRUPT, "layer cache-id is 64 hex digits", ldir, repr(cache_id))
                return out
            if not os.path.isdir(self.driver_dir(cache_id)):
                self.add(
                    LOST,
                    "layer driver directory exists",
                    self.driver_dir(cache_id),
                    "layer " + chain,
                )
                return out
            if self.driver == "btrfs" and not self.check_subvolume(cache_id, out):
                return out
            self.layers[chain] = cache_id
            out.append((chain, diff, cache_id))
            parent = chain
        return out

    def check_subvolume(self, cache_id: str, below: list[Layer]) -> bool:
        """A btrfs layer is a subvolume, and a snapshot of the layer below it."""
        path = self.driver_dir(cache_id)
        try:
            uuid, parent_uuid = subvolume_uuids(path)
        except OSError as e:
            self.add(CORRUPT, "btrfs layer is a subvolume", path, e)
            return False
        self.uuids[cache_id] = uuid
        if below:
            want = self.uuids.get(below[-1][2])
            if want and parent_uuid != want:
                self.add(
                    CORRUPT,
                    "btrfs layer is a snapshot of the layer below",
                    path,
                    f"parent uuid {parent_uuid}, the layer below ({below[-1][2][:12]}) is {want}",
                )
                return False
        return True

    def check_link(self, cache_id: str) -> str | None:
        """The layer's overlay2 short link and its l/ symlink; returns the link or None."""
        d = self.driver_dir(cache_id)
        try:
            link = _read(os.path.join(d, "link"))
        except OSError as e:
            self.add(CORRUPT, "overlay2 link file is readable", d, e)
            return None
        if not LINK_RE.match(link):
            self.add(
                CORRUPT,
                "overlay2 link is a 26-character id",
                os.path.join(d, "link"),
                repr(link),
            )
            return None
        lpath = os.path.join(self.root, "overlay2/l", link)
        target = os.readlink(lpath) if os.path.islink(lpath) else None
        if target != f"../{cache_id}/diff":
            self.add(
                CORRUPT,
                "overlay2 l/ symlink points at the layer",
                lpath,
                f"target {target!r}",
            )
        return link

    def check_overlay_links(self, layers: list[Layer]) -> None:
        links: list[str] = []
        for _chain, _diff, cache_id in layers:
            d = self.driver_dir(cache_id)
            link = self.check_link(cache_id)
            if link is None:
                return
            want_lower = ":".join("l/" + x for x in reversed(links))
            lower_path = os.path.join(d, "lower")
            got_lower = _read(lower_path) if os.path.exists(lower_path) else ""
            if got_lower != want_lower:
                self.add(
                    CORRUPT,
                    "overlay2 lower lists the parent links",
                    lower_path,
                    f"want {want_lower!r} got {got_lower!r}",
                )
            links.append(link)

    def check_tar_split(
        self, chain: str, diff_id: str, cache_id: str, content: bool = True
    ) -> bool:
        """Rebuild the layer's tar stream; returns False if it does not match."""
        ldir = os.path.join(self.img, "layerdb/sha256", chain.split(":", 1)[1])
        ts = os.path.join(ldir, "tar-split.json.gz")
        try:
            with gzip.open(ts, "rt") as f:
                entries = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError, EOFError) as e:
            self.add(CORRUPT, "tar-split.json.gz is readable", ts, e)
            return False
        if not content:
            return True
        base = self.diff_dir(cache_id)
        h = hashlib.sha256()
        files: list[tuple[str, str, bytes | OSError, dict[str, Any]]] = []
        for entry in entries:
            if entry.get("type") == 2:
                h.update(base64.b64decode(entry.get("payload") or ""))
            elif entry.get("type") == 1 and entry.get("size", 0) > 0:
                name = entry.get("name") or base64.b64decode(entry.get("name_raw", "")).decode(
                    "utf-8", "surrogateescape"
                )
                path = os.path.join(base, name)
                read: bytes | OSError
                try:
                    with open(path, "rb") as fh:
                        read = fh.read(entry["size"] + 1)
                except OSError as err:
                    read = err  # missing or unreadable
                files.append((name, path, read, entry))
                data = read if isinstance(read, bytes) else b""
                h.update(data[: entry["size"]] + bytes(max(0, entry["size"] - len(data))))
                self.stats["bytes_hashed"] += len(data)
        if "sha256:" + h.hexdigest() == diff_id:
            return True
        for name, path, read, entry in files:
            layer = f"layer {chain} (cache {cache_id}): file {name}"
            if not isinstance(read, bytes):
                self.add(
                    CORRUPT,
                    "layer files match their tar-split CRC64",
                    path,
                    f"{layer} is unreadable ({read.strerror or read}), "
                    f"tar-split says {entry['size']} bytes",
                )
                return False
            want = base64.b64decode(entry.get("payload") or "")
            got = crc64_iso(read).to_bytes(8, "big")
            if len(read) != entry["size"] or (want and got != want):
                self.add(
                    CORRUPT,
                    "layer files match their tar-split CRC64",
                    path,
                    f"{layer} has {len(read)} bytes, tar-split says "
                    f"{entry['size']}{'' if got == want else ', CRC64 differs'}",
                )
                return False
        self.add(
            CORRUPT,
            "layer tar stream hashes to its diffID",
            base,
            f"layer {chain}: rebuilt stream does not match {diff_id}",
        )
        return False

    def layer_intact(self, chain: str, diff_id: str, cache_id: str, content: bool = True) -> bool:
        """check_tar_split once per layer (images share layers)."""
        if chain not in self.checked:
            self.stats["layers"] += 1
            self.checked[chain] = self.check_tar_split(chain, diff_id, cache_id, content)
        return bool(self.checked[chain])

    def check_containers(self, names: Iterable[str] | None = None) -> set[str]:
        """All containers, or with `names` only those (the others may be half-made:
        docker writes a container's mount-id without fsync)."""
        cdir = os.path.join(self.root, "containers")
        mounts: set[str] = set()
        if not os.path.isdir(cdir):
            return mounts
        for cid in sorted(os.listdir(cdir)):
            path = os.path.join(cdir, cid, "config.v2.json")
            if names is not None:
                try:
                    with open(path) as f:
                        if json.load(f).get("Name", "").lstrip("/") not in names:
                            continue
                except (OSError, ValueError):
                    continue
            self.stats["containers"] += 1
            for entry in os.listdir(os.path.join(cdir, cid)):
                if entry.startswith(".tmp-"):
                    self.add(
                        ViolationClass.LEAK,
                        "no leftover temp files",
                        os.path.join(cdir, cid, entry),
                    )
            try:
                with open(path) as f:
                    cfg = json.load(f)
            except (OSError, ValueError) as e:
                self.add(CORRUPT, "container config parses", path, e)
                continue
            if cfg.get("ID") != cid:
                self.add(CORRUPT, "container config ID is its directory", path, cfg.get("ID"))
            mdir = os.path.join(self.img, "layerdb/mounts", cid)
            for key in ("mount-id", "init-id"):
                try:
                    mid = _read(os.path.join(mdir, key))
                except OSError as e:
                    self.add(CORRUPT, f"container {key} is readable", mdir, e)
                    continue
                if not HEX64.match(mid.replace("-init", "")):
                    self.add(
                        CORRUPT,
                        f"container {key} is 64 hex digits",
                        os.path.join(mdir, key),
                        repr(mid),
                    )
                    continue
                mounts.add(mid)
                if not os.path.isdir(self.driver_dir(mid)):
                    self.add(
                        LOST,
                        "container layer directory exists",
                        self.driver_dir(mid),
                        f"container {cid}",
                    )
                elif self.driver == "overlay2":
                    self.check_link(mid)
        return mounts

    def check_leaks(self, used: set[str]) -> None:
        """`used`: driver directories of containers. Layers no image reaches, and driver
        directories no layer or container owns, are leaks."""
        ldb = os.path.join(self.img, "layerdb/sha256")
        for chain in sorted(os.listdir(ldb)) if os.path.isdir(ldb) else []:
            if "sha256:" + chain not in self.layers:
                self.add(
                    ViolationClass.LEAK, "every layer belongs to an image", os.path.join(ldb, chain)
                )
            with contextlib.suppress(OSError):
                used.add(_read(os.path.join(ldb, chain, "cache-id")))
        tmp = os.path.join(self.img, "layerdb/tmp")
        if os.path.isdir(tmp):
            for f in os.listdir(tmp):
                if f.startswith("write-set-"):
                    self.add(
                        ViolationClass.LEAK, "no leftover layer write-sets", os.path.join(tmp, f)
                    )
        ddir = os.path.dirname(self.driver_dir("x"))
        if os.path.isdir(ddir):
            for name in os.listdir(ddir):
                if name == "l":
                    continue
                path = os.path.join(ddir, name)
                if name.endswith("-removing"):
                    self.add(ViolationClass.LEAK, "no half-removed driver directories", path)
                elif name not in used:
                    self.add(
                        ViolationClass.LEAK,
                        "every driver directory belongs to a layer or container",
                        path,
                    )

    # -------------------------------------------------------------- docker's own

    def image_ids(self) -> set[str]:
        """Every image dockerd would try to restore: tagged or in the image db."""
        ids = set(self.repositories().values())
        config_dir = os.path.join(self.img, "imagedb/content/sha256")
        if os.path.isdir(config_dir):
            ids |= {"sha256:" + d for d in os.listdir(config_dir)}
        return ids

    def check_registered(self, skip: Iterable[str] = ()) -> list[Finding]:
        """Docker's own promise, apart from any workload's: an image it restores at
        start is usable. dockerd silently drops an image whose config or a layer is
        missing or unreadable ("not restoring image"): nobody promised such an image,
        so that is no finding. An image it restores, config and every layer
        registered, must have intact layer files: docker registers a layer durably
        without making its files durable, and then serves 0-byte files.
        `skip`: image ids already checked against a workload promise."""
        out = []
        saved = self.findings
        for image_id in sorted(self.image_ids() - set(skip)):
            self.findings = []
            config = self.image_config(image_id)
            layers = self.check_layer_chain(image_id, config) if config else []
            if config is None or self.findings:
                continue  # dropped at start (or only partly there): not restored
            if self.driver == "overlay2":
                self.check_overlay_links(layers)
            for chain, diff, cache_id in layers:
                if not self.layer_intact(chain, diff, cache_id):
                    break  # the first damaged layer names the failure
            self.stats["images"] += 1
            tags = sorted(r for r, i in self.repositories().items() if i == image_id)
            # Ids differ from run to run (timestamps): the verdict names tags only.
            name = "image " + ", ".join(tags) if tags else "an untagged image"
            for f in self.findings:
                f.what = f"{name}, which docker restores, has intact layers ({f.what})"
                f.fault = Fault.DOCKER
                f.image = image_id
            out.extend(self.findings)
        self.findings = saved + out
        return out

    # -------------------------------------------------------------- all

    def check(
        self,
        content: bool = True,
        only_refs: Iterable[str] | None = None,
        only_containers: Iterable[str] | None = None,
    ) -> list[Finding]:
        """Check every image and container, or with `only_refs` just the images those
        tags name and the containers in `only_containers` (what a workload promised;
        the rest may legitimately be half-written)."""
        refs = self.repositories()
        config_dir = os.path.join(self.img, "imagedb/content/sha256")
        if only_refs is not None:
            refs = {r: i for r, i in refs.items() if r in only_refs}
        image_ids = set(refs.values()) if only_refs is not None else self.image_ids()
        for ref, image_id in sorted(refs.items()):
            if not os.path.exists(os.path.join(config_dir, image_id.split(":", 1)[-1])):
                self.add(LOST, f"tagged image {ref} exists", config_dir, image_id)
        for image_id in sorted(image_ids):
            config = self.image_config(image_id)
            if config is None:
                continue
            self.stats["images"] += 1
            layers = self.check_layer_chain(image_id, config)
            if self.driver == "overlay2":
                self.check_overlay_links(layers)
            for chain, diff, cache_id in layers:
                self.layer_intact(chain, diff, cache_id, content)
        mounts = self.check_containers(None if only_refs is None else (only_containers or ()))
        if only_refs is None:
            self.check_leaks(mounts)
        return self.findings


if __name__ == "__main__":
    import sys

    store = DockerStore(sys.argv[1] if len(sys.argv) > 1 else "/var/lib/docker")
    print(
        json.dumps({"findings": [asdict(f) for f in store.check()], "stats": store.stats}, indent=1)
    )
