"""The kernel-independent guest root disk: Debian packages via mmdebstrap, made
into an ext4 image with `mkfs.ext4 -d` (no loop mounts), plus the busybox base
image tarball that the guest `docker import`s."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import hosttools
from harness.errors import HarnessError, InputError
from harness.images.cache import (
    RECIPES,
    building,
    cache_root,
    read_list,
    recipe_digest,
    sha256_file,
)

log = logging.getLogger(__name__)

# Debian suites a guest root can be built from: each brings its own docker generation
# (bookworm: docker.io 20.10 with its CLI, containerd 1.6; trixie: docker.io 26.1 with
# docker-cli, containerd 1.7). images/rootfs.packages + images/rootfs.SUITE.packages.
RELEASES = ("bookworm", "trixie")
DEFAULT_SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
ROOT_IMG_SIZE = "1536M"
BASE_TAR_IN_GUEST = "/usr/share/crashtest/base.tar"
# Applets the base image exposes as commands; busybox provides them all.
BASE_APPLETS = (
    "sh",
    "ash",
    "cat",
    "chmod",
    "chown",
    "cp",
    "dd",
    "echo",
    "find",
    "grep",
    "head",
    "ln",
    "ls",
    "mkdir",
    "mv",
    "printf",
    "rm",
    "sha256sum",
    "sleep",
    "stat",
    "sync",
    "tail",
    "tar",
    "test",
    "touch",
    "true",
    "false",
    "wc",
    "xargs",
    "yes",
    "diff",
    "truncate",
)


@dataclass(frozen=True)
class RootImage:
    path: Path
    busybox: Path
    manifest: dict[str, object]

    @property
    def manifest_id(self) -> str:
        return str(self.manifest["id"])

    def key_packages(self) -> dict[str, str]:
        """Versions of the packages a verdict depends on most."""
        pkgs = self.manifest.get("packages")
        wanted = (
            "docker.io",
            "docker-cli",
            "containerd",
            "runc",
            "btrfs-progs",
            "e2fsprogs",
            "xfsprogs",
            "busybox-static",
            "docker-registry",
        )
        return {k: str(v) for k, v in pkgs.items() if k in wanted} if isinstance(pkgs, dict) else {}


def base_image_tar(busybox: bytes) -> bytes:
    """A deterministic busybox root filesystem tarball (same bytes for the same busybox)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, 0
            info.linkname, info.size = link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        for d in ("bin", "etc", "tmp", "data", "proc", "sys", "dev", "crashtest"):
            add(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox)
        for applet in BASE_APPLETS:
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, b"root:x:0:0:root:/:/bin/sh\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\n")
    return out.getvalue()


def check_release(suite: str) -> str:
    if suite not in RELEASES:
        raise InputError(
            f"RELEASE {suite!r}: not a known Debian suite (one of {', '.join(RELEASES)})"
        )
    return suite


def packages(suite: str) -> list[str]:
    return read_list(RECIPES / "rootfs.packages") + read_list(RECIPES / f"rootfs.{suite}.packages")


def _digest(suite: str) -> str:
    return recipe_digest(
        "rootfs-v1",
        suite,
        MIRROR,
        ROOT_IMG_SIZE,
        " ".join(BASE_APPLETS),
        RECIPES / "rootfs.packages",
        RECIPES / f"rootfs.{suite}.packages",
    )


def ensure_rootfs(suite: str = DEFAULT_SUITE, announce: bool = True) -> RootImage:
    check_release(suite)
    final = cache_root() / f"rootfs-{suite}-{_digest(suite)}"
    if not (final / "manifest.json").exists():
        hosttools.require("mmdebstrap", "mkfs.ext4", "dpkg-query")
        if announce:
            log.info(f"building guest root filesystem ({suite}) into {final}")
        with building(final) as tmp:
            _build(suite, tmp)
    manifest = json.loads((final / "manifest.json").read_text())
    verify_root(final, manifest)
    return RootImage(final / "root.img", final / "busybox", manifest)


def verify_root(final: Path, manifest: dict[str, object]) -> None:
    """The cached root disk is the one that was built: a damaged image would fail
    in the guest with misleading errors (say, containerd timing out). The sha256 is
    read again only when the file's size or mtime changed since the last look."""
    img = final / "root.img"
    rebuild = f"remove {final} and run `make images` (or `crashtest images`) to rebuild it"
    try:
        st = img.stat()
    except OSError as e:
        raise HarnessError(f"guest root image {img} is missing ({e.strerror}): {rebuild}") from e
    stamp = [st.st_size, st.st_mtime_ns]
    if manifest.get("root_stamp") == stamp:
        return
    digest = sha256_file(img)
    if manifest.get("root_sha256", digest) != digest:
        raise HarnessError(
            f"guest root image {img} is damaged (its sha256 is not the one "
            f"recorded when it was built): {rebuild}"
        )
    manifest.update(root_sha256=digest, root_stamp=stamp)
    tmp = final / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, final / "manifest.json")


def _build(suite: str, out: Path) -> None:
    started = time.monotonic()
    tree = out / "tree"
    # Root builds the tree (owners, device nodes) and the disk made from it.
    why = "building the guest root filesystem (mmdebstrap, mkfs.ext4 -d)"
    hosttools.run(
        hosttools.as_root(
            [
                "mmdebstrap",
                "--mode=root",
                "--variant=minbase",
                "--include=" + ",".join(packages(suite)),
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                suite,
                str(tree),
                MIRROR,
            ],
            why,
        ),
        "mmdebstrap of the guest root filesystem",
        timeout=900,
    )
    versions = hosttools.run(
        ["dpkg-query", f"--admindir={tree}/var/lib/dpkg", "-W", "-f", "${Package}=${Version}\n"],
        "listing guest packages",
    )
    pkgs = dict(line.split("=", 1) for line in versions.splitlines() if "=" in line)
    busybox = (tree / "usr/bin/busybox").read_bytes()
    (out / "busybox").write_bytes(busybox)
    (out / "busybox").chmod(0o755)
    base_tar = base_image_tar(busybox)
    (out / "base.tar").write_bytes(base_tar)
    hosttools.run(
        hosttools.as_root(
            [
                "install",
                "-D",
                "-m",
                "0644",
                str(out / "base.tar"),
                str(tree / BASE_TAR_IN_GUEST.lstrip("/")),
            ],
            why,
        ),
        "adding the base image to the guest root",
    )
    (out / "base.tar").unlink()
    hosttools.run(
        hosttools.as_root(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-L",
                "crashtest-root",
                "-E",
                "root_owner=0:0",
                "-d",
                str(tree),
                str(out / "root.img"),
                ROOT_IMG_SIZE,
            ],
            why,
        ),
        "mkfs.ext4 -d of the guest root disk",
    )
    hosttools.run(
        hosttools.as_root(["rm", "-rf", "--one-file-system", str(tree)], why),
        "removing the build tree",
    )
    if os.geteuid() != 0:
        hosttools.run(
            hosttools.as_root(
                ["chown", f"{os.getuid()}:{os.getgid()}", str(out / "root.img")], why
            ),
            "owning the root disk",
        )
    ident = recipe_digest(suite, json.dumps(pkgs, sort_keys=True), base_tar)
    manifest = {
        "id": f"rootfs-{ident[:12]}",
        "suite": suite,
        "packages": pkgs,
        "build_s": round(time.monotonic() - started, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    root = out / "root.img"
    manifest.update(
        root_sha256=sha256_file(root), root_stamp=[root.stat().st_size, root.stat().st_mtime_ns]
    )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.sync()
