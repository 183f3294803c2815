"""Host programs the harness needs, checked up front with the package that provides each."""

from __future__ import annotations

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
    "cpio": "cpio",
    "mkfs.ext4": "e2fsprogs",
    "mkfs.btrfs": "btrfs-progs",
    "mkfs.xfs": "xfsprogs",
    "setpriv": "util-linux",
    "zstd": "zstd",
    "make": "make",
}


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pkgs = " ".join(sorted({PACKAGES.get(t, t) for t in missing}))
        raise HarnessError(f"missing host tool(s) {', '.join(missing)}: apt-get install {pkgs}")


def qcow2_overlay(backing: Path, out: Path, backing_fmt: str = "raw") -> Path:
    """A throwaway qcow2 over `backing`: the guest writes there, the backing stays as is."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing.resolve()),
         "-F", backing_fmt, str(out)], f"qemu-img create of an overlay over {backing.name}")
    return out


def run(
    argv: Sequence[str], what: str, timeout: float = 600, cwd: Path | None = None
) -> str:
    """Run a host command; on failure raise a HarnessError with its last output line."""
    require(argv[0])
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd
        )
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"{what}: timed out after {timeout:.0f}s") from e
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise HarnessError(f"{what} failed (exit {proc.returncode}): {tail[0]}")
    return proc.stdout
