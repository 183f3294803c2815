"""Debian kernel packages: which `.deb`s make a kernel, resolved in one suite of
Debian's archive. Up to 6.x a kernel is one `linux-image-VER-FLAVOUR` package; from
7.x on that package is empty and depends on `linux-binary-VER` (the image),
`linux-modules-VER` (the modules) and `linux-base-VER` (modules.builtin, config).

The resolution is pure over a `PackageIndex` (the suite's stanzas), so it is
tested on recorded stanzas; `AptIndex` is the real one, a private apt state per
suite that leaves the host's apt setup untouched."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from debian.deb822 import Deb822
from debian.debian_support import Version

from harness import hosttools
from harness.errors import HarnessError, InputError
from harness.images.cache import cache_root

MIRROR = "http://deb.debian.org/debian"
# Newest first: what `crashtest --help` and errors list.
SUITES = ("sid", "experimental", "trixie-backports", "trixie", "bookworm-backports", "bookworm")
ALIASES = {"unstable": "sid"}
DEFAULT_SUITE = "trixie"
APT_LISTS_MAX_AGE_S = 24 * 3600
# The kernel series crashtest runs (README's kernel table, the console goldens),
# each as a KERNEL; 6.17 is pinned, the suites' newest builds have moved on.
SERIES = {
    "6.1": "bookworm:linux-image-cloud-amd64",
    "6.12": "trixie:linux-image-cloud-amd64",
    "6.17": "trixie-backports:linux-image-6.17.13+deb13-cloud-amd64",
    "7.2": "sid:linux-image-cloud-amd64",
    "7.3-rc": "experimental:linux-image-cloud-amd64",
}

_IMAGE_DEP = re.compile(r"\b(linux-image-[0-9][^\s,|(]*)")
_SPLIT_PARTS = ("linux-binary-", "linux-modules-", "linux-base-")


def check_suite(suite: str) -> str:
    """The suite's canonical name, or an InputError listing the known ones."""
    suite = ALIASES.get(suite, suite)
    if suite not in SUITES:
        alias = {v: k for k, v in ALIASES.items()}
        known = ", ".join(f"{s} ({alias[s]})" if s in alias else s for s in SUITES)
        raise InputError(
            f"KERNEL suite {suite!r}: not a Debian suite crashtest knows; choose one of {known}"
        )
    return suite


class PackageIndex(Protocol):
    suite: str

    def stanzas(self, package: str) -> list[Deb822]:
        """Every version of `package` the suite has (none: not there)."""
        ...

    def names(self, prefix: str) -> list[str]:
        """Names of the suite's packages that start with `prefix`."""
        ...


@dataclass(frozen=True)
class KernelDebs:
    """A kernel build in one suite: the image package, its version, and the
    packages to fetch at that version for its image and modules."""

    suite: str
    image: str
    version: str
    fetch: tuple[str, ...]

    @property
    def split(self) -> bool:
        return self.fetch != (self.image,)

    @property
    def pin(self) -> str:
        """`suite:package=version`: exactly this build (bundles record it)."""
        return f"{self.suite}:{self.image}={self.version}"


def _newest(stanzas: list[Deb822]) -> Deb822:
    return max(stanzas, key=lambda s: Version(s["Version"]))


def _newest_version(index: PackageIndex, name: str) -> Version | None:
    stanzas = index.stanzas(name)
    return Version(_newest(stanzas)["Version"]) if stanzas else None


def _dep_names(stanza: Deb822) -> list[str]:
    names = []
    for alternatives in stanza.get("Depends", "").split(","):
        first = alternatives.split("|")[0].strip()
        if first:
            names.append(first.split()[0])
    return names


def _versioned_of(index: PackageIndex, meta: str) -> str | None:
    """For `linux-image-FLAVOUR` that the suite lacks as a metapackage (experimental
    may): its highest versioned `linux-image-VER-FLAVOUR`."""
    flavour = meta.removeprefix("linux-image-")
    if not meta.startswith("linux-image-") or not flavour or flavour[0].isdigit():
        return None
    rx = re.compile(rf"linux-image-\d[\w.+~]*(?:-\d+)?-{re.escape(flavour)}")
    found = [
        (v, name)
        for name in index.names("linux-image-")
        if rx.fullmatch(name)
        for v in [_newest_version(index, name)]
        if v is not None
    ]
    return max(found)[1] if found else None


