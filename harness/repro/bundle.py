"""Reproducer bundles: one directory per failing state that anyone can replay with
`crashtest repro BUNDLE`, wherever it is moved.

    bundle.json       what ran (kernel identity, image manifest, QEMU command line,
                      backend options, workload and seed, state id, promises) and
                      the verdict, plus a sha256 for every file below
    writes.log.zst    the recorded write log          (lost-cache states)
    origin.qcow2      the disk before the workload    (lost-cache states)
    disk.qcow2        the disk as the power cut left it (live cuts)
    workload.json     the workload's steps, promises and invariants, as data: the
                      bundle replays it after the file that wrote it is gone
    kernel/bzImage    the kernel, when it is not a Debian package (a user's bzImage
                      or a source-tree build, with everything built in)
    console/*.log     console and agent transcripts of the failing check
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import hosttools
from harness.errors import HarnessError, InputError
from harness.model import Promise, Violation, failing
from harness.storage.backends import BACKENDS, Backend

FORMAT = "crashtest-bundle"
VERSION = 1
KINDS = ("replay", "live")
REQUIRED = (
    "format",
    "version",
    "kind",
    "state",
    "backend",
    "kernel",
    "image",
    "workload",
    "seed",
    "verdict",
    "files",
)
KIND_FILES = {"replay": ("writes.log.zst", "origin.qcow2"), "live": ("disk.qcow2",)}


class BundleError(InputError):
    """The bundle is incomplete, corrupted or not a bundle; the message says which part."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    meta: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def state(self) -> str:
        return str(self.meta["state"])

    @property
    def seed(self) -> int:
        return int(self.meta["seed"])

    def file(self, name: str) -> Path:
        return self.path / name

    def backend(self) -> Backend:
        b = self.meta["backend"]
        base = BACKENDS[b["name"]]
        return Backend(
            base.name,
            base.fs,
            base.driver,
            tuple(shlex.split(b["mkfs_options"])),
            b["mount_options"],
        )

    def promises(self) -> list[Promise]:
        return [Promise.from_json(p) for p in self.meta.get("promises", [])]

    @property
    def legacy(self) -> bool:
        """Made before verdicts had check ids: it matches by promise text."""
        return any(not v.get("check") for v in self.meta["verdict"]["violations"])

    def signature(self) -> list[str]:
        """What must break again for the state to count as reproduced."""
        return signature(violations(self.meta["verdict"]["violations"]), self.legacy)


def signature(found: list[Violation], legacy: bool = False) -> list[str]:
    """What must break again for a state to count as reproduced: the failing
    violations' signatures (`Violation.signature`, the one every report uses).
    Bundles made before verdicts had check ids match by class and promise text."""
    if legacy:
        return sorted({f"[{v.cls}] {v.promise}" for v in failing(found)})
    return sorted({v.signature() for v in failing(found)})


def violations(records: list[dict[str, Any]]) -> list[Violation]:
    """A bundle's recorded verdicts."""
    return [Violation.from_json(v) for v in records]


def reproduces(expected: list[str], got: list[str]) -> bool:
    """The same promises broke again (a state with nothing expected never reproduces)."""
    return bool(expected) and set(expected) <= set(got)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def compress_log(log: Path, out: Path) -> Path:
    hosttools.run(
        ["zstd", "-q", "-f", "-T0", "-6", str(log), "-o", str(out)], f"compressing {log.name}"
    )
    return out


def compress_disk(image: Path, out: Path) -> Path:
    """A compressed qcow2: holes cost nothing and `crashtest check` reads it as is."""
    hosttools.run(
        ["qemu-img", "convert", "-q", "-c", "-O", "qcow2", str(image), str(out)],
        f"compressing {image.name}",
    )
    return out


def decompress_log(log_zst: Path, out: Path) -> Path:
    hosttools.run(
        ["zstd", "-q", "-d", "-f", str(log_zst), "-o", str(out)], f"decompressing {log_zst}"
    )
    return out


def unpack_log(bundle: Bundle, out: Path) -> Path:
    return decompress_log(bundle.file("writes.log.zst"), out)


def unpack_disk(bundle: Bundle, name: str, out: Path) -> Path:
    """A raw sparse copy of one of the bundle's disks."""
    hosttools.run(
        ["qemu-img", "convert", "-q", "-O", "raw", str(bundle.file(name)), str(out)],
        f"unpacking the bundle's {name}",
    )
    return out


def write_bundle(
    dest: Path,
    meta: dict[str, Any],
    artifacts: dict[str, Path],
    logs: list[Path],
    docs: dict[str, str] | None = None,
) -> Path:
    """Write a bundle atomically. `artifacts` are already compressed (hard-linked
    when possible: several bundles of one run share one write log); `docs` are
    small text files written as they are."""
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "console").mkdir(parents=True)
    try:
        for name, src in artifacts.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, tmp / name)
            except OSError:
                shutil.copy2(src, tmp / name)
        for log in logs:
            if log.exists():
                shutil.copy2(log, tmp / "console" / log.name)
        for name, text in (docs or {}).items():
            (tmp / name).write_text(text)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        doc = {
            "format": FORMAT,
            "version": VERSION,
            **meta,
            "files": {
                str(p.relative_to(tmp)): {"sha256": _sha256(p), "bytes": p.stat().st_size}
                for p in files
            },
        }
        (tmp / "bundle.json").write_text(json.dumps(doc, indent=1) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HarnessError(f"writing bundle {dest}: {e}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def load_bundle(path: Path, verify_files: bool = True) -> Bundle:
    """Read and validate a bundle; every problem is one clear BundleError."""
    doc_path = path / "bundle.json"
    if not path.is_dir():
        raise BundleError(f"bundle {path}: not a directory")
    try:
        meta = json.loads(doc_path.read_text())
    except OSError as e:
        raise BundleError(f"bundle {path}: no readable bundle.json ({e.strerror})") from e
    except json.JSONDecodeError as e:
        raise BundleError(f"bundle {path}: bundle.json is not JSON (line {e.lineno})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"bundle {path}: bundle.json is not a {FORMAT}")
    if meta.get("version") != VERSION:
        raise BundleError(
            f"bundle {path}: version {meta.get('version')!r} "
            f"(this crashtest reads version {VERSION})"
        )
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise BundleError(f"bundle {path}: bundle.json lacks {', '.join(missing)}")
    if meta["kind"] not in KINDS:
        raise BundleError(f"bundle {path}: unknown kind {meta['kind']!r}")
    if meta["backend"].get("name") not in BACKENDS:
        raise BundleError(f"bundle {path}: unknown backend {meta['backend'].get('name')!r}")
    for name in KIND_FILES[meta["kind"]]:
        if name not in meta["files"]:
            raise BundleError(f"bundle {path}: a {meta['kind']} bundle needs {name}")
    if verify_files:
        for name, want in meta["files"].items():
            f = path / name
            if not f.is_file():
                raise BundleError(f"bundle {path}: {name} is missing")
            if f.stat().st_size != want["bytes"] or _sha256(f) != want["sha256"]:
                raise BundleError(
                    f"bundle {path}: {name} is corrupted (sha256 differs from bundle.json)"
                )
    return Bundle(path, meta)
