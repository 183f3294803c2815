"""Guest images: root disk, kernel bundle and the initramfs that joins them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.images.cache import cache_root, recipe_digest
from harness.images.initramfs import boot_cpio, join
from harness.images.kernel import KernelBundle, ensure_kernel
from harness.images.rootfs import DEFAULT_SUITE, RootImage, ensure_rootfs


@dataclass(frozen=True)
class GuestImages:
    root: RootImage
    kernel: KernelBundle
    initrd: Path


def ensure_images(
    kernel: str | None = None, kernel_modules: str | None = None, suite: str = DEFAULT_SUITE
) -> GuestImages:
    """Build (or find in the cache) everything a guest boots from."""
    root = ensure_rootfs(suite)
    bundle = ensure_kernel(kernel, kernel_modules)
    boot = boot_cpio(root)
    initrd = cache_root() / f"initrd-{recipe_digest(bundle.modules_cpio, boot)}.cpio"
    if not initrd.exists():
        tmp = initrd.with_suffix(".tmp")
        join([bundle.modules_cpio, boot], tmp).rename(initrd)
    return GuestImages(root, bundle, initrd)
