import hashlib
import logging
import os
import subprocess
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.images.kernel import (
    build_edited_tree,
    build_source_tree,
    bzimage_version,
    ensure_kernel,
    kernel_identity,
    module_name,
    resolve_modules,
    tree_key,
)
from harness.model import SourceEdit

# What kmod's modprobe --show-depends prints for a modular ext4 (Debian's standard
# 6.1 flavour): crc32c comes through ext4's soft dependency, not modules.dep.
SHOW = {
    "ext4": [
        "crypto/crc32c_generic.ko",
        "fs/jbd2/jbd2.ko",
        "fs/mbcache.ko",
        "lib/crc16.ko",
        "fs/ext4/ext4.ko",
    ],
    "xfs": ["crypto/crc32c_generic.ko", "lib/libcrc32c.ko", "fs/xfs/xfs.ko"],
    "pvpanic-pci": ["drivers/misc/pvpanic/pvpanic.ko", "drivers/misc/pvpanic/pvpanic-pci.ko"],
}


def fake_bzimage(path: Path, version: bytes) -> Path:
    data = bytearray(0x1000)
    data[0x202:0x206] = b"HdrS"
    data[0x20E:0x210] = (0x600).to_bytes(2, "little")
    data[0x800 : 0x800 + len(version)] = version
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


