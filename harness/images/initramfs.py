"""newc cpio archives for the guest's initramfs.

The kernel unpacks concatenated archives in order, so the kernel bundle
(modules) and the boot part (busybox, init, agent) are built and cached apart
and joined per boot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness import hosttools
from harness.errors import HarnessError
from harness.images.cache import RECIPES, building, cache_root, recipe_digest
from harness.images.rootfs import RootImage

BOOT_FILES = ("init", "stage2")
GUEST_PACKAGE = Path(__file__).resolve().parents[2] / "crashtest_guest"


def cpio_of(tree: Path) -> bytes:
    """Pack a directory as a reproducible newc archive (paths relative to it)."""
    hosttools.require("cpio")
    names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    proc = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0"],
        input="\n".join(names).encode(),
        cwd=tree,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise HarnessError(f"cpio failed: {proc.stderr.decode().strip()}")
    return proc.stdout


def boot_cpio(root: RootImage) -> Path:
    """busybox + stage-1 init + stage-2 + agent, cached by their content."""
    guest = RECIPES / "guest"
    package = sorted(GUEST_PACKAGE.glob("*.py"))
    digest = recipe_digest("boot-v2", root.busybox, *(guest / f for f in BOOT_FILES), *package)
    final = cache_root() / f"boot-{digest}"
    if not (final / "boot.cpio").exists():
        with building(final) as tmp, tempfile.TemporaryDirectory() as td:
            tree = Path(td)
            for d in ("bin", "dev", "proc", "sys", "crashtest"):
                (tree / d).mkdir()
            shutil.copy2(root.busybox, tree / "bin/busybox")
            shutil.copy2(guest / "init", tree / "init")
            shutil.copy2(guest / "stage2", tree / "crashtest" / "stage2")
            (tree / "crashtest" / GUEST_PACKAGE.name).mkdir()
            for f in package:
                shutil.copy2(f, tree / "crashtest" / GUEST_PACKAGE.name / f.name)
            for exe in ("init", "bin/busybox", "crashtest/stage2"):
                (tree / exe).chmod(0o755)
            (tmp / "boot.cpio").write_bytes(cpio_of(tree))
    return final / "boot.cpio"


def join(parts: list[Path], out: Path) -> Path:
    with out.open("wb") as f:
        for p in parts:
            f.write(p.read_bytes())
    os.chmod(out, 0o644)
    return out
