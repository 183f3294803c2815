"""Host programs the harness needs, checked up front with the package that provides each."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError

PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
    "depmod": "kmod",
    "modprobe": "kmod",
    "cpio": "cpio",
    "mkfs.ext4": "e2fsprogs",
    "mkfs.btrfs": "btrfs-progs",
    "mkfs.xfs": "xfsprogs",
    "setpriv": "util-linux",
    "zstd": "zstd",
    "make": "make",
}


def add_sbin_to_path() -> None:
    """mkfs.*, depmod and friends live in /usr/sbin and /sbin, which an unprivileged
    user's PATH on Debian lacks (they run fine without root on image files)."""
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    extra = [d for d in ("/usr/sbin", "/sbin") if d not in dirs]
    if extra:
        os.environ["PATH"] = os.pathsep.join([*dirs, *extra])


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pkgs = " ".join(sorted({PACKAGES.get(t, t) for t in missing}))
        raise HarnessError(f"missing host tool(s) {', '.join(missing)}: apt-get install {pkgs}")


def qcow2_overlay(backing: Path, out: Path, backing_fmt: str = "raw") -> Path:
    """A throwaway qcow2 over `backing`: the guest writes there, the backing stays as is."""
    run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            str(backing.resolve()),
            "-F",
            backing_fmt,
            str(out),
        ],
        f"qemu-img create of an overlay over {backing.name}",
    )
    return out


def as_root(argv: Sequence[str], why: str) -> list[str]:
    """`argv` run as root: as it is when we are root, else through passwordless
    sudo (hosted CI runners: an unprivileged user with sudo, and on Ubuntu 24.04
    no unprivileged user namespaces for mmdebstrap's unshare mode)."""
    if os.geteuid() == 0:
        return list(argv)
    if (
        shutil.which("sudo") is None
        or subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode != 0
    ):
        raise HarnessError(
            f"{why} needs root: run crashtest as root, or give this user "
            "passwordless sudo, or build the images once as root "
            "(sudo make images)"
        )
    require(argv[0])
    return ["sudo", "-n", *argv]


def run(argv: Sequence[str], what: str, timeout: float = 600, cwd: Path | None = None) -> str:
    """Run a host command; on failure raise a HarnessError with its last output line."""
    require(argv[0])
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"{what}: timed out after {timeout:.0f}s") from e
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise HarnessError(f"{what} failed (exit {proc.returncode}): {tail[0]}")
    return proc.stdout
