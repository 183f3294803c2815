"""Kernel bundles: a kernel image plus an initramfs part holding only the
modules the harness needs, from a Debian kernel package or a user's bzImage."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import hosttools
from harness.errors import HarnessError, InputError
from harness.images.buildlog import expected_files, remember_files, run_build, tree_series
from harness.images.cache import RECIPES, building, cache_root, read_list, recipe_digest
from harness.images.debian import DEFAULT_SUITE, AptIndex, check_suite, resolve
from harness.images.initramfs import cpio_of
from harness.model import SourceEdit

log = logging.getLogger(__name__)

DEFAULT_KERNEL = "trixie:linux-image-cloud-amd64"


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
    (exactly that build: bundles pin it), a bzImage path, or a kernel source tree).
    A Debian 7.x image at `.../lib/modules/VER/vmlinuz` brings its modules
    directory along unless KERNEL_MODULES names one."""
    spec = spec or DEFAULT_KERNEL
    path = Path(spec)
    if path.is_dir():
        return _from_bzimage(build_source_tree(path), None)
    if "/" in spec or path.exists():
        mods = Path(modules_dir) if modules_dir else None
        if mods is None and path.name == "vmlinuz" and (path.parent / "kernel").is_dir():
            mods = path.parent
        return _from_bzimage(path, mods)
    suite, _, package = spec.rpartition(":")
    package, _, version = package.partition("=")
    return _from_debian(check_suite(suite or DEFAULT_SUITE), package, version)


# ---------------------------------------------------------------- source tree

CONFIG_FRAGMENT = RECIPES / "kernel.config"
BUILD_TIMEOUT_S = 4 * 3600


def tree_key(tree: Path) -> str:
    """What the tree holds, wherever it is: its git revision plus any uncommitted
    change, else every file's path, size and mtime (a copy made with `cp -a`, or
    the same tarball unpacked elsewhere, has the same key)."""
    head = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--show-toplevel", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = head.stdout.split()
    if head.returncode == 0 and len(lines) == 2 and Path(lines[0]) == tree.resolve():
        diff = subprocess.run(
            ["git", "-C", str(tree), "diff", "HEAD"], capture_output=True, check=False
        ).stdout
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
        raise InputError(f"{name} {tree}: not a kernel source tree (no Makefile and Kconfig)")
    hosttools.require("make")  # the build names any other missing tool itself


def _make_bzimage(src: Path, out: Path) -> Path:
    """defconfig + images/kernel.config, then bzImage, out of tree in `out`; make
    rebuilds only what changed since the last build there. The compile shows its
    progress against the files the last full build of this series compiled."""
    fresh = not (out / "vmlinux").exists()
    out.mkdir(parents=True, exist_ok=True)
    make = ["make", "-C", str(src.resolve()), f"O={out}", "ARCH=x86_64"]
    steps = [
        ([*make, "defconfig"], "make defconfig"),
        (
            [
                str(src.resolve() / "scripts/kconfig/merge_config.sh"),
                "-m",
                "-O",
                str(out),
                str(out / ".config"),
                str(CONFIG_FRAGMENT),
            ],
            "merging images/kernel.config",
        ),
        ([*make, "olddefconfig"], "make olddefconfig"),
    ]
    try:
        for argv, what in steps:
            hosttools.run(argv, f"kernel build: {what}", timeout=BUILD_TIMEOUT_S)
        key = f"{tree_series(src)}:{recipe_digest(CONFIG_FRAGMENT)}"
        label = f"kernel build {tree_series(src) or src.name}"
        done = run_build(
            [*make, f"-j{os.cpu_count() or 1}", "bzImage"],
            label,
            BUILD_TIMEOUT_S,
            expected_files(key) if fresh else 0,
        )
        if fresh:  # every object there, also those an interrupted earlier run compiled
            remember_files(key, sum(1 for _ in out.rglob("*.o")) or done)
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
    log.info(f"building the kernel in {tree} (out of tree: {out})")
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
            raise InputError(
                f"edit {e.path}: the text to replace ({first.strip()!r}...) is "
                f"there {found} times, not once, in {src}: not the tree the edit "
                "was written for"
            )
        texts[e.path] = texts[e.path].replace(e.old, e.new)
    if not dry_run:
        for rel, text in texts.items():
            (src / rel).write_text(text)


