"""Turn a failing state of a campaign into a reproducer bundle."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

from harness.images.cache import cache_root
from harness.images.guest import GuestImages
from harness.model import FAULTS, Promise, StateResult, Violation, ViolationClass
from harness.power.cut import CutOutcome
from harness.repro.bundle import compress_disk, write_bundle
from harness.repro.minimize import MinimalSteps, Minimized
from harness.storage.backends import Backend
from harness.version import crashtest_version
from harness.vm.qemu import MachineConfig, Sockets, build_argv
from harness.workloads.api import Workload


class Origin(Protocol):
    """What made a failing state: enough to make it again (a campaign's config)."""

    @property
    def images(self) -> GuestImages: ...

    @property
    def accel(self) -> str: ...

    @property
    def workload(self) -> Workload: ...


def kernel_meta(images: GuestImages) -> dict[str, str]:
    """Identity, and how to get the same kernel again (`spec` is a KERNEL value):
    a Debian source reads `suite:package=version`, exactly that build; the sha256
    tells whether the archive still serves the same bytes."""
    info = dict(images.kernel.info)
    info["spec"] = info.get("source", "")
    return info


def kernel_artifacts(images: GuestImages) -> dict[str, Path]:
    """A kernel that no archive serves travels in the bundle (if it needs no modules)."""
    info = images.kernel.info
    if "=" in info.get("source", "") or info.get("modules"):
        return {}
    return {"kernel/bzImage": images.kernel.vmlinuz}


def qemu_argv(config: MachineConfig) -> list[str]:
    """The guest's command line, with placeholder channel descriptors and the image
    cache as `$CRASHTEST_CACHE` (a bundle holds no path of the machine it came from)."""
    cache = str(cache_root())
    return [a.replace(cache, "$CRASHTEST_CACHE") for a in build_argv(config, Sockets(3, 4, 5))]


def readme(meta: dict[str, Any], name: str) -> str:
    """README.txt: what broke, whose fault, and the one command that reproduces it."""
    bad = [v for v in meta["verdict"]["violations"] if ViolationClass(v["class"]).fails]
    lines = [
        f"crashtest reproducer bundle: {name}",
        "",
        f"State: {meta['state']} ({meta['kind']}: "
        + (
            "a live power cut of a running guest"
            if meta["kind"] == "live"
            else "a lost-disk-cache crash state replayed from the recorded write log"
        )
        + ")",
        f"Plan: {meta['verdict'].get('plan', '')}",
        f"Backend: {meta['backend'].get('name', '')}; kernel {meta['kernel'].get('version')} "
        f"({meta['kernel'].get('source', '')}); guest image {meta['image']} "
        f"(Debian {meta.get('release', '')}, docker.io "
        f"{meta.get('image_packages', {}).get('docker.io', '?')}); "
        f"workload {meta['workload']['name']} (seed {meta['seed']})",
        "",
        "What broke:",
    ]
    for v in bad:
        lines += [
            f"  [{v['class']}, {v['fault']}'s fault] {v['promise']}",
            f"    check {v.get('check', '')}; " + FAULTS.get(v["fault"], ""),
        ]
        out = str(v.get("evidence", {}).get("output", "")).strip().splitlines()
        if out:
            lines.append(f"    evidence: {out[0][:300]}")
    lines += [
        "",
        "Reproduce (from a crashtest checkout, any directory; exit 1 = reproduced):",
        f"  crashtest repro {name}",
        "  (make .venv/.installed first gives .venv/bin/crashtest)",
        "",
        "Files: bundle.json (everything above, with checksums of every file), "
        + (
            "disk.qcow2 (the cut disk)"
            if meta["kind"] == "live"
            else "writes.log.zst and origin.qcow2 (the write log and the disk it starts from; "
            "`crashtest states writes.log.zst` lists its states)"
        )
        + ", workload.json, console/ (the guests' console logs).",
        f"Made by crashtest {meta.get('crashtest_version', '?')} on {meta['created']}.",
    ]
    return "\n".join(lines) + "\n"


def _common(
    cfg: Origin, backend: Backend, res: StateResult, kind: str, argv: list[str]
) -> dict[str, Any]:
    wl = cfg.workload
    return {
        "kind": kind,
        "state": res.state,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kernel": kernel_meta(cfg.images),
        "image": cfg.images.root.manifest_id,
        "release": str(cfg.images.root.manifest.get("suite", "")),
        "image_packages": cfg.images.root.key_packages(),
        "accel": cfg.accel,
        "qemu_argv": argv,
        "backend": backend.describe(),
        "workload": {"name": wl.name, "source": wl.source, "digest": wl.digest},
        "seed": wl.seed,
        "steps": wl.step_names,
        "verdict": res.to_json(),
        "crashtest_version": crashtest_version(),
    }


def _docs(cfg: Origin, meta: dict[str, Any], dest: Path) -> dict[str, str]:
    return {
        "workload.json": json.dumps(cfg.workload.to_json(), indent=1) + "\n",
        "README.txt": readme(meta, dest.name),
    }


def replay_bundle(
    dest: Path,
    cfg: Origin,
    backend: Backend,
    res: StateResult,
    argv: list[str],
    state_id: str,
    promises: list[Promise],
    log_zst: Path,
    origin_qcow2: Path,
    logs: list[Path],
    minimal: Minimized | None,
    minimal_verdict: list[Violation] | None,
) -> Path:
    digest, epoch, subset = state_id.split(":")
    meta = _common(cfg, backend, res, "replay", argv)
    meta.update(
        {
            "state_id": state_id,
            "log_digest": digest,
            "epoch": int(epoch[1:]),
            "subset": subset,
            "promises": [p.to_json() for p in promises],
            "checker": "the state is hot-plugged into a guest booted with qemu_argv "
            "(a virtio-blk-pci disk, serial=state, over a raw node whose file child "
            "is each state's qcow2, swapped with QMP blockdev-reopen)",
            "minimal": None
            if minimal is None
            else {
                "state_id": minimal.state.id,
                "dropped_entries": minimal.dropped,
                "original_dropped": minimal.original_dropped,
                "tests": minimal.tests,
                "complete": minimal.complete,
                "violations": [v.to_json() for v in minimal_verdict or []],
            },
        }
    )
    return write_bundle(
        dest,
        meta,
        {"writes.log.zst": log_zst, "origin.qcow2": origin_qcow2, **kernel_artifacts(cfg.images)},
        logs,
        _docs(cfg, meta, dest),
    )


def live_bundle(
    dest: Path,
    cfg: Origin,
    backend: Backend,
    res: StateResult,
    argv: list[str],
    outcome: CutOutcome,
    disk: Path,
    logs: list[Path],
    minimal: MinimalSteps | None = None,
) -> Path:
    meta = _common(cfg, backend, res, "live", argv)
    meta.update(
        {
            "cut": {
                "kind": outcome.plan.kind,
                "step": outcome.plan.step,
                "delay_s": outcome.plan.delay_s,
            },
            "actual": outcome.actual,
            "last_durability_point": outcome.ledger.last_point,
            "promises": [p.to_json() for p in outcome.ledger.in_force()],
            "inventory": outcome.inventory,
            "minimal": None
            if minimal is None
            else {
                "steps": minimal.steps,
                "original_steps": minimal.original,
                "tests": minimal.tests,
                "complete": minimal.complete,
            },
        }
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.disk.qcow2"
    try:
        return write_bundle(
            dest,
            meta,
            {"disk.qcow2": compress_disk(disk, tmp), **kernel_artifacts(cfg.images)},
            logs,
            _docs(cfg, meta, dest),
        )
    finally:
        tmp.unlink(missing_ok=True)