def test_modules_resolve_as_modprobe_does_soft_dependencies_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each wanted module's --show-depends list, in order, each file once; a module
    modprobe does not know (built in) is skipped. The real thing: test_vm boots
    Debian's standard (non-cloud) kernel."""
    moddir = tmp_path / "lib" / "modules" / "6.1.0-50-amd64"
    moddir.mkdir(parents=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    lines = "".join(
        f'  {name}) printf "insmod %s/kernel/%s \\n" {" ".join(f"$R {f}" for f in files)};;\n'
        for name, files in SHOW.items()
    )
    (bindir / "modprobe").write_text(
        "#!/bin/sh\n# modprobe --show-depends -d DIR -S KVER NAME\n"
        'R="$3/lib/modules/$5"\n'
        f'case "$6" in\n{lines}  overlay) echo "builtin overlay";;\n'
        '  *) echo "modprobe: FATAL: Module $6 not found" >&2; exit 1;;\nesac\n'
    )
    (bindir / "modprobe").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    order = resolve_modules(moddir, ["pvpanic-pci", "overlay", "nonesuch", "xfs", "ext4"])
    assert [module_name(p) for p in order] == [
        "pvpanic",
        "pvpanic_pci",
        "crc32c_generic",
        "libcrc32c",
        "xfs",
        "jbd2",
        "mbcache",
        "crc16",
        "ext4",
    ]
    assert order[-1] == "kernel/fs/ext4/ext4.ko"


FAKE_MAKEFILE = """\
VERSION = 6
PATCHLEVEL = 15
# Stands in for Kbuild: honours O=, the three targets the harness calls, prints
# kbuild's quiet lines, and leaves the source tree untouched.
defconfig:
\techo CONFIG_DEFAULT=y > $(O)/.config
olddefconfig:
\techo olddefconfig >> $(O)/steps
bzImage:
\t@echo "  CC      fs/a.o"
\t@echo "  CC [M]  fs/b.o"
\t@test -z "$(BROKEN)" || { echo "fs/c.c:1:1: error: expected ';'"; exit 2; }
\t@echo "  LD      vmlinux"
\tmkdir -p $(O)/arch/x86/boot $(O)/fs
\ttouch $(O)/fs/a.o $(O)/fs/b.o
\ttouch $(O)/vmlinux
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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


def test_a_build_shows_files_compiled_elapsed_and_an_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Plain lines (logged) when stdout is no terminal; the first full build of a
    series counts its files, which the next fresh build of that series is measured by."""
    from harness.images import buildlog

    caplog.set_level(logging.INFO, logger="harness")
    monkeypatch.setenv("CRASHTEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(buildlog, "PLAIN_EVERY_S", 0.0)
    tree = fake_tree(tmp_path)
    build_source_tree(tree)
    first = caplog.text
    assert "kernel build 6.15: 1 files compiled, 0.0 min" in first
    assert "kernel build 6.15: 2 files compiled in" in first
    caplog.clear()
    (tree / "Kconfig").write_text("# another tree of the same series\n")
    build_source_tree(tree)
    assert "1 files compiled of about 2, 0.0 min, about 0 min left" in caplog.text


def test_a_tree_that_does_not_build_is_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRASHTEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BROKEN", "1")
    with pytest.raises(
        InputError,
        match=r"kernel build 6\.15 failed \(exit 2\): fs/c\.c:1:1: "
        "error: expected",
    ):
        build_source_tree(fake_tree(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a kernel source tree"):
        ensure_kernel(str(tmp_path / "empty"))


@pytest.mark.parametrize("compress", ["xz", "gzip"])
def test_kernel_identity_reads_the_build_id_inside_the_payload(
    tmp_path: Path, compress: str
) -> None:
    import gzip
    import lzma

    build_id = bytes(range(20))
    config = b"CONFIG_BTRFS_FS=y\n"
    elf = (
        b"\x7fELF"
        + bytes(60)
        + b"\x04\0\0\0\x14\0\0\0\x03\0\0\0GNU\0"
        + build_id
        + b"IKCFG_ST"
        + gzip.compress(config)
        + b"IKCFG_ED"
    )
    payload = lzma.compress(elf, format=lzma.FORMAT_XZ) if compress == "xz" else gzip.compress(elf)
    data = bytearray(fake_bzimage(tmp_path / "k", b"6.16.0 (x@y)\0").read_bytes())
    data[0x1F1] = 3  # setup sectors: the payload offset counts from (3 + 1) * 512
    data[0x248:0x24C] = (0x100).to_bytes(4, "little")
    data[0x24C:0x250] = len(payload).to_bytes(4, "little")
    data = data[: 4 * 512 + 0x100] + payload + b"\0\0\0\0"
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


EDIT_MAKEFILE = """\
defconfig:
\techo CONFIG_DEFAULT=y > $(O)/.config
olddefconfig:
\techo olddefconfig >> $(O)/steps
bzImage:
\tmkdir -p $(O)/arch/x86/boot
\tcat $(CURDIR)/image.bin $(CURDIR)/fs/a.c $(CURDIR)/fs/b.c > $(O)/arch/x86/boot/bzImage
\techo build >> $(O)/steps
"""


def test_edited_trees_build_in_one_working_copy_cached_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRASHTEST_CACHE", str(tmp_path / "cache"))
    tree = fake_tree(tmp_path)
    (tree / "Makefile").write_text(EDIT_MAKEFILE)
    (tree / "fs").mkdir()
    (tree / "fs" / "a.c").write_text("int fixed_a = 1;\n")
    (tree / "fs" / "b.c").write_text("int fixed_b = 1;\n")
    undo_a = (SourceEdit("fs/a.c", "fixed_a = 1", "fixed_a = 0"),)
    undo_b = (SourceEdit("fs/b.c", "fixed_b = 1", "fixed_b = 0"),)
    stock = build_edited_tree(tree, ())
    assert stock.read_bytes().endswith(b"int fixed_a = 1;\nint fixed_b = 1;\n")
    a = build_edited_tree(tree, undo_a)
    assert a.read_bytes().endswith(b"int fixed_a = 0;\nint fixed_b = 1;\n")
    b = build_edited_tree(tree, undo_b)  # a's edit is undone in the working copy first
    assert b.read_bytes().endswith(b"int fixed_a = 1;\nint fixed_b = 0;\n")
    assert (tree / "fs" / "a.c").read_text() == "int fixed_a = 1;\n"  # the tree is untouched
    steps = next((tmp_path / "cache").glob("kwork-*/out/steps"))
    assert steps.read_text().count("build") == 3
    copy = tmp_path / "elsewhere" / "linux"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(tree), str(copy)], check=True)
    assert tree_key(copy) == tree_key(tree)
    assert build_edited_tree(copy, undo_a) == a  # the same content, wherever it is
    assert steps.read_text().count("build") == 3
    (copy / "fs" / "a.c").write_text("int fixed_a = 2;\n")
    assert tree_key(copy) != tree_key(tree)
    with pytest.raises(InputError, match="there 0 times, not once"):
        build_edited_tree(copy, undo_a)


def test_a_modules_directory_without_modules_dep_gets_one_in_the_cache_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian 7.x ships no modules.dep: depmod makes it in a view of the user's
    directory in the cache (links to its files); the user's tree is not written."""
    from harness.images.kernel import modules_with_dep

    monkeypatch.setenv("CRASHTEST_CACHE", str(tmp_path / "cache"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "depmod").write_text(
        '#!/bin/sh\n# depmod -b BASE KVER\nd="$2/lib/modules/$3"\n'
        'ls "$d/kernel" > "$d/modules.dep"\n'
    )
    (bindir / "depmod").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    user = tmp_path / "root" / "usr" / "lib" / "modules" / "7.2.13+deb14-cloud-amd64"
    (user / "kernel" / "fs").mkdir(parents=True)
    (user / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    before = sorted(str(p) for p in user.rglob("*"))
    view = modules_with_dep(user)
    assert view.name == user.name and (view / "modules.dep").read_text() == "fs\n"
    assert (view / "kernel").resolve() == (user / "kernel").resolve()
    assert sorted(str(p) for p in user.rglob("*")) == before
    assert modules_with_dep(user) == view  # cached
    with pytest.raises(InputError, match="not a modules directory"):
        modules_with_dep(tmp_path / "bin")


def test_a_driver_the_guest_needs_that_the_kernel_lacks_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.images import kernel

    moddir = tmp_path / "7.2.13+deb14-cloud-amd64"
    moddir.mkdir()
    (moddir / "modules.builtin").write_text(
        "kernel/drivers/virtio/virtio_pci.ko\n"
        "kernel/drivers/char/virtio_console.ko\n"
        "kernel/fs/ext4/ext4.ko\n"
    )
    wanted = [
        "virtio_pci",
        "virtio_blk",
        "virtio_console",
        "pvpanic-pci",
        "overlay",
        "btrfs",
        "ext4",
    ]
    resolved = ["kernel/fs/btrfs/btrfs.ko.xz", "kernel/fs/overlayfs/overlay.ko.xz"]
    assert kernel.missing_modules(moddir, wanted, resolved) == ["virtio_blk", "pvpanic-pci"]
    assert kernel.missing_modules(tmp_path, wanted, []) == []  # no modules.builtin: can't tell
    monkeypatch.setattr(kernel, "resolve_modules", lambda d, w: resolved)
    with pytest.raises(InputError) as e:
        kernel._write_modules_cpio(moddir, tmp_path / "m.cpio", "KERNEL sid:linux-image-x")
    assert str(e.value) == (
        "KERNEL sid:linux-image-x: the guest needs virtio_blk, neither built "
        "into this kernel nor among its modules"
    )
    assert not (tmp_path / "m.cpio").exists()


def test_every_soft_dependency_line_is_loaded_before_its_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kmod 30's --show-depends follows one softdep line of a module; 6.17's btrfs
    has four, the last (crypto-crc32c) needed to mount."""
    moddir = tmp_path / "6.17.13+deb13-cloud-amd64"
    moddir.mkdir()
    (moddir / "modules.softdep").write_text(
        "# Soft dependencies extracted from modules themselves.\n"
        "softdep btrfs pre: blake2b-256\nsoftdep btrfs pre: crypto-crc32c post: nonesuch\n"
    )
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "modprobe").write_text(
        '#!/bin/sh\nR="$3/lib/modules/$5/kernel"\ncase "$6" in\n'
        '  btrfs) printf "insmod $R/%s \\n" lib/xor.ko blake2b.ko fs/btrfs.ko;;\n'
        '  blake2b-256) echo "insmod $R/blake2b.ko ";;\n'
        '  crypto-crc32c) echo "insmod $R/crc32c-cryptoapi.ko ";;\n  *) exit 1;;\nesac\n'
    )
    (bindir / "modprobe").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    assert resolve_modules(moddir, ["btrfs"]) == [
        "kernel/lib/xor.ko",
        "kernel/blake2b.ko",
        "kernel/crc32c-cryptoapi.ko",
        "kernel/fs/btrfs.ko",
    ]


def test_a_backend_whose_filesystem_the_kernel_lacks_is_named(tmp_path: Path) -> None:
    """The modules a kernel lacks are kept with its bundle; a campaign refuses a
    backend that needs one of them (its filesystem, overlayfs for overlay2)."""
    from harness.images.kernel import KernelBundle, lacks
    from harness.storage.backends import BACKENDS

    (tmp_path / "vmlinuz").write_bytes(b"")
    (tmp_path / "missing-modules").write_text("xfs\npvpanic-pci\n")
    bundle = KernelBundle(tmp_path / "vmlinuz", tmp_path / "modules.cpio", {"version": "7.2"})
    assert BACKENDS["xfs-overlay2"].kernel_modules() == ("xfs", "overlay")
    assert BACKENDS["btrfs"].kernel_modules() == ("btrfs",)
    assert [m for m in BACKENDS["xfs-overlay2"].kernel_modules() if lacks(bundle, m)] == ["xfs"]
    assert not any(lacks(bundle, m) for m in BACKENDS["btrfs"].kernel_modules())
    assert lacks(bundle, "pvpanic_pci")  # names as modprobe spells them, - or _
    (tmp_path / "missing-modules").unlink()
    assert not lacks(bundle, "xfs")  # unknown: the run goes on (and says so at mount)