@dataclass(frozen=True)
class LinuxSource:
    """A Debian linux-source package the corpus's edits were written for."""

    series: str
    version: str
    suite: str

    @property
    def package(self) -> str:
        return f"linux-source-{self.series}"


# The corpus's default tree first; `make known-bugs SERIES=7.2` takes the other.
LINUX_SOURCES = {
    s.series: s
    for s in (LinuxSource("6.12", "6.12.117-1", "trixie"), LinuxSource("7.2", "7.2.13-1", "sid"))
}
DEFAULT_SOURCE = "6.12"


def linux_source_tarball(series: str = DEFAULT_SOURCE) -> Path:
    """The tarball of Debian's linux-source-SERIES at the corpus's version: the
    host's (the installed package) when it is that version, else downloaded from
    its Debian suite into the cache once."""
    src = LINUX_SOURCES[series]
    host = Path("/usr/src") / f"{src.package}.tar.xz"
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", src.package],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    if host.is_file() and installed.startswith(src.version.split("-")[0] + "-"):
        return host
    final = cache_root() / f"{src.package}-{src.version}"
    tarball = final / "usr" / "src" / host.name
    if tarball.is_file():
        return tarball
    hosttools.require("apt-get", "apt-cache", "dpkg-deb")
    apt = AptIndex(src.suite)
    if src.version not in apt.versions(src.package):
        have = ", ".join(apt.versions(src.package)) or "none"
        raise InputError(
            f"{src.package}={src.version}: Debian's {src.suite} no longer has it "
            f"(it has: {have}); unpack that tree yourself and pass it as TREE"
        )
    log.info(f"fetching {src.package} {src.version} (150 MB)")
    with building(final) as tmp, tempfile.TemporaryDirectory() as td:
        deb = apt.download(src.package, Path(td), src.version)
        hosttools.run(["dpkg-deb", "-x", str(deb), str(tmp)], f"unpacking {deb.name}")
    return tarball


def linux_source_tree(series: str = DEFAULT_SOURCE) -> Path:
    """Debian's linux-source-SERIES (the corpus's version), unpacked once into the
    cache; its files keep the tarball's mtimes, so its tree_key is the same on
    every machine."""
    src = LINUX_SOURCES[series]
    tarball = linux_source_tarball(series)
    final = cache_root() / f"{src.package}-{src.version}-tree"
    if not (final / src.package / "Makefile").is_file():
        with building(final) as tmp:
            log.info(f"unpacking {tarball}")
            hosttools.run(
                ["tar", "-xJf", str(tarball), "-C", str(tmp)],
                f"unpacking {tarball.name}",
                timeout=1800,
            )
    return final / src.package


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
            log.info(f"copying {tree} to a working copy ({src})")
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
        log.info(
            f"building {tree}"
            + (f" with {len(edits)} edit(s)" if edits else "")
            + f" (out of tree: {work / 'out'})"
        )
        image = _make_bzimage(src, work / "out")
        with building(final) as t:
            shutil.copy2(image, t / "bzImage")
            (t / "edits.json").write_text(
                json.dumps(
                    {"tree_key": base, "edits": [[e.path, e.old, e.new] for e in edits]}, indent=1
                )
                + "\n"
            )
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
    raw = data[offset : offset + 256].split(b"\0", 1)[0]
    return raw.decode("ascii", "replace").strip() or "unknown"


