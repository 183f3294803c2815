from pathlib import Path

import pytest

from harness.errors import InputError
from harness.images.kernel import bzimage_version, load_order, module_name, parse_modules_dep

DEP = """kernel/fs/btrfs/btrfs.ko.xz: kernel/crypto/xor.ko.xz kernel/lib/raid6/raid6_pq.ko.xz \
kernel/lib/libcrc32c.ko.xz
kernel/crypto/xor.ko.xz:
kernel/lib/raid6/raid6_pq.ko.xz:
kernel/lib/libcrc32c.ko.xz:
kernel/fs/xfs/xfs.ko.xz: kernel/lib/libcrc32c.ko.xz
kernel/drivers/misc/pvpanic/pvpanic-pci.ko.xz: kernel/drivers/misc/pvpanic/pvpanic.ko.xz
kernel/drivers/misc/pvpanic/pvpanic.ko.xz:
"""


def fake_bzimage(path: Path, version: bytes) -> Path:
    data = bytearray(0x1000)
    data[0x202:0x206] = b"HdrS"
    data[0x20E:0x210] = (0x600).to_bytes(2, "little")
    data[0x800:0x800 + len(version)] = version
    path.write_bytes(bytes(data))
    return path


def test_bzimage_version_from_setup_header(tmp_path: Path) -> None:
    img = fake_bzimage(tmp_path / "bzImage", b"6.13.0-rc1 (dev@box) #1 SMP\0")
    assert bzimage_version(img) == "6.13.0-rc1 (dev@box) #1 SMP"


@pytest.mark.parametrize("content", [b"", b"#!/bin/sh\necho not a kernel\n" * 100])
def test_not_a_kernel_is_input_error(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "notkernel"
    f.write_bytes(content)
    with pytest.raises(InputError, match="not an x86 kernel image"):
        bzimage_version(f)


def test_missing_kernel_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No such file"):
        bzimage_version(tmp_path / "nope")


def test_load_order_puts_dependencies_first_once() -> None:
    deps = parse_modules_dep(DEP)
    order = [module_name(p) for p in load_order(deps, ["pvpanic-pci", "btrfs", "xfs", "ext4"])]
    assert order == ["pvpanic", "pvpanic_pci", "xor", "raid6_pq", "libcrc32c", "btrfs", "xfs"]
