"""Debian's kernels on real guests: the newest (7.x, split into linux-binary,
linux-modules and linux-base packages, no modules.dep) in `make test`; every
series and flavour the nightly runs in `make test-full`."""

import tempfile
from pathlib import Path

import pytest

from harness import hosttools
from harness.images.debian import SERIES, AptIndex, resolve
from harness.images.guest import ensure_images
from harness.images.kernel import ensure_kernel
from harness.model import is_clean
from harness.oracles.check_image import check_image
from harness.storage.backends import BACKENDS, make_test_disk

STORE = {
    "btrfs": "mkdir -p /mnt && mount {dev} /mnt && mkdir -p /mnt/image/btrfs /mnt/btrfs "
    "&& umount /mnt",
    "ext4-overlay2": "mkdir -p /mnt && mount {dev} /mnt && mkdir -p /mnt/image/overlay2 "
    "/mnt/overlay2 && umount /mnt",
}


def checks_clean(kernel: str, backend: str) -> None:
    """A fresh store checked on `kernel`: mount, scrub or fsck, the store walk and the
    console oracle all pass (the kernel's modules loaded, its wording known)."""
    with tempfile.TemporaryDirectory(prefix="crashtest-test-") as td:
        disk = make_test_disk(BACKENDS[backend], Path(td) / "disk.img")
        report = check_image(disk, kernel, before=STORE[backend])
    assert is_clean(report.violations), [(v.check, v.evidence) for v in report.violations]
    assert "Linux version" not in report.console or report.kernel in report.console


def test_sids_split_kernel_from_its_unpacked_packages_boots_and_checks(
    tmp_path: Path, no_leftovers: None
) -> None:
    """The 7.2 packages as a user unpacks them (`dpkg-deb -x`: the image at
    usr/lib/modules/VER/vmlinuz, modules .ko.xz, no modules.dep): KERNEL=.../vmlinuz
    brings its modules directory, modules.dep is made in the cache, the user's tree
    is not written, and the guest boots and checks a btrfs store clean. The same
    build by package name resolves to the same modules."""
    index = AptIndex("sid")
    debs = resolve(index, "linux-image-cloud-amd64")
    assert debs.split and debs.image.startswith("linux-image-7.")
    root = tmp_path / "root"
    for name in debs.fetch:
        deb = index.download(name, tmp_path, debs.version)
        hosttools.run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")
    [vmlinuz] = root.glob("usr/lib/modules/*/vmlinuz")
    assert not (vmlinuz.parent / "modules.dep").exists()
    before = sorted(p.name for p in vmlinuz.parent.iterdir())
    images = ensure_images(str(vmlinuz))
    assert {"btrfs", "xfs", "overlay"} <= set(images.kernel.info["modules"].split())
    assert sorted(p.name for p in vmlinuz.parent.iterdir()) == before
    assert (
        ensure_kernel("sid:linux-image-cloud-amd64").info["modules"]
        == images.kernel.info["modules"]
    )
    checks_clean(str(vmlinuz), "btrfs")


@pytest.mark.full
@pytest.mark.parametrize("flavour", ["cloud-amd64", "amd64"])
@pytest.mark.parametrize("series", sorted(SERIES))
def test_every_series_and_flavour_boots_and_checks(
    series: str, flavour: str, no_leftovers: None
) -> None:
    kernel = SERIES[series].replace("cloud-amd64", flavour)
    for backend in ("btrfs", "ext4-overlay2"):
        checks_clean(kernel, backend)
