"""Kernel bundles: a kernel image plus an initramfs part holding only the
modules the harness needs, from a Debian kernel package or a user's bzImage."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import hosttools
from harness.errors import HarnessError, InputError
from harness.images.cache import RECIPES, building, cache_root, read_list, recipe_digest
from harness.images.initramfs import cpio_of
from harness.model import SourceEdit

DEFAULT_KERNEL = "trixie:linux-image-cloud-amd64"
MIRROR = "http://deb.debian.org/debian"
SUITES = ("trixie", "bookworm", "bookworm-backports")
APT_LISTS_MAX_AGE_S = 24 * 3600


@dataclass(frozen=True)
class KernelBundle:
    vmlinuz: Path
    modules_cpio: Path
    info: dict[str, str]

    @property
    def version(self) -> str:
        return self.info["version"]


def ensure_kernel(spec: str | None, modules_dir: str | None = None) -> KernelBundle:
    """Resolve KERNEL (a Debian package, `suite:package`, `suite:package=version`
    (exactly that build: bundles pin it), a bzImage path, or a kernel source tree)."""
    spec = spec or DEFAULT_KERNEL
    path = Path(spec)
    if path.is_dir():
        return _from_bzimage(build_source_tree(path), None)
    if "/" in spec or path.exists():
        return _from_bzimage(path, Path(modules_dir) if modules_dir else None)
    suite, _, package = spec.rpartition(":")
    package, _, version = package.partition("=")
    return _from_debian(suite or "trixie", package, version)


# ---------------------------------------------------------------- source tree

CONFIG_FRAGMENT = RECIPES / "kernel.config"
BUILD_TIMEOUT_S = 4 * 3600


def tree_key(tree: Path) -> str:
    """What the tree holds, wherever it is: its git revision plus any uncommitted
    change, else every file's path, size and mtime (a copy made with `cp -a`, or
    the same tarball unpacked elsewhere, has the same key)."""
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--show-toplevel", "HEAD"],
                          capture_output=True, text=True, check=False)
    lines = head.stdout.split()
    if head.returncode == 0 and len(lines) == 2 and Path(lines[0]) == tree.resolve():
        diff = subprocess.run(["git", "-C", str(tree), "diff", "HEAD"], capture_output=True,
                              check=False).stdout
        return "git:" + lines[1] + ":" + hashlib.sha256(diff).hexdigest()
    h = hashlib.sha256()
    for root, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            path = os.path.join(root, name)
            st = os.lstat(path)
            h.update(f"{os.path.relpath(path, tree)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "files:" + h.hexdigest()


def check_tree(tree: Path, name: str = "KERNEL") -> None:
    """A kernel source tree, or an InputError naming the make variable `name`."""
    if not (tree / "Makefile").is_file() or not (tree / "Kconfig").is_file():
        raise InputError(f"{name} {tree}: not a kernel source tree (no Makefile and "
                         "Kconfig)")
    hosttools.require("make")  # the build names any other missing tool itself


def _make_bzimage(src: Path, out: Path) -> Path:
    """defconfig + images/kernel.config, then bzImage, out of tree in `out`; make
    rebuilds only what changed since the last build there."""
    out.mkdir(parents=True, exist_ok=True)
    make = ["make", "-C", str(src.resolve()), f"O={out}", "ARCH=x86_64"]
    steps = [
        ([*make, "defconfig"], "make defconfig"),
        ([str(src.resolve() / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(out),
          str(out / ".config"), str(CONFIG_FRAGMENT)], "merging images/kernel.config"),
        ([*make, "olddefconfig"], "make olddefconfig"),
        ([*make, f"-j{os.cpu_count() or 1}", "bzImage"], "make bzImage"),
    ]
    for argv, what in steps:
        try:
            hosttools.run(argv, f"kernel build: {what}", timeout=BUILD_TIMEOUT_S)
        except HarnessError as e:
            raise InputError(str(e)) from e
    image = out / "arch" / "x86" / "boot" / "bzImage"
    if not image.exists():
        raise InputError(f"KERNEL {src}: the build made no arch/x86/boot/bzImage")
    return image


def build_source_tree(tree: Path) -> Path:
    """Build a bzImage out of tree (the source stays clean, so `git bisect` can move
    it): defconfig + images/kernel.config, everything needed built in. Cached per
    tree_key; a tree that does not build is an InputError (bisect: skip it)."""
    check_tree(tree)
    out = cache_root() / f"kbuild-{recipe_digest('src-v2', tree_key(tree), CONFIG_FRAGMENT)}"
    image = out / "arch" / "x86" / "boot" / "bzImage"
    if image.exists():
        return image
    print(f"crashtest: building the kernel in {tree} (out of tree: {out})", flush=True)
    return _make_bzimage(tree, out)


def apply_edits(src: Path, edits: tuple[SourceEdit, ...], dry_run: bool = False) -> None:
    """Each edit's `old` text, found exactly once in its file, becomes `new` (in
    order: a later edit sees the earlier ones). `dry_run`: only check that they
    would apply."""
    texts: dict[str, str] = {}
    for e in edits:
        if e.path not in texts:
            try:
                texts[e.path] = (src / e.path).read_text()
            except OSError as err:
                raise InputError(f"edit {e.path}: {err.strerror} in {src}") from err
        found = texts[e.path].count(e.old)
        if found != 1:
            first = e.old.strip().splitlines()[0] if e.old.strip() else e.old
            raise InputError(f"edit {e.path}: the text to replace ({first.strip()!r}...) is "
                             f"there {found} times, not once, in {src}: not the tree the edit "
                             "was written for")
        texts[e.path] = texts[e.path].replace(e.old, e.new)
    if not dry_run:
        for rel, text in texts.items():
            (src / rel).write_text(text)


# Debian's linux-source package the corpus edits were written for.
LINUX_SOURCE = "linux-source-6.12"
LINUX_SOURCE_VERSION = "6.12.117-1"
HOST_SOURCE = Path("/usr/src") / f"{LINUX_SOURCE}.tar.xz"


def linux_source_tarball() -> Path:
    """The tarball of Debian's linux-source-6.12 at the corpus's version: the
    host's (the installed package) when it is that version, else downloaded from
    Debian's trixie into the cache once."""
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Version}", LINUX_SOURCE],
                               capture_output=True, text=True, check=False).stdout
    upstream = LINUX_SOURCE_VERSION.split("-")[0]
    if HOST_SOURCE.is_file() and installed.startswith(upstream + "-"):
        return HOST_SOURCE
    final = cache_root() / f"{LINUX_SOURCE}-{LINUX_SOURCE_VERSION}"
    tarball = final / "usr" / "src" / HOST_SOURCE.name
    if tarball.is_file():
        return tarball
    hosttools.require("apt-get", "apt-cache", "dpkg-deb")
    apt = _Apt("trixie")
    if LINUX_SOURCE_VERSION not in apt.versions(LINUX_SOURCE):
        have = ", ".join(apt.versions(LINUX_SOURCE)) or "none"
        raise InputError(f"{LINUX_SOURCE}={LINUX_SOURCE_VERSION}: Debian's trixie no longer "
                         f"has it (it has: {have}); unpack that tree yourself and pass it "
                         "as TREE")
    print(f"crashtest: fetching {LINUX_SOURCE} {LINUX_SOURCE_VERSION} (150 MB)", flush=True)
    with building(final) as tmp, tempfile.TemporaryDirectory() as td:
        deb = apt.download(LINUX_SOURCE, Path(td), LINUX_SOURCE_VERSION)
        hosttools.run(["dpkg-deb", "-x", str(deb), str(tmp)], f"unpacking {deb.name}")
    return tarball