def _from_bzimage(path: Path, modules_dir: Path | None) -> KernelBundle:
    version_line = bzimage_version(path)
    version = version_line.split()[0]
    kernel_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if modules_dir is not None:
        if not modules_dir.is_dir():
            raise InputError(f"KERNEL_MODULES {modules_dir}: no such directory")
        modules_dir = modules_with_dep(modules_dir)
    mod_key = str(modules_dir.resolve()) if modules_dir else "builtin"
    digest = recipe_digest("bz-v3", kernel_sha, mod_key, RECIPES / "initramfs.modules")
    final = cache_root() / f"kernel-bz-{digest}"
    if not (final / "kernel.json").exists():
        with building(final) as tmp:
            shutil.copy2(path, tmp / "vmlinuz")
            loaded = _write_modules_cpio(
                modules_dir, tmp / "modules.cpio", f"KERNEL_MODULES {modules_dir}"
            )
            info = {
                "version": version,
                "version_line": version_line,
                "source": str(path),
                "sha256": kernel_sha,
                "modules": " ".join(loaded),
            }
            (tmp / "kernel.json").write_text(json.dumps(info, indent=1) + "\n")
    return _load(final)


# ---------------------------------------------------------------- Debian packages


def _from_debian(suite: str, package: str, pinned: str = "") -> KernelBundle:
    hosttools.require("apt-get", "apt-cache", "dpkg-deb", "depmod", "cpio")
    index = AptIndex(suite)
    debs = resolve(index, package, pinned)
    digest = recipe_digest("deb-v4", debs.image, debs.version, RECIPES / "initramfs.modules")
    final = cache_root() / f"kernel-{debs.image}-{digest}"
    if not (final / "kernel.json").exists():
        log.info(
            f"fetching kernel {debs.image} {debs.version} ({debs.suite}"
            + (", split packages)" if debs.split else ")")
        )
        with building(final) as tmp, tempfile.TemporaryDirectory() as td:
            work = Path(td)
            tree = work / "x"
            for name in debs.fetch:
                deb = index.download(name, work, debs.version)
                hosttools.run(["dpkg-deb", "-x", str(deb), str(tree)], f"unpacking {deb.name}")
            vmlinuz, kver = _image_in(tree, debs.image)
            moddir = _modules_dir(tree, kver)
            _depmod(moddir)
            shutil.copy2(vmlinuz, tmp / "vmlinuz")
            loaded = _write_modules_cpio(moddir, tmp / "modules.cpio", f"KERNEL {debs.pin}")
            config = next(
                (c for c in (tree / "boot" / f"config-{kver}", moddir / "config") if c.is_file()),
                None,
            )
            info = {
                "version": kver,
                "source": debs.pin,
                "sha256": hashlib.sha256(vmlinuz.read_bytes()).hexdigest(),
                "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest() if config else "",
                "modules": " ".join(loaded),
            }
            (tmp / "kernel.json").write_text(json.dumps(info, indent=1) + "\n")
    return _load(final)


def _image_in(tree: Path, image: str) -> tuple[Path, str]:
    """The kernel image wherever the packages put it (`/boot/vmlinuz-VER` up to
    6.x, `/usr/lib/modules/VER/vmlinuz` from 7.x on) and its version."""
    for found in sorted(tree.glob("boot/vmlinuz-*")):
        return found, found.name.removeprefix("vmlinuz-")
    for found in sorted(
        [*tree.glob("usr/lib/modules/*/vmlinuz"), *tree.glob("lib/modules/*/vmlinuz")]
    ):
        return found, found.parent.name
    raise InputError(f"KERNEL {image}: its packages hold no vmlinuz")


def _modules_dir(tree: Path, kver: str) -> Path:
    for cand in (tree / "usr/lib/modules" / kver, tree / "lib/modules" / kver):
        if (cand / "kernel").is_dir():
            return cand
    raise InputError(f"kernel {kver}: its packages hold no modules directory")


def _depmod(moddir: Path) -> None:
    """modules.dep for a package's DIR/lib/modules/VER (or DIR/usr/lib/modules/VER):
    Debian ships none (depmod makes it at install); depmod -b reads BASE/lib/modules."""
    hosttools.run(
        ["depmod", "-b", str(moddir.parents[2]), moddir.name], "depmod of the kernel modules"
    )