def _missing(index: PackageIndex, package: str) -> InputError:
    images = sorted(
        n for n in index.names("linux-image-") if not n.endswith(("-dbg", "-unsigned", "-template"))
    )
    metas = [n for n in images if not n.removeprefix("linux-image-")[:1].isdigit()]
    versioned = [n for n in images if n not in metas]
    dated = [(v, n) for n in versioned for v in [_newest_version(index, n)] if v is not None]
    newest = max(dated)[1] if dated else ""
    has = ", ".join(metas) or "no metapackage"
    if versioned:
        has += f", and {len(versioned)} versioned image(s)"
        has += f", the newest {newest}" if newest else ""
    return InputError(
        f"KERNEL {index.suite}:{package}: Debian's {index.suite} has no such "
        f"package; its kernel packages: {has}"
    )


def resolve(index: PackageIndex, package: str, pinned: str = "") -> KernelDebs:
    """The build `package` names in the suite: a metapackage is followed to the
    versioned image it depends on (its newest version), a flavour the suite has no
    metapackage for to its highest versioned image; `pinned` asks for exactly that
    version of `package`, which the archive may since have dropped."""
    suite = index.suite
    stanzas = index.stanzas(package)
    if pinned:
        match = [s for s in stanzas if s["Version"] == pinned]
        if not match:
            have = ", ".join(sorted((s["Version"] for s in stanzas), key=Version)) or "none"
            raise InputError(
                f"KERNEL {suite}:{package}={pinned}: Debian's {suite} archive no longer has this "
                f"build (it has: {have}); fetch {package}_{pinned}_amd64.deb (e.g. from "
                "snapshot.debian.org) with the linux-binary, linux-modules and linux-base "
                "packages it depends on, unpack them with dpkg-deb -x into one directory, and "
                "pass its vmlinuz as --kernel and its lib/modules/VERSION as --kernel-modules"
            )
        stanza = match[0]
    else:
        for _ in range(3):  # metapackage -> versioned image, at most a few hops
            if not stanzas:
                versioned = _versioned_of(index, package)
                if versioned is None:
                    raise _missing(index, package)
                package, stanzas = versioned, index.stanzas(versioned)
            stanza = _newest(stanzas)
            real = [d for d in _dep_names(stanza) if _IMAGE_DEP.fullmatch(d)]
            if not real:
                break
            package, stanzas = real[0], index.stanzas(real[0])
        else:
            raise InputError(f"KERNEL {suite}:{package}: no kernel image package behind it")
    abi = package.removeprefix("linux-image-")
    deps = _dep_names(stanza)
    parts = tuple(p + abi for p in _SPLIT_PARTS if p + abi in deps)
    fetch = parts if all(p + abi in parts for p in _SPLIT_PARTS[:2]) else (package,)
    return KernelDebs(suite, package, stanza["Version"], fetch)


class AptIndex:
    """A private apt state for one suite (only that suite in its sources, so its
    own builds are the candidates: with the base suite beside a backports suite,
    apt would prefer the base suite's older kernel)."""

    def __init__(self, suite: str) -> None:
        self.suite = check_suite(suite)
        self.root = cache_root() / f"apt-v2-{self.suite}"
        for d in ("lists/partial", "cache/archives/partial"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "sources.list").write_text(f"deb {MIRROR} {self.suite} main\n")
        self.opts = [
            f"-oDir::Etc::SourceList={self.root}/sources.list",
            "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={self.root}/lists",
            f"-oDir::Cache={self.root}/cache",
            "-oDir::State::status=/dev/null",
            "-oAPT::Architecture=amd64",
            "-oAPT::Sandbox::User=root",
            "-oDebug::NoLocking=1",
        ]
        stamp = self.root / "lists" / ".updated"
        if not stamp.exists() or time.time() - stamp.stat().st_mtime > APT_LISTS_MAX_AGE_S:
            hosttools.run(
                ["apt-get", *self.opts, "-qq", "update"], f"apt-get update ({self.suite})"
            )
            stamp.touch()

    def stanzas(self, package: str) -> list[Deb822]:
        proc = subprocess.run(
            ["apt-cache", *self.opts, "show", package], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            return []
        return [s for s in Deb822.iter_paragraphs(proc.stdout) if s.get("Package") == package]

    def names(self, prefix: str) -> list[str]:
        proc = subprocess.run(
            ["apt-cache", *self.opts, "pkgnames", prefix],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.split()

    def versions(self, package: str) -> list[str]:
        return [s["Version"] for s in self.stanzas(package)]

    def download(self, package: str, dest: Path, version: str = "") -> Path:
        want = f"{package}={version}" if version else package
        hosttools.run(
            ["apt-get", *self.opts, "-qq", "download", want], f"download {want}", cwd=dest
        )
        debs = sorted(dest.glob(f"{package}_*.deb"))
        if not debs:
            raise HarnessError(f"download {package}: no .deb appeared")
        return debs[-1]