def linux_source_tree() -> Path:
    """Debian's linux-source-6.12 (the corpus's version), unpacked once into the
    cache; its files keep the tarball's mtimes, so its tree_key is the same on
    every machine."""
    tarball = linux_source_tarball()
    final = cache_root() / f"{LINUX_SOURCE}-{LINUX_SOURCE_VERSION}-tree"
    if not (final / LINUX_SOURCE / "Makefile").is_file():
        with building(final) as tmp:
            print(f"crashtest: unpacking {tarball}", flush=True)
            hosttools.run(["tar", "-xJf", str(tarball), "-C", str(tmp)],
                          f"unpacking {tarball.name}", timeout=1800)
    return final / LINUX_SOURCE


def edits_digest(edits: tuple[SourceEdit, ...]) -> str:
    return recipe_digest(json.dumps([[e.path, e.old, e.new] for e in edits]))


def build_edited_tree(tree: Path, edits: tuple[SourceEdit, ...]) -> Path:
    """A bzImage of `tree` with `edits` applied (none: the tree as it is), cached per
    tree_key and edits. The edits are made in one working copy of the tree kept in
    the cache (the user's tree stays clean) and built in one output directory, so
    each edit after the first build costs the files it touches and a relink."""
    check_tree(tree)
    base = tree_key(tree)
    digest = recipe_digest("edit-v1", base, edits_digest(edits), CONFIG_FRAGMENT)
    final = cache_root() / f"kbuild-edit-{digest}"
    if (final / "bzImage").exists():
        return final / "bzImage"
    work = cache_root() / f"kwork-{recipe_digest('work-v1', base)}"
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build in a working copy at a time
        if (final / "bzImage").exists():
            return final / "bzImage"
        src = work / "src"
        if not (src / "Makefile").exists():
            print(f"crashtest: copying {tree} to a working copy ({src})", flush=True)
            tmp = work / "src.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(tree, tmp, symlinks=True, ignore=shutil.ignore_patterns(".git"))
            tmp.rename(src)
        # Undo the last build's edits first; a plain copy gives the file a new mtime,
        # so make rebuilds it.
        edited_list = work / "edited.json"
        edited = json.loads(edited_list.read_text()) if edited_list.exists() else []
        for rel in edited:
            shutil.copyfile(tree / rel, src / rel)
        edited_list.write_text(json.dumps(sorted({e.path for e in edits})) + "\n")
        apply_edits(src, edits)
        print(f"crashtest: building {tree}" + (f" with {len(edits)} edit(s)" if edits else "")
              + f" (out of tree: {work / 'out'})", flush=True)
        image = _make_bzimage(src, work / "out")
        with building(final) as t:
            shutil.copy2(image, t / "bzImage")
            (t / "edits.json").write_text(json.dumps(
                {"tree_key": base, "edits": [[e.path, e.old, e.new] for e in edits]},
                indent=1) + "\n")
    return final / "bzImage"