def modules_with_dep(moddir: Path) -> Path:
    """A user's modules directory as modprobe needs it: as it is when it has
    modules.dep, else a view of it in the cache (links to its files) with a
    modules.dep depmod made there: the user's tree is never written."""
    if (moddir / "modules.dep").exists():
        return moddir
    if not (moddir / "kernel").is_dir():
        raise InputError(f"KERNEL_MODULES {moddir}: not a modules directory (no kernel/ in it)")
    hosttools.require("depmod")
    kver = moddir.name
    key = hashlib.sha256()
    for path in sorted(moddir.rglob("*")):
        if path.is_file():
            st = path.stat()
            key.update(f"{path.relative_to(moddir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    digest = recipe_digest("kmods-v1", str(moddir.resolve()), key.hexdigest())
    final = cache_root() / f"kmods-{digest}"
    view = final / "lib" / "modules" / kver
    if not (view / "modules.dep").exists():
        with building(final) as tmp:
            out = tmp / "lib" / "modules" / kver
            out.mkdir(parents=True)
            for entry in moddir.iterdir():
                # depmod's own outputs are made anew; the rest are read through links
                if not entry.name.startswith("modules.") or entry.name.startswith(
                    ("modules.builtin", "modules.order")
                ):
                    (out / entry.name).symlink_to(entry.resolve())
            log.info(f"KERNEL_MODULES {moddir} has no modules.dep: depmod into {view}")
            hosttools.run(["depmod", "-b", str(tmp), kver], "depmod of KERNEL_MODULES")
    return view


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


def soft_predeps(moddir: Path) -> dict[str, list[str]]:
    """Each module's `pre:` soft dependencies from modules.softdep, every line of
    it: kmod 30 (Debian 12) follows only the first line of a module that has
    several (6.17's btrfs: blake2b-256, sha256, xxhash64, crypto-crc32c), and a
    btrfs without crc32c does not mount."""
    out: dict[str, list[str]] = {}
    try:
        text = (moddir / "modules.softdep").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] != "softdep":
            continue
        pre = parts[parts.index("pre:") + 1 :] if "pre:" in parts else []
        if "post:" in pre:
            pre = pre[: pre.index("post:")]
        out.setdefault(module_name(parts[1]), []).extend(pre)
    return out


