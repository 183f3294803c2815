import hashlib
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.images.kernel import (
    build_source_tree,
    bzimage_version,
    ensure_kernel,
    kernel_identity,
    load_order,
    module_name,
    parse_modules_dep,
)

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


FAKE_MAKEFILE = """\
# Stands in for Kbuild: honours O=, the three targets the harness calls, and
# leaves the source tree untouched.
defconfig:
\techo CONFIG_DEFAULT=y > $(O)/.config
olddefconfig:
\techo olddefconfig >> $(O)/steps
bzImage:
\ttest -z "$(BROKEN)"
\tmkdir -p $(O)/arch/x86/boot
\tcp $(CURDIR)/image.bin $(O)/arch/x86/boot/bzImage
\techo build >> $(O)/steps
"""
FAKE_MERGE = """#!/bin/sh
# merge_config.sh -m -O DIR BASE FRAGMENT
cat "$5" >> "$3/.config"
"""


def fake_tree(root: Path) -> Path:
    tree = root / "linux"
    (tree / "scripts" / "kconfig").mkdir(parents=True)
    (tree / "Makefile").write_text(FAKE_MAKEFILE)
    (tree / "Kconfig").write_text("# fake\n")
    merge = tree / "scripts" / "kconfig" / "merge_config.sh"
    merge.write_text(FAKE_MERGE)
    merge.chmod(0o755)
    fake_bzimage(tree / "image.bin", b"6.15.0-dev (me@box) #1 SMP\0")
    return tree


def test_source_tree_is_built_out_of_tree_with_the_fragment_and_cached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRASHTEST_CACHE", str(tmp_path / "cache"))
    tree = fake_tree(tmp_path)
    before = sorted(p.name for p in tree.rglob("*"))
    bundle = ensure_kernel(str(tree))
    assert bundle.version == "6.15.0-dev"
    out = build_source_tree(tree).parents[3]
    config = (out / ".config").read_text()
    assert "CONFIG_DEFAULT=y" in config and "CONFIG_BTRFS_FS=y" in config
    assert "CONFIG_VIRTIO_BLK=y" in config
    assert (out / "steps").read_text().count("build") == 1  # the second call hit the cache
    assert sorted(p.name for p in tree.rglob("*")) == before  # the tree stays clean


def test_a_tree_that_does_not_build_is_input_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRASHTEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BROKEN", "1")
    with pytest.raises(InputError, match="make bzImage failed"):
        build_source_tree(fake_tree(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a kernel source tree"):
        ensure_kernel(str(tmp_path / "empty"))


@pytest.mark.parametrize("compress", ["xz", "gzip"])
def test_kernel_identity_reads_the_build_id_inside_the_payload(tmp_path: Path,
                                                               compress: str) -> None:
    import gzip
    import lzma

    build_id = bytes(range(20))
    config = b"CONFIG_BTRFS_FS=y\n"
    elf = (b"\x7fELF" + bytes(60) + b"\x04\0\0\0\x14\0\0\0\x03\0\0\0GNU\0" + build_id
           + b"IKCFG_ST" + gzip.compress(config) + b"IKCFG_ED")
    payload = lzma.compress(elf, format=lzma.FORMAT_XZ) if compress == "xz" else \
        gzip.compress(elf)
    data = bytearray(fake_bzimage(tmp_path / "k", b"6.16.0 (x@y)\0").read_bytes())
    data[0x1F1] = 3  # setup sectors: the payload offset counts from (3 + 1) * 512
    data[0x248:0x24C] = (0x100).to_bytes(4, "little")
    data[0x24C:0x250] = len(payload).to_bytes(4, "little")
    data = data[:4 * 512 + 0x100] + payload + b"\0\0\0\0"
    (tmp_path / "k").write_bytes(bytes(data))
    ident = kernel_identity(tmp_path / "k")
    assert ident["build_id"] == build_id.hex()
    assert ident["embedded_config_sha256"] == hashlib.sha256(config).hexdigest()
    assert kernel_identity(fake_bzimage(tmp_path / "plain", b"6.16\0")) == {"build_id": "unknown"}


def test_a_pinned_kernel_build_the_archive_lacks_says_how_to_supply_it() -> None:
    """Bundles pin `suite:package=version`; when Debian has moved on, the error says
    what the archive has and how to pass the file instead (apt here, no guest)."""
    from harness.errors import InputError
    from harness.images.kernel import ensure_kernel
    with pytest.raises(InputError) as e:
        ensure_kernel("trixie:linux-image-cloud-amd64=0.0.1-1")
    msg = str(e.value)
    assert "no longer has this build (it has: " in msg
    assert "snapshot.debian.org" in msg and "--kernel-modules" in msg