# ---------------------------------------------------------------- bzImage


def bzimage_version(path: Path) -> str:
    """The version string an x86 boot image carries in its setup header."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"KERNEL {path}: {e.strerror}") from e
    if len(data) < 0x210 or data[0x202:0x206] != b"HdrS":
        raise InputError(f"KERNEL {path}: not an x86 kernel image (no HdrS boot header)")
    offset = int.from_bytes(data[0x20E:0x210], "little") + 0x200
    raw = data[offset:offset + 256].split(b"\0", 1)[0]
    return raw.decode("ascii", "replace").strip() or "unknown"


def _from_bzimage(path: Path, modules_dir: Path | None) -> KernelBundle:
    version_line = bzimage_version(path)
    version = version_line.split()[0]
    kernel_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if modules_dir is not None and not (modules_dir / "modules.dep").exists():
        raise InputError(f"KERNEL_MODULES {modules_dir}: no modules.dep (run depmod)")
    mod_key = str(modules_dir.resolve()) if modules_dir else "builtin"
    digest = recipe_digest("bz-v2", kernel_sha, mod_key, RECIPES / "initramfs.modules")
    final = cache_root() / f"kernel-bz-{digest}"
    if not (final / "kernel.json").exists():
        with building(final) as tmp:
            shutil.copy2(path, tmp / "vmlinuz")
            loaded = _write_modules_cpio(modules_dir, tmp / "modules.cpio")
            info = {
                "version": version, "version_line": version_line, "source": str(path),
                "sha256": kernel_sha, "modules": " ".join(loaded),
            }
            (tmp / "kernel.json").write_text(json.dumps(info, indent=1) + "\n")
    return _load(final)


# ---------------------------------------------------------------- Debian packages


class _Apt:
    """A private apt state for one suite, so the host's own apt setup is untouched."""

    def __init__(self, suite: str) -> None:
        if suite not in SUITES:
            raise InputError(f"KERNEL suite {suite!r}: choose one of {', '.join(SUITES)}")
        self.root = cache_root() / f"apt-{suite}"
        for d in ("lists/partial", "cache/archives/partial"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        base = suite.split("-")[0]
        lines = [f"deb {MIRROR} {suite} main"]
        if suite != base:  # backports needs its base suite for dependencies
            lines.append(f"deb {MIRROR} {base} main")
        (self.root / "sources.list").write_text("\n".join(lines) + "\n")
        self.opts = [
            f"-oDir::Etc::SourceList={self.root}/sources.list", "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={self.root}/lists", f"-oDir::Cache={self.root}/cache",
            "-oDir::State::status=/dev/null", "-oAPT::Architecture=amd64",
            "-oAPT::Sandbox::User=root", "-oDebug::NoLocking=1",
        ]
        stamp = self.root / "lists" / ".updated"
        if not stamp.exists() or time.time() - stamp.stat().st_mtime > APT_LISTS_MAX_AGE_S:
            hosttools.run(["apt-get", *self.opts, "-qq", "update"], f"apt-get update ({suite})")
            stamp.touch()

    def field(self, package: str, name: str) -> str:
        proc = subprocess.run(
            ["apt-cache", *self.opts, "show", "--no-all-versions", package],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            raise InputError(f"KERNEL {package}: no such Debian package")
        m = re.search(rf"^{name}: (.*)$", proc.stdout, re.M)
        return m.group(1).strip() if m else ""

    def versions(self, package: str) -> list[str]:
        proc = subprocess.run(["apt-cache", *self.opts, "show", package], capture_output=True,
                              text=True, check=False)
        return re.findall(r"^Version: (.*)$", proc.stdout, re.M)

    def download(self, package: str, dest: Path, version: str = "") -> Path:
        want = f"{package}={version}" if version else package
        hosttools.run(["apt-get", *self.opts, "-qq", "download", want],
                      f"download {want}", cwd=dest)
        debs = sorted(dest.glob(f"{package}_*.deb"))
        if not debs:
            raise HarnessError(f"download {package}: no .deb appeared")
        return debs[-1]


def _from_debian(suite: str, package: str, pinned: str = "") -> KernelBundle:
    hosttools.require("apt-get", "apt-cache", "dpkg-deb", "depmod", "cpio")
    apt = _Apt(suite)
    # A metapackage (linux-image-cloud-amd64) points at the versioned image package.
    for _ in range(3 if not pinned else 0):
        real = re.findall(r"\b(linux-image-[0-9][^\s,|(]*)", apt.field(package, "Depends"))
        if not real:
            break
        package = real[0]
    version = pinned or apt.field(package, "Version")
    if pinned and pinned not in apt.versions(package):
        have = ", ".join(apt.versions(package)) or "none"
        raise InputError(
            f"KERNEL {suite}:{package}={pinned}: Debian's {suite} archive no longer has this "
            f"build (it has: {have}); fetch {package}_{pinned}_amd64.deb (e.g. from "
            "snapshot.debian.org), unpack it with dpkg-deb -x, and pass its boot/vmlinuz-* as "
            "--kernel and its lib/modules/VERSION as --kernel-modules")
    digest = recipe_digest("deb-v2", package, version, RECIPES / "initramfs.modules")
    final = cache_root() / f"kernel-{package}-{digest}"
    if not (final / "kernel.json").exists():
        print(f"crashtest: fetching kernel {package} {version} ({suite})", flush=True)
        with building(final) as tmp, tempfile.TemporaryDirectory() as td:
            work = Path(td)
            deb = apt.download(package, work, version)
            tree = work / "x"
            hosttools.run(["dpkg-deb", "-x", str(deb), str(tree)], f"unpacking {deb.name}")
            vmlinuz = sorted(tree.glob("boot/vmlinuz-*"))
            if not vmlinuz:
                raise InputError(f"KERNEL {package}: package has no /boot/vmlinuz")
            kver = vmlinuz[0].name[len("vmlinuz-"):]
            moddir = _modules_dir(tree, kver)
            shutil.copy2(vmlinuz[0], tmp / "vmlinuz")
            loaded = _write_modules_cpio(moddir, tmp / "modules.cpio")
            config = next(iter(tree.glob("boot/config-*")), None)
            info = {
                "version": kver, "source": f"{suite}:{package}={version}",
                "sha256": hashlib.sha256(vmlinuz[0].read_bytes()).hexdigest(),
                "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest() if config else "",
                "modules": " ".join(loaded),
            }
            (tmp / "kernel.json").write_text(json.dumps(info, indent=1) + "\n")
    return _load(final)


def _modules_dir(tree: Path, kver: str) -> Path:
    for cand in (tree / "usr/lib/modules" / kver, tree / "lib/modules" / kver):
        if cand.is_dir():
            # Debian ships no modules.dep: depmod computes it from the files.
            base = cand.parents[1]
            (base / "lib").mkdir(exist_ok=True)
            if not (base / "lib/modules").exists():
                (base / "lib/modules").symlink_to(cand.parent)
            hosttools.run(["depmod", "-b", str(base), kver], "depmod of the kernel modules")
            return cand
    raise InputError(f"kernel {kver}: package has no modules directory")


# ---------------------------------------------------------------- modules


def module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base).replace("-", "_")


def parse_show_depends(text: str, root: str) -> list[str]:
    """`modprobe --show-depends` output -> module paths relative to the modules
    directory `root`, in load order (`builtin` lines name nothing to load)."""
    paths = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "insmod":
            paths.append(os.path.relpath(parts[1], root))
    return paths


def resolve_modules(moddir: Path, wanted: list[str]) -> list[str]:
    """Module paths (relative to `moddir`) to insmod, in order, each once: what
    kmod's `modprobe --show-depends` lists for each wanted module, so hard and soft
    dependencies (ext4's crc32c, which a modular ext4 needs) come as modprobe would
    load them, whatever the flavour. Built-in or absent modules are skipped."""
    hosttools.require("modprobe")
    kver = moddir.name
    order: list[str] = []
    with tempfile.TemporaryDirectory() as td:
        root = Path(td) / "lib" / "modules" / kver
        root.parent.mkdir(parents=True)
        root.symlink_to(moddir.resolve())
        for name in wanted:
            proc = subprocess.run(["modprobe", "--show-depends", "-d", td, "-S", kver, name],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                continue  # not a module of this kernel: built in, or not there at all
            order += [p for p in parse_show_depends(proc.stdout, str(root)) if p not in order]
    return order


def _decompress(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        hosttools.require("zstd")
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def _write_modules_cpio(moddir: Path | None, out: Path) -> list[str]:
    wanted = read_list(RECIPES / "initramfs.modules")
    with tempfile.TemporaryDirectory() as td:
        tree = Path(td)
        (tree / "modules").mkdir()
        order: list[str] = []
        if moddir is not None:
            for p in resolve_modules(moddir, wanted):
                name = module_name(p) + ".ko"
                (tree / "modules" / name).write_bytes(_decompress(moddir / p))
                order.append(name)
        (tree / "modules.order").write_text("\n".join(order) + "\n")
        out.write_bytes(cpio_of(tree))
    return [o.removesuffix(".ko") for o in order]


def _load(final: Path) -> KernelBundle:
    info = json.loads((final / "kernel.json").read_text())
    if info.get("identity") != IDENTITY_VERSION:  # cached before this reader: read it once
        info.update(kernel_identity(final / "vmlinuz"), identity=IDENTITY_VERSION)
        (final / "kernel.json").write_text(json.dumps(info, indent=1) + "\n")
    return KernelBundle(final / "vmlinuz", final / "modules.cpio", info)


# ---------------------------------------------------------------- identity

IDENTITY_VERSION = 2  # bump when kernel_identity learns to read more kernels

_PAYLOAD_MAGIC = {b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ": "xz", b"\x1f\x8b": "gzip",
                  b"\x02\x21\x4c\x18": "lz4"}
_BUILD_ID_NOTE = re.compile(rb"\x04\0\0\0\x14\0\0\0\x03\0\0\0GNU\0(.{20})", re.S)


def _vmlinux(vmlinuz: Path) -> bytes:
    """The ELF kernel inside an x86 bzImage (its compressed payload), or b""."""
    data = vmlinuz.read_bytes()
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        return b""
    setup = ((data[0x1F1] or 4) + 1) * 512
    offset = int.from_bytes(data[0x248:0x24C], "little")
    length = int.from_bytes(data[0x24C:0x250], "little")
    payload = data[setup + offset:setup + offset + length]
    kind = next((k for m, k in _PAYLOAD_MAGIC.items() if payload.startswith(m)), "")
    try:
        if kind == "xz":
            return lzma.LZMADecompressor().decompress(payload)
        if kind == "gzip":
            return gzip.GzipFile(fileobj=io.BytesIO(payload)).read()
        if kind in ("zstd", "lz4") and shutil.which(kind):
            # The kernel appends the uncompressed size: the tool then exits 1 after the data.
            return subprocess.run([kind, "-dc"], input=payload, capture_output=True,
                                  check=False).stdout
    except (lzma.LZMAError, OSError, EOFError):
        return b""
    return b""


def kernel_identity(vmlinuz: Path) -> dict[str, str]:
    """GNU build id of the kernel, and the hash of its embedded config (IKCONFIG) if any."""
    elf = _vmlinux(vmlinuz)
    m = _BUILD_ID_NOTE.search(elf) if elf.startswith(b"\x7fELF") else None
    out = {"build_id": m.group(1).hex() if m else "unknown"}
    start, end = elf.find(b"IKCFG_ST"), elf.find(b"IKCFG_ED")
    if 0 <= start < end:
        try:
            config = gzip.decompress(elf[start + 8:end])
            out["embedded_config_sha256"] = hashlib.sha256(config).hexdigest()
        except (OSError, EOFError):
            pass
    return out