def resolve_modules(moddir: Path, wanted: list[str]) -> list[str]:
    """Module paths (relative to `moddir`) to insmod, in order, each once: what
    kmod's `modprobe --show-depends` lists for each wanted module, so hard and soft
    dependencies (ext4's crc32c, which a modular ext4 needs) come as modprobe would
    load them, whatever the flavour, with every soft dependency of each module
    loaded before it. Built-in or absent modules are skipped."""
    hosttools.require("modprobe")
    kver = moddir.name
    order: list[str] = []
    softdeps = soft_predeps(moddir)
    with tempfile.TemporaryDirectory() as td:
        root = Path(td) / "lib" / "modules" / kver
        root.parent.mkdir(parents=True)
        root.symlink_to(moddir.resolve())

        def add(name: str, seen: set[str]) -> None:
            proc = subprocess.run(
                ["modprobe", "--show-depends", "-d", td, "-S", kver, name],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                return  # not a module of this kernel: built in, or not there at all
            for path in parse_show_depends(proc.stdout, str(root)):
                if path in order:
                    continue
                mod = module_name(path)
                for pre in softdeps.get(mod, []):
                    if pre not in seen:
                        add(pre, seen | {pre})
                if path not in order:
                    order.append(path)

        for name in wanted:
            add(name, {name})
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


# Without these the guest cannot boot (its disks, its agent channel, its ext4 root);
# the others only narrow the backends a kernel can run.
ESSENTIAL_MODULES = ("virtio_pci", "virtio_blk", "virtio_console", "ext4")


def builtin_modules(moddir: Path) -> set[str] | None:
    """Names of the modules built into the kernel (`modules.builtin`), or None
    when the directory does not say."""
    listing = moddir / "modules.builtin"
    if not listing.is_file():
        return None
    return {module_name(line.strip()) for line in listing.read_text().splitlines() if line.strip()}


def missing_modules(moddir: Path, wanted: list[str], resolved: list[str]) -> list[str]:
    """Wanted modules neither built in nor loadable (empty when the directory has
    no modules.builtin to tell)."""
    builtin = builtin_modules(moddir)
    if builtin is None:
        return []
    have = builtin | {module_name(p) for p in resolved}
    return [w for w in wanted if module_name(w) not in have]


def _write_modules_cpio(moddir: Path | None, out: Path, what: str) -> list[str]:
    wanted = read_list(RECIPES / "initramfs.modules")
    with tempfile.TemporaryDirectory() as td:
        tree = Path(td)
        (tree / "modules").mkdir()
        order: list[str] = []
        if moddir is not None:
            resolved = resolve_modules(moddir, wanted)
            missing = missing_modules(moddir, wanted, resolved)
            essential = [m for m in missing if module_name(m) in ESSENTIAL_MODULES]
            if essential:
                raise InputError(
                    f"{what}: the guest needs {', '.join(essential)}, neither built "
                    "into this kernel nor among its modules"
                )
            for p in resolved:
                name = module_name(p) + ".ko"
                (tree / "modules" / name).write_bytes(_decompress(moddir / p))
                order.append(name)
            if missing:
                (out.parent / "missing-modules").write_text("\n".join(missing) + "\n")
        (tree / "modules.order").write_text("\n".join(order) + "\n")
        out.write_bytes(cpio_of(tree))
    return [o.removesuffix(".ko") for o in order]


def lacks(bundle: KernelBundle, module: str) -> bool:
    """The kernel has `module` neither built in nor as a module (known only where
    its modules directory listed what is built in)."""
    listed = bundle.vmlinuz.parent / "missing-modules"
    return listed.is_file() and module_name(module) in {
        module_name(m) for m in listed.read_text().split()
    }


def _load(final: Path) -> KernelBundle:
    info = json.loads((final / "kernel.json").read_text())
    if info.get("identity") != IDENTITY_VERSION:  # cached before this reader: read it once
        info.update(kernel_identity(final / "vmlinuz"), identity=IDENTITY_VERSION)
        (final / "kernel.json").write_text(json.dumps(info, indent=1) + "\n")
    return KernelBundle(final / "vmlinuz", final / "modules.cpio", info)


# ---------------------------------------------------------------- identity

IDENTITY_VERSION = 2  # bump when kernel_identity learns to read more kernels

_PAYLOAD_MAGIC = {
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\xfd7zXZ": "xz",
    b"\x1f\x8b": "gzip",
    b"\x02\x21\x4c\x18": "lz4",
}
_BUILD_ID_NOTE = re.compile(rb"\x04\0\0\0\x14\0\0\0\x03\0\0\0GNU\0(.{20})", re.S)


def _vmlinux(vmlinuz: Path) -> bytes:
    """The ELF kernel inside an x86 bzImage (its compressed payload), or b""."""
    data = vmlinuz.read_bytes()
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        return b""
    setup = ((data[0x1F1] or 4) + 1) * 512
    offset = int.from_bytes(data[0x248:0x24C], "little")
    length = int.from_bytes(data[0x24C:0x250], "little")
    payload = data[setup + offset : setup + offset + length]
    kind = next((k for m, k in _PAYLOAD_MAGIC.items() if payload.startswith(m)), "")
    try:
        if kind == "xz":
            return lzma.LZMADecompressor().decompress(payload)
        if kind == "gzip":
            return gzip.GzipFile(fileobj=io.BytesIO(payload)).read()
        if kind in ("zstd", "lz4") and shutil.which(kind):
            # The kernel appends the uncompressed size: the tool then exits 1 after the data.
            return subprocess.run(
                [kind, "-dc"], input=payload, capture_output=True, check=False
            ).stdout
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
            config = gzip.decompress(elf[start + 8 : end])
            out["embedded_config_sha256"] = hashlib.sha256(config).hexdigest()
        except (OSError, EOFError):
            pass
    return out
