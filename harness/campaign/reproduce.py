"""`crashtest repro BUNDLE`: rebuild a bundle's state and check it again.

A lost-cache state is rebuilt from the bundle's write log and origin disk and
checked `runs` times (it must give the same verdict every time), together with
its minimal state. A live cut is checked again on the bundle's cut disk (a
deterministic recheck) and then repeated `runs` times from a fresh disk: the
reproduction rate says how often the same promise breaks again.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.campaign import snapshots
from harness.campaign.context import CampaignConfig, Progress, machine_config
from harness.campaign.live import check_cut_disk, run_live_cut
from harness.images.guest import GuestImages, ensure_images
from harness.images.rootfs import DEFAULT_SUITE, check_release
from harness.model import Ledger, blame_configuration
from harness.oracles.checker import Checker, StateCheck
from harness.power.cut import CutOutcome, CutPlan
from harness.repro.bundle import (
    Bundle,
    BundleError,
    reproduces,
    signature,
    unpack_disk,
    unpack_log,
    violations,
)
from harness.vm import accel as accel_mod
from harness.workloads.api import Workload, WorkloadError
from harness.workloads.load import load_workload
from harness.writelog.record import read_recorded_log
from harness.writelog.replay import Replayer
from harness.writelog.states import epochs, parse_state_id


@dataclass
class Attempt:
    what: str  # "original", "minimal", "cut disk", "live cut"
    state: str
    signature: list[str]
    reproduced: bool
    harness_error: str = ""
    wall_s: float = 0.0


@dataclass
class ReproReport:
    bundle: str
    kind: str
    state: str
    expected: list[str]
    kernel: dict[str, str]
    kernel_matches: bool
    attempts: list[Attempt] = field(default_factory=list)
    image_matches: bool = True

    @property
    def runs(self) -> int:
        return sum(1 for a in self.attempts if a.what in ("original", "live cut"))

    @property
    def reproduced(self) -> int:
        return sum(1 for a in self.attempts if a.what in ("original", "live cut") and a.reproduced)

    @property
    def rate(self) -> float:
        return self.reproduced / self.runs if self.runs else 0.0

    @property
    def harness_errors(self) -> int:
        return sum(1 for a in self.attempts if a.harness_error)

    def to_json(self) -> dict[str, object]:
        return {
            "bundle": self.bundle,
            "kind": self.kind,
            "state": self.state,
            "expected": self.expected,
            "kernel": self.kernel,
            "kernel_matches": self.kernel_matches,
            "image_matches": self.image_matches,
            "runs": self.runs,
            "reproduced": self.reproduced,
            "rate": round(self.rate, 3),
            "attempts": [a.__dict__ for a in self.attempts],
        }


def _images(bundle: Bundle, kernel: str | None) -> tuple[GuestImages, bool]:
    spec = kernel or bundle.meta["kernel"].get("spec") or None
    if kernel is None and "kernel/bzImage" in bundle.meta["files"]:
        spec = str(bundle.file("kernel/bzImage").resolve())  # the bundle's own kernel
    if kernel is None and spec and "/" in spec and not Path(spec).exists():
        raise BundleError(
            f"bundle {bundle.path}: its kernel {spec} is not on this machine; pass --kernel"
        )
    # The bundle's docker generation: its guest root's Debian suite.
    images = ensure_images(spec, suite=check_release(bundle.meta.get("release") or DEFAULT_SUITE))
    same = images.kernel.info.get("sha256") == bundle.meta["kernel"].get("sha256")
    return images, same


def image_matches(meta: dict[str, Any], images: GuestImages) -> tuple[bool, str]:
    """Is the guest root the one the bundle ran? Guest roots are built from today's
    Debian suite: a newer docker or kernel tools can change the outcome."""
    want, got = meta.get("image", ""), images.root.manifest_id
    if not want or want == got:
        return True, ""
    then, now = meta.get("image_packages") or {}, images.root.key_packages()
    moved = [
        f"{p} {then.get(p, '-')} -> {now.get(p, '-')}"
        for p in sorted({*then, *now})
        if then.get(p) != now.get(p)
    ]
    return False, (
        f"the guest image {got} is not the bundle's {want} (built since from "
        f"Debian's {meta.get('release') or DEFAULT_SUITE}"
        + (f": {', '.join(moved)}" if moved else ": other packages changed")
        + "); a result that differs may be the image's doing"
    )


def bundle_workload(bundle: Bundle) -> Workload:
    """The workload as the bundle recorded it (no file or registry needed); a bundle
    from before workloads were data names a registered workload instead."""
    if "workload.json" in bundle.meta["files"]:
        try:
            return Workload.from_json(json.loads(bundle.file("workload.json").read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BundleError(
                f"bundle {bundle.path}: workload.json is not a workload ({type(e).__name__}: {e})"
            ) from e
    name = bundle.meta["workload"]
    try:
        return load_workload(name if isinstance(name, str) else "default", bundle.seed)
    except WorkloadError as e:
        raise BundleError(f"bundle {bundle.path}: {e}") from e


def _config(bundle: Bundle, images: GuestImages, work: Path) -> CampaignConfig:
    return CampaignConfig(
        images=images, accel=accel_mod.choose()[0], workload=bundle_workload(bundle), run_dir=work
    )


def reproduce(
    bundle: Bundle, runs: int, kernel: str | None = None, progress: Progress = print
) -> ReproReport:
    if runs < 1:
        raise BundleError(f"--runs must be at least 1, got {runs}")
    bundle_workload(bundle)  # a bundle whose workload cannot be read fails before any boot
    images, same = _images(bundle, kernel)
    report = ReproReport(
        str(bundle.path),
        bundle.kind,
        bundle.state,
        bundle.signature(),
        {"version": images.kernel.version, "build_id": images.kernel.info.get("build_id", "")},
        same,
    )
    if not same:
        progress(
            f"note: kernel {images.kernel.version} differs from the bundle's "
            f"({bundle.meta['kernel'].get('version')})"
        )
    report.image_matches, why = image_matches(bundle.meta, images)
    if not report.image_matches:
        progress(f"note: {why}")
    work = Path(tempfile.mkdtemp(prefix="crashtest-repro-"))
    try:
        if bundle.kind == "replay":
            _replay(bundle, images, work, runs, report, progress)
        else:
            _live(bundle, images, work, runs, report, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _replay(
    bundle: Bundle,
    images: GuestImages,
    work: Path,
    runs: int,
    report: ReproReport,
    progress: Progress,
) -> None:
    log = read_recorded_log(unpack_log(bundle, work / "writes.log"))
    if log.digest != bundle.meta["log_digest"]:
        raise BundleError(
            f"bundle {bundle.path}: write log digest {log.digest} is not the "
            f"state's ({bundle.meta['log_digest']})"
        )
    origin = unpack_disk(bundle, "origin.qcow2", work / "origin.img")
    eps = epochs(log)
    todo = [("original", parse_state_id(bundle.meta["state_id"]), report.expected)]
    minimal = bundle.meta.get("minimal")
    if minimal:
        todo.append(
            (
                "minimal",
                parse_state_id(minimal["state_id"]),
                signature(violations(minimal["violations"]), bundle.legacy),
            )
        )
    for _, st, _ in todo:
        if st.epoch >= len(eps):
            raise BundleError(f"bundle {bundle.path}: state {st.id} lies past the log's end")
    cfg = _config(bundle, images, work)
    backend = bundle.backend()
    replayer = Replayer(log, origin, work / "replay")
    with Checker(
        machine_config(cfg, None), backend, work, saved=snapshots.idle_guest(cfg, progress)
    ) as checker:
        for run in range(runs):
            for what, st, expected in todo:
                if what == "minimal" and run > 0:
                    continue  # the minimal state is confirmed once; the original N times
                t0 = time.monotonic()
                disk = replayer.build(eps, st, work / "state.qcow2")
                try:
                    # blamed as the campaign blamed it: a signature carries the fault
                    found = blame_configuration(
                        checker.check(
                            StateCheck(
                                st.id, disk, tuple(bundle.promises()), cfg.workload.invariants
                            )
                        ).violations,
                        backend.flushes_off(),
                    )
                finally:
                    disk.unlink(missing_ok=True)
                got = signature(found, bundle.legacy)
                a = Attempt(
                    what,
                    st.id,
                    got,
                    reproduces(expected, got),
                    wall_s=round(time.monotonic() - t0, 2),
                )
                report.attempts.append(a)
                progress(
                    f"  {what} {st.id}: {'REPRODUCED' if a.reproduced else 'not reproduced'}"
                    + (f" {got}" if got else "")
                )


def _live(
    bundle: Bundle,
    images: GuestImages,
    work: Path,
    runs: int,
    report: ReproReport,
    progress: Progress,
) -> None:
    cfg = _config(bundle, images, work)
    backend = bundle.backend()
    cut = bundle.meta.get("cut") or {}
    try:
        plan = CutPlan(str(cut["kind"]), str(cut["step"]), float(cut.get("delay_s", 0.0)))
    except (KeyError, ValueError) as e:
        raise BundleError(f"bundle {bundle.path}: bad cut plan {cut!r}") from e
    if plan.step not in cfg.workload.step_names:
        raise BundleError(f"bundle {bundle.path}: cut step {plan.step!r} is not a workload step")
    ledger = Ledger(
        {p.key(): p for p in bundle.promises()}, str(bundle.meta.get("last_durability_point", ""))
    )
    outcome = CutOutcome(plan, ledger, inventory=bundle.meta.get("inventory"))
    disk = unpack_disk(bundle, "disk.qcow2", work / "disk.img")
    t0 = time.monotonic()
    (work / "recheck").mkdir()
    found, _, _, _ = check_cut_disk(
        cfg, backend, outcome, disk, work / "recheck", bundle.state, progress
    )
    got = signature(found, bundle.legacy)
    report.attempts.append(
        Attempt(
            "cut disk",
            bundle.state,
            got,
            reproduces(report.expected, got),
            wall_s=round(time.monotonic() - t0, 1),
        )
    )
    progress(f"  recheck of the cut disk: {got or 'clean'}")
    disk.unlink()
    cfg = replace(cfg, bundles=False)
    tries = [("live cut", cfg.workload)] * runs
    minimal = bundle.meta.get("minimal")
    if minimal:
        tries.append(("minimal", cfg.workload.keeping(set(minimal["steps"]))))
    for i, (what, workload) in enumerate(tries):
        progress(
            f"  {what} {i + 1}/{len(tries)}: {plan.describe()} with {len(workload.steps)} steps"
        )
        res = run_live_cut(replace(cfg, workload=workload), backend, i, plan, progress)
        got = signature(res.violations, bundle.legacy)
        report.attempts.append(
            Attempt(
                what,
                res.state,
                got,
                reproduces(report.expected, got),
                res.harness_error,
                res.wall_s,
            )
        )
        progress(f"  => {'REPRODUCED' if report.attempts[-1].reproduced else 'not reproduced'}")
